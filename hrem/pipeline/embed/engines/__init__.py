"""Engines run the same shard task (`hrem.pipeline.embed.runner.ShardRunner.run`) in different places:
`local` in this process, `ray` in Ray actors (one model load per actor). Each calls `on_result` in the
driver for every finished shard, so only the driver writes the manifest and failures.parquet."""
from __future__ import annotations

from collections.abc import Callable

from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.plan import ShardTask
from hrem.pipeline.embed.runner import ShardResult

OnResult = Callable[[ShardResult], None]
Progress = Callable[[int], None]


def run_tasks(engine: str, cfg: EmbedConfig, tasks: list[ShardTask], on_result: OnResult,
              progress: Progress, **local_kwargs) -> None:
    if engine == "local":
        from hrem.pipeline.embed.engines.local import run_local

        run_local(cfg, tasks, on_result, progress, **local_kwargs)
    elif engine == "ray":
        from hrem.pipeline.embed.engines.ray_engine import run_ray

        run_ray(cfg, tasks, on_result, progress)
    else:
        raise ValueError(f"engine: expected 'local' or 'ray', found {engine!r}")
