"""hrem.train."""
