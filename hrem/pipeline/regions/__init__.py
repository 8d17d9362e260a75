"""`hrem regions`: images through a region detector into the SCAN/BUTD precomp layout (see job.py)."""
from hrem.pipeline.regions.config import RegionsConfig
from hrem.pipeline.regions.job import RegionsSummary, run_regions

__all__ = ["RegionsConfig", "RegionsSummary", "run_regions"]
