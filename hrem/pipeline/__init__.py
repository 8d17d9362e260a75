"""hrem.pipeline."""
