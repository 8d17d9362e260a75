"""The Ray engine: the same shard tasks in Ray actors, each loading the model once.

`--ray-address` joins an existing cluster (`ray.init(address=...)`); without it a local cluster is
started for the run and shut down after. Actors ask for one GPU each when the cluster has GPUs
(one actor per GPU), else for `threads` CPUs (default 1) each, as many as the cluster's CPUs allow.
Ray is an optional extra: `pip install "hrem[ray]"`.
"""
from __future__ import annotations

import logging

from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.plan import ShardTask
from hrem.pipeline.embed.runner import ShardResult, ShardRunner

log = logging.getLogger(__name__)


class ShardActor:
    """Wrapped with `ray.remote` at run time (so importing this module does not need Ray)."""

    def __init__(self, cfg: EmbedConfig) -> None:
        self.runner = ShardRunner(cfg)

    def run(self, task: ShardTask) -> ShardResult:
        return self.runner.run(task)


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--engine ray needs Ray: pip install 'hrem[ray]' (or 'ray[data]')") from exc
    return ray


def _actor_shape(ray, cfg: EmbedConfig) -> tuple[int, dict]:
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    per_actor_cpus = max(cfg.threads, 1)
    if gpus:
        options = {"num_gpus": 1, "num_cpus": per_actor_cpus}
        count = cfg.ray_actors or gpus
    else:
        options = {"num_cpus": per_actor_cpus}
        count = cfg.ray_actors or max(1, cpus // per_actor_cpus)
    return count, options


def run_ray(cfg: EmbedConfig, tasks: list[ShardTask], on_result, progress) -> None:
    if not tasks:
        return
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
    try:
        count, options = _actor_shape(ray, cfg)
        count = min(count, len(tasks))
        device = "cuda" if options.get("num_gpus") else cfg.device
        actor_cfg = _with(cfg, device="cpu" if device == "auto" and not options.get("num_gpus") else device)
        log.info("ray engine: %d actor(s) with %s", count, options)
        actor_class = ray.remote(**options)(ShardActor)
        from ray.util import ActorPool

        pool = ActorPool([actor_class.remote(actor_cfg) for _ in range(count)])
        for result in pool.map_unordered(lambda actor, task: actor.run.remote(task), tasks):
            on_result(result)
            progress(result.task.rows)
    finally:
        if started:
            ray.shutdown()


def _with(cfg: EmbedConfig, **changes) -> EmbedConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)
