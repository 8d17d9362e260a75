"""Datasets: the ShapesRef demo generator, readers for the standard formats, tokenisation, batching."""
