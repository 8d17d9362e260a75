"""`hrem regions` end to end with a real (tiny, random) transformers DETR on a generated ShapesRef: the
precomp layout, BUTD's fixed-R rows, failures, kill -9 + resume, `hrem train` on the output, and a
detected_regions model embedding raw images exactly as its precomp rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hf_detector_support import save_tiny_detector

from hrem.cli import main
from hrem.data.readers import read_karpathy, read_precomp
from hrem.data.shapes import ShapesRefConfig, generate_shapesref
from hrem.pipeline.regions import RegionsConfig, run_regions
from hrem.store import read_failures

SIZE, REGIONS = 64, 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    generate_shapesref(root / "shapes", ShapesRefConfig(train=30, dev=10, test=12, size=SIZE, seed=3))
    return {"root": root, "shapes": root / "shapes", "detr": save_tiny_detector(root / "detr", "detr")}


def _cfg(corpus, out, **kw) -> RegionsConfig:
    base = dict(detector=str(corpus["detr"]), data=str(corpus["shapes"]), out=str(out), regions=REGIONS,
                shard_size=5, workers=0, device="cpu", input_size=SIZE, batch_size=4, threads=1)
    return RegionsConfig(**{**base, **kw})


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != "regions.json"}


def test_writes_the_precomp_layout_that_the_readers_accept(corpus, tmp_path):
    summary = run_regions(_cfg(corpus, tmp_path / "pre"), show_progress=False)
    assert summary.images == {"train": 30, "dev": 10, "test": 12} and summary.failures == 0
    split = read_precomp(tmp_path / "pre", "test")
    assert split.features.shape == (12, REGIONS, 16 + 5)
    karpathy = read_karpathy(corpus["shapes"] / "dataset_shapesref.json", corpus["shapes"], "test")
    assert split.captions == karpathy.captions and split.image_ids.tolist() == karpathy.image_ids.tolist()
    boxes = np.load(tmp_path / "pre" / "test_boxes.npy")
    assert boxes.shape == (12, REGIONS, 4) and (boxes >= 0).all() and (boxes <= SIZE).all()
    geometry = split.features[..., -5:]
    np.testing.assert_allclose(geometry[..., :4], boxes / SIZE, atol=1e-5)   # square images: content = input
    state = json.loads((tmp_path / "pre" / "regions.json").read_text())
    assert state["layout"]["row_width"] == 21 and all(s["complete"] for s in state["splits"].values())
    assert not (tmp_path / "pre" / ".parts").exists()


def test_unreadable_images_become_failures_and_lose_their_captions(corpus, tmp_path):
    import shutil

    data = tmp_path / "shapes"
    shutil.copytree(corpus["shapes"], data)
    karpathy = read_karpathy(data / "dataset_shapesref.json", data, "test")
    (data / karpathy.image_paths[3]).write_bytes(b"not a png")
    run_regions(_cfg(corpus, tmp_path / "pre", data=str(data), splits=("test",)), show_progress=False)
    failures = read_failures(tmp_path / "pre").to_pandas()
    assert failures.source_index.tolist() == [3] and failures.shard.tolist() == ["test/part-00000"]
    split = read_precomp(tmp_path / "pre", "test")
    kept = [i for i in range(12) if i != 3]
    assert split.image_ids.tolist() == karpathy.image_ids[kept].tolist()
    assert split.captions == [c for c, row in zip(karpathy.captions, karpathy.caption_image) if row != 3]


def test_other_settings_in_the_same_folder_are_refused(corpus, tmp_path):
    run_regions(_cfg(corpus, tmp_path / "pre", splits=("dev",)), show_progress=False)
    with pytest.raises(ValueError, match="regions: folder has 8, this run has 6"):
        run_regions(_cfg(corpus, tmp_path / "pre", splits=("dev",), regions=6), show_progress=False)
    run_regions(_cfg(corpus, tmp_path / "pre", splits=("dev",), regions=6, overwrite=True), show_progress=False)
    assert read_precomp(tmp_path / "pre", "dev").features.shape[1] == 6


def test_kill9_then_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    reference = tmp_path / "reference"
    run_regions(_cfg(corpus, reference, shard_size=3), show_progress=False)
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "hrem", "regions", "--detector", str(corpus["detr"]), "--data", str(corpus["shapes"]),
            "--out", str(out), "--regions", str(REGIONS), "--shard-size", "3", "--workers", "0", "--device", "cpu",
            "--input-size", str(SIZE), "--batch-size", "4", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": os.getcwd()}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads((out / "regions.json").read_text())
            if sum(len(s["shards"]) for s in state["splits"].values()) >= 2:
                break
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(args[3:]) == 0
    assert _files(out) == _files(reference)
    assert killed, "the job finished before it could be killed; the test needs a slower run"


def test_hrem_train_reads_the_output(corpus, tmp_path):
    run_regions(_cfg(corpus, tmp_path / "pre"), show_progress=False)
    code = main(["train", "--card", "tiny-regions", "--set", "image.feature_dim=21", "--data", str(tmp_path / "pre"),
                 "--out", str(tmp_path / "run"), "--max-iters", "3", "--batch-size", "8", "--workers", "0",
                 "--device", "cpu", "--threads", "1"])
    assert code == 0 and (tmp_path / "run" / "model.safetensors").is_file()


def _detected_card(corpus, tmp_path):
    from hrem.factory import load_card

    overrides = {"image": {"kind": "detected_regions", "feature_dim": 21,
                           "detector": {"path": str(corpus["detr"]), "regions": REGIONS, "input_size": SIZE}}}
    return load_card("tiny-regions", overrides=overrides)


def _embeddings(emb: Path, modality: str) -> dict[int, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(emb / modality)
    return dict(zip(table.column("id").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))))


def test_detected_regions_model_embeds_raw_images_as_its_precomp_rows(corpus, tmp_path):
    import torch

    from hrem.checkpoint import save_run
    from hrem.factory import create_model
    from hrem.pipeline.embed import EmbedConfig, run_embed

    card = _detected_card(corpus, tmp_path)
    torch.manual_seed(0)
    model = create_model(card)
    assert not any(p.requires_grad for p in model.img_enc.detector.parameters())
    save_run(tmp_path / "run", model, card)
    run_regions(_cfg(corpus, tmp_path / "pre", splits=("test",)), show_progress=False)
    common = dict(model=str(tmp_path / "run"), split="test", workers=0, device="cpu", modalities=("images",),
                  batch_size=5)
    run_embed(EmbedConfig(data=str(corpus["shapes"]), out=str(tmp_path / "raw"), **common), show_progress=False)
    run_embed(EmbedConfig(data=str(tmp_path / "pre"), out=str(tmp_path / "pre-emb"), **common), show_progress=False)
    raw, pre = _embeddings(tmp_path / "raw", "images"), _embeddings(tmp_path / "pre-emb", "images")
    assert sorted(raw) == sorted(pre) and len(raw) == 12
    for image_id, vector in raw.items():
        np.testing.assert_allclose(vector, pre[image_id], atol=2e-5)


def test_training_refuses_region_rows_of_another_detector(corpus, tmp_path):
    from hrem.train.run import check_region_provenance

    card = _detected_card(corpus, tmp_path)
    other = save_tiny_detector(tmp_path / "other", "detr", seed=5)
    run_regions(_cfg(corpus, tmp_path / "pre", detector=str(other), splits=("dev",)), show_progress=False)
    with pytest.raises(ValueError, match="not made by the card's image.detector.*detector_fingerprint"):
        check_region_provenance(card, tmp_path / "pre")
    run_regions(_cfg(corpus, tmp_path / "mine", splits=("dev",)), show_progress=False)
    check_region_provenance(card, tmp_path / "mine")


def test_detected_regions_model_evaluates_and_searches_raw_images(corpus, tmp_path):
    import torch

    from hrem.checkpoint import save_run
    from hrem.factory import create_model
    from hrem.config.index import IndexBuildConfig
    from hrem.index import build_index
    from hrem.pipeline.embed import EmbedConfig, run_embed
    from hrem.pipeline.encode import EncodeOptions
    from hrem.pipeline.evaluate import evaluate_run
    from hrem.pipeline.search import Searcher

    card = _detected_card(corpus, tmp_path)
    torch.manual_seed(0)
    save_run(tmp_path / "run", create_model(card), card)
    report = evaluate_run(tmp_path / "run", corpus["shapes"], "test", ["all"], tmp_path / "eval",
                          EncodeOptions(torch.device("cpu"), batch_size=6))
    assert report["meta"]["format"] == "images" and report["meta"]["n_images"] == 12
    run_embed(EmbedConfig(data=str(corpus["shapes"]), model=str(tmp_path / "run"), out=str(tmp_path / "emb"),
                          split="test", workers=0, device="cpu"), show_progress=False)
    for modality in ("images", "captions"):
        build_index(tmp_path / "emb", tmp_path / "index" / modality, IndexBuildConfig(modality=modality))
    searcher = Searcher.load(tmp_path / "index")
    hits = searcher.search_text(["a red circle"], k=3)[0]
    assert len(hits) == 3
    image = corpus["shapes"] / hits[0].key
    captions = searcher.search_image([image], k=5)[0]
    assert len(captions) == 5 and all("image_id" in h.metadata for h in captions)
