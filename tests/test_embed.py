"""The embed job: shards equal a direct per-item encoding (brute-force reference), resume, refusal."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_embed_support import make_listing, make_precomp, make_run, snapshot

from hrem.checkpoint import load_run
from hrem.data.sources.listing import detect_columns, read_rows
from hrem.factory import create_image_preprocessor, create_tokenizer
from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.plan import plan_shards
from hrem.store import load_manifest, read_failures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run")


def _cfg(data, model, out, **kw) -> EmbedConfig:
    base = dict(image_shard_size=5, caption_shard_size=5, workers=0, device="cpu", batch_size=4, threads=1)
    return EmbedConfig(data=str(data), model=str(model), out=str(out), **{**base, **kw})


def _read(emb_dir, modality) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((emb_dir / modality).glob("part-*.parquet"))])


def test_plan_is_contiguous_and_complete():
    tasks = plan_shards({"images": 11, "captions": 3}, {"images": 5, "captions": 5})
    assert [(t.modality, t.index, t.start, t.stop) for t in tasks] == [
        ("images", 0, 0, 5), ("images", 1, 5, 10), ("images", 2, 10, 11), ("captions", 0, 0, 3)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_read_rows_matches_pandas_slices(tmp_path, fmt):
    import pandas as pd

    frame = pd.DataFrame({"caption": [f"c{i}" for i in range(300)], "id": range(300), "x": range(300)})
    path = tmp_path / f"l.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, row_group_size=37)
    cols = detect_columns(path)
    for start, stop in [(0, 10), (30, 80), (290, 300), (36, 38)]:
        got = read_rows(path, start, stop, cols.caption)
        captions = [c.decode() if isinstance(c, bytes) else c for c in got.column("caption").to_pylist()]
        assert captions == frame.caption[start:stop].tolist()
        assert got.column("id").to_pylist() == list(range(start, stop))


def test_listing_shards_equal_direct_encoding(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 12)
    summary = run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    emb = tmp_path / "emb"
    manifest = load_manifest(emb)
    assert manifest.totals() == {"captions": 12, "images": 12}
    assert [r.name for r in manifest.records("images")] == ["part-00000.parquet", "part-00001.parquet",
                                                             "part-00002.parquet"]
    assert all(set(r.timings) == {"read", "encode", "write"} for r in manifest.records("images"))
    assert summary.shards_written == 6 and read_failures(emb).num_rows == 0

    model, card, _ = load_run(run_dir)
    preprocess, tokenizer = create_image_preprocessor(card), create_tokenizer(card)
    import pandas as pd
    frame = pd.read_csv(listing)
    images = _read(emb, "images")
    assert images.column("id").to_pylist() == list(frame.id)
    assert images.column("color").to_pylist() == list(frame.color)
    assert images.column("key").to_pylist() == list(frame.image)
    got = np.stack(images.column("embedding").to_numpy(zero_copy_only=False))
    from hrem.data.batch import ImageBatch
    with torch.inference_mode():
        for i, rel in enumerate(frame.image):   # one image at a time: the reference
            pixels = preprocess(str(listing.parent / rel))[None]
            want = model.encode_image(ImageBatch.from_pixels(pixels))[0].numpy()
            np.testing.assert_allclose(got[i], want, atol=1e-5)
    captions = _read(emb, "captions")
    assert captions.column("image_id").to_pylist() == list(frame.id)
    got = np.stack(captions.column("embedding").to_numpy(zero_copy_only=False))
    with torch.inference_mode():
        for i, text in enumerate(frame.caption):
            np.testing.assert_allclose(got[i], model.encode_text(tokenizer([text]))[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_rerun_skips_good_shards_and_redoes_damaged_ones(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 12)
    emb = tmp_path / "emb"
    run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    before = snapshot(emb)
    again = run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    assert again.shards_written == 0 and again.shards_skipped == 6
    shard = emb / "images" / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:50])                 # truncated
    (emb / "captions" / "part-00002.parquet").unlink()         # lost
    (emb / "images" / ".part-00000.parquet.junk.tmp").write_bytes(b"partial")   # a killed writer's leftover
    third = run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    assert third.shards_written == 2
    assert snapshot(emb) == before


def test_refuses_another_model_unless_overwrite(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 6)
    other = make_run(tmp_path / "other", seed=1)
    emb = tmp_path / "emb"
    run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    with pytest.raises(ValueError, match="model fingerprint"):
        run_embed(_cfg(listing, other, emb), show_progress=False)
    with pytest.raises(ValueError, match="input fingerprint"):
        run_embed(_cfg(listing, run_dir, emb, image_shard_size=4), show_progress=False)
    run_embed(_cfg(listing, other, emb, overwrite=True), show_progress=False)
    assert load_manifest(emb).model.fingerprint != ""


def test_decoding_workers_give_identical_files(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 10, fmt="parquet")
    run_embed(_cfg(listing, run_dir, tmp_path / "a", workers=0), show_progress=False)
    run_embed(_cfg(listing, run_dir, tmp_path / "b", workers=2), show_progress=False)
    assert snapshot(tmp_path / "a")["files"] == snapshot(tmp_path / "b")["files"]


def test_precomp_folder_float16(tmp_path):
    run = make_run(tmp_path / "run", card="tiny-regions")
    data = make_precomp(tmp_path / "f30k_precomp", images=7)
    emb = tmp_path / "emb"
    run_embed(_cfg(data, run, emb, dtype="float16"), show_progress=False)
    manifest = load_manifest(emb)
    assert manifest.dtype == "float16" and manifest.totals() == {"captions": 35, "images": 7}
    images = _read(emb, "images")
    assert str(images.schema.field("embedding").type.value_type) == "halffloat"
    model, card, _ = load_run(run)
    feats = np.load(data / "test_ims.npy")
    from hrem.data.batch import ImageBatch
    with torch.inference_mode():
        want = model.encode_image(ImageBatch.from_regions(torch.from_numpy(feats))).numpy()
    got = np.stack(images.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    np.testing.assert_allclose(got, want, atol=2e-3)
    captions = _read(emb, "captions")
    assert captions.column("image_id").to_pylist() == [j // 5 for j in range(35)]
