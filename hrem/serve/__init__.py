"""hrem.serve."""
