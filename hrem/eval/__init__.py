"""Retrieval and grounding metrics and reports (numpy only; never imports torch)."""
