"""The local engine: shard tasks one after another in this process (decoding in DataLoader workers)."""
from __future__ import annotations

from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.plan import ShardTask
from hrem.pipeline.embed.runner import ShardRunner


def run_local(cfg: EmbedConfig, tasks: list[ShardTask], on_result, progress, sources=None) -> None:
    if not tasks:
        return
    runner = ShardRunner(cfg, sources=sources)
    for task in tasks:
        on_result(runner.run(task, progress))
