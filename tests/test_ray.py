"""The Ray engine on a real local Ray cluster started by the test: same input -> the same shard files,
failures and manifest (minus timings) as the local engine."""
from __future__ import annotations

import os

import pytest
from test_embed_support import make_listing, make_run, snapshot

from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig

if os.environ.get("CI"):
    import ray  # in CI the `ray` extra is installed: an import error must fail, not skip
else:
    ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.ray
def test_ray_engine_writes_the_same_directory_as_local(tmp_path, cluster):
    run = make_run(tmp_path / "run")
    listing = make_listing(tmp_path / "data", 14)
    listing.with_name("imgs").joinpath("0003.png").write_bytes(b"broken")   # a failure row on both engines
    base = dict(data=str(listing), model=str(run), image_shard_size=4, caption_shard_size=6, workers=0,
                device="cpu", batch_size=4, threads=1)
    local = run_embed(EmbedConfig(out=str(tmp_path / "local"), **base), show_progress=False)
    remote = run_embed(EmbedConfig(out=str(tmp_path / "ray"), engine="ray", ray_actors=2, **base),
                       show_progress=False)
    assert remote.shards_written == local.shards_written == 7
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")
    again = run_embed(EmbedConfig(out=str(tmp_path / "ray"), engine="ray", **base), show_progress=False)
    assert again.shards_written == 0                                        # resume skips everything
