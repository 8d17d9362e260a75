"""Failure handling: kill -9 and resume, bad inputs -> failures.parquet rows, clear errors for bad ids,
foreign indices and truncated index files. Nothing valid is lost."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_embed_support import make_listing, make_run, snapshot

from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig
from hrem.store import load_manifest, read_failures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run")


def _cfg(data, model, out, **kw) -> EmbedConfig:
    base = dict(image_shard_size=4, caption_shard_size=4, workers=0, device="cpu", batch_size=2, threads=1)
    return EmbedConfig(data=str(data), model=str(model), out=str(out), **{**base, **kw})


def _ids(emb, modality) -> list[int]:
    files = sorted((emb / modality).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f, columns=["id"]) for f in files]).column("id").to_pylist()


def _wait_for(predicate, proc, timeout=60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def _shards_done(emb):
    def check() -> bool:
        try:
            return sum(len(v) for v in load_manifest(emb).shards.values()) >= 1
        except (FileNotFoundError, ValueError):
            return False
    return check


@pytest.mark.parametrize("kill_at", ["manifest-created", "first-shard-recorded"])
def test_kill9_then_resume_equals_uninterrupted_run(tmp_path, run_dir, kill_at):
    listing = make_listing(tmp_path / "data", 24)
    reference = tmp_path / "reference"
    run_embed(_cfg(listing, run_dir, reference), show_progress=False)
    emb = tmp_path / "emb"
    cmd = [sys.executable, "-m", "hrem", "embed", "--data", str(listing), "--model", str(run_dir), "--out",
           str(emb), "--shard-size", "4", "4", "--workers", "0", "--device", "cpu", "--batch-size", "2",
           "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        when = (lambda: (emb / "manifest.json").is_file()) if kill_at == "manifest-created" else _shards_done(emb)
        reached = _wait_for(when, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert reached, "the embed subprocess ended before the kill point"
    assert proc.returncode == -signal.SIGKILL
    summary = run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    assert summary.shards_written >= 1
    assert snapshot(emb) == snapshot(reference)
    assert _ids(emb, "images") == list(range(1000, 1024))     # no duplicate, no gap


def test_bad_inputs_become_failure_rows_and_good_rows_survive(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 10)
    frame = pd.read_csv(listing)
    img5 = tmp_path / "data" / frame.image[5]
    img5.write_bytes(img5.read_bytes()[:120])                          # truncated PNG
    (tmp_path / "data" / frame.image[6]).write_bytes(b"not an image at all")   # corrupt
    frame.loc[7, "image"] = "imgs/does-not-exist.png"                   # missing file
    frame.loc[2, "caption"] = "   "                                     # empty caption
    frame.loc[3, "caption"] = "long " * 2000                            # 10k characters: embedded, truncated
    frame.to_csv(listing, index=False)
    raw = listing.read_bytes().replace(frame.caption[4].encode(), b"caf\xe9 \xff broken")  # non-UTF-8
    listing.write_bytes(raw)
    summary = run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    failures = read_failures(tmp_path / "emb").to_pandas()
    reasons = {(r.modality, r.source_index): r.reason for r in failures.itertuples()}
    assert set(reasons) == {("images", 5), ("images", 6), ("images", 7), ("captions", 2), ("captions", 4)}
    assert "truncated" in reasons[("images", 5)]
    assert reasons[("images", 6)].startswith("unreadable image")
    assert reasons[("images", 7)].startswith("missing file")
    assert reasons[("captions", 2)] == "empty caption"
    assert "UTF-8" in reasons[("captions", 4)]
    assert _ids(tmp_path / "emb", "images") == [1000 + i for i in range(10) if i not in (5, 6, 7)]
    assert _ids(tmp_path / "emb", "captions") == [i for i in range(10) if i not in (2, 4)]
    assert summary.truncated_captions == 1 and summary.failures == 5


def test_feature_files_wrong_shape_and_nan(tmp_path):
    run = make_run(tmp_path / "run", card="tiny-regions")
    rng = np.random.default_rng(0)
    (tmp_path / "f").mkdir()
    rows = []
    for i in range(6):
        feats = rng.standard_normal((5, 16)).astype(np.float32)
        if i == 1:
            feats = feats[:, :12]                      # wrong feature dim
        if i == 3:
            feats[2, 4] = np.nan
        np.save(tmp_path / "f" / f"{i}.npy", feats)
        rows.append({"features": f"f/{i}.npy", "id": i})
    pd.DataFrame(rows).to_parquet(tmp_path / "list.parquet")
    run_embed(_cfg(tmp_path / "list.parquet", run, tmp_path / "emb"), show_progress=False)
    failures = read_failures(tmp_path / "emb").to_pandas()
    assert failures.source_index.tolist() == [1, 3]
    assert failures.reason[0].startswith("wrong feature shape") and "NaN" in failures.reason[1]
    assert _ids(tmp_path / "emb", "images") == [0, 2, 4, 5]


def test_duplicate_ids_are_an_error_naming_ids_and_rows(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 6)
    frame = pd.read_csv(listing)
    frame.loc[4, "id"] = frame.id[1]
    frame.to_csv(listing, index=False)
    with pytest.raises(ValueError, match=r"ids must be unique.*1001.*\[1, 4\]"):
        run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)


def test_missing_listing_columns_named(tmp_path, run_dir):
    pacsv.write_csv(pa.table({"foo": [1, 2]}), tmp_path / "x.csv")
    with pytest.raises(ValueError, match="expected an image column"):
        run_embed(_cfg(tmp_path / "x.csv", run_dir, tmp_path / "emb"), show_progress=False)


def _index(emb, out, modality="images"):
    from hrem.index import build_index

    return build_index(emb, out, modality=modality)


def test_searcher_refuses_index_of_another_model_and_truncated_index(tmp_path, run_dir):
    from hrem.pipeline.search import Searcher

    listing = make_listing(tmp_path / "data", 8)
    run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    _index(tmp_path / "emb", tmp_path / "idx")
    other = make_run(tmp_path / "other", seed=3)
    with pytest.raises(ValueError, match="model fingerprint"):
        Searcher.load(tmp_path / "idx", other)
    faiss_file = tmp_path / "idx" / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:-40])
    with pytest.raises(ValueError, match="index.faiss.*truncated"):
        Searcher.load(tmp_path / "idx", run_dir)


def test_searcher_refuses_stale_index(tmp_path, run_dir):
    from hrem.pipeline.search import Searcher

    listing = make_listing(tmp_path / "data", 8)
    run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    _index(tmp_path / "emb", tmp_path / "idx")
    other = make_run(tmp_path / "other", seed=3)
    run_embed(_cfg(listing, other, tmp_path / "emb", overwrite=True), show_progress=False)
    with pytest.raises(ValueError, match="fingerprint"):
        Searcher.load(tmp_path / "idx")
