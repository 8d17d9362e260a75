"""The embed job (`hrem embed`, `jobs/embed.py`): a corpus -> Parquet shards + manifest.json +
failures.parquet, streaming shard by shard, resumable after a kill at any moment (see job.py)."""
from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.job import EmbedSummary, run_embed

__all__ = ["EmbedConfig", "EmbedSummary", "run_embed"]
