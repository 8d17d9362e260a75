"""Relations between fragments (inference) and between instances of a batch (training criterion)."""
