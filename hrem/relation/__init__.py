"""hrem.relation."""
