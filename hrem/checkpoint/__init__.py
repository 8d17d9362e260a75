"""Run directories (save / load / fingerprint) and the converter of official HREM / VSE-infinity checkpoints."""
from hrem.checkpoint.run import card_sha256, load_run, model_fingerprint, run_fingerprint, save_run

__all__ = ["card_sha256", "load_run", "model_fingerprint", "run_fingerprint", "save_run"]
