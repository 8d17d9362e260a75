"""Reliability of the embed / regions side (issue "Nothing lost, nothing hung"), each finding reproduced:
outputs never overlap inputs and --overwrite removes only what the manifest lists; ids are non-negative
and bad ids name file and row; one writer per --out; an all-NaN model fails instead of exiting 0 with 0
rows (and some NaN rows end in a non-zero exit naming the count); absolute and '..' image keys become
failure rows. Real Parquet/CSV/Karpathy/precomp inputs, tiny real models, real subprocess lock holders."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from test_embed_support import make_listing, make_precomp, make_run

from hrem.cli import main
from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig
from hrem.store import load_manifest, read_failures
from hrem.utils.locks import LOCK_NAME, OutputLocked
from hrem.utils.paths import refuse_overlap


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(autouse=True)
def _restore_logging():
    # `hrem.cli.main` points the root logger at the stderr capsys captures; later tests must not log there
    handlers, level = list(logging.root.handlers), logging.root.level
    yield
    logging.root.handlers[:], logging.root.level = handlers, level


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("other") / "run", seed=1)


def _cli(*args: str) -> list[str]:
    return [*args, "--workers", "0", "--device", "cpu", "--no-progress", "--threads", "1"]


def _cfg(data, model, out, **kw) -> EmbedConfig:
    base = {"image_shard_size": 4, "caption_shard_size": 4, "workers": 0, "device": "cpu", "batch_size": 2,
            "threads": 1}
    return EmbedConfig(data=str(data), model=str(model), out=str(out), **{**base, **kw})


def _embed_cli(data, model, out, *extra):
    return main(["embed", "--data", str(data), "--model", str(model), "--out", str(out), "--workers", "0",
                 "--device", "cpu", "--no-progress", *extra])


def test_out_equal_to_the_data_folder_is_refused_and_nothing_is_written(tmp_path, run_dir, capsys):
    listing = make_listing(tmp_path / "data", 6)
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    assert _embed_cli(listing, run_dir, tmp_path / "data") == 1
    assert "apart from the input" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == before


def test_out_inside_or_around_a_data_folder_is_refused(tmp_path):
    data = tmp_path / "shapes"
    (data / "images").mkdir(parents=True)
    for out in (data, data / "images", data / "emb", tmp_path):
        with pytest.raises(ValueError, match=str(data)):
            refuse_overlap(out, data=data)
    refuse_overlap(tmp_path / "emb", data=data)                  # a sibling is fine
    listing = tmp_path / "l" / "listing.csv"
    listing.parent.mkdir()
    listing.write_text("caption\na\n")
    refuse_overlap(tmp_path / "l" / "emb", data=listing)         # beside a listing file is fine
    with pytest.raises(ValueError):
        refuse_overlap(tmp_path / "l", data=listing)


def test_overwrite_removes_only_files_the_manifest_lists(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 6)
    out = tmp_path / "emb"
    first = run_embed(_cfg(listing, run_dir, out), show_progress=False).manifest.model.fingerprint
    mine = out / "images" / "my-notes.txt"
    mine.write_text("not hrem's")
    other = make_run(tmp_path / "run2", seed=1)
    run_embed(_cfg(listing, other, out, overwrite=True), show_progress=False)
    assert mine.read_text() == "not hrem's"
    assert load_manifest(out).rows("images") == 6
    assert load_manifest(out).model.fingerprint != first


@pytest.mark.parametrize("content,match", [
    ("image,caption,id\nimgs/0000.png,a,1\nimgs/0001.png,b,-7\n", r"column 'id', row 2: expected a non-negative"),
    ("image,caption,id\nimgs/0000.png,a,1\nimgs/0001.png,b,x\n", r"column 'id', row 2 \(line 3\): expected an integer"),
])
def test_bad_ids_name_the_file_and_the_row(tmp_path, run_dir, content, match):
    make_listing(tmp_path / "data", 2)
    listing = tmp_path / "data" / "bad.csv"
    listing.write_text(content)
    with pytest.raises(ValueError, match=rf"bad\.csv: {match}"):
        run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)


def test_a_second_writer_to_one_out_is_refused_naming_the_first(tmp_path, run_dir, capsys, lock_holder):
    listing = make_listing(tmp_path / "data", 6)
    out = tmp_path / "emb"
    holder = lock_holder(out, "hrem embed (first job)")
    with pytest.raises(OutputLocked, match=rf"first job.*pid {holder.pid}"):
        run_embed(_cfg(listing, run_dir, out), show_progress=False)
    assert _embed_cli(listing, run_dir, out) == 1
    assert "another job is writing here" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
    holder.kill()
    holder.wait()
    run_embed(_cfg(listing, run_dir, out), show_progress=False)   # the killed holder's lock is taken over
    assert load_manifest(out).rows("images") == 6


def test_an_all_nan_model_fails_instead_of_writing_zero_rows(tmp_path, capsys):
    from hrem.checkpoint import save_run
    from hrem.factory import create_model, load_card

    card = load_card("tiny")
    model = create_model(card)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    save_run(tmp_path / "nan-run", model, card)
    listing = make_listing(tmp_path / "data", 4)
    with pytest.raises(RuntimeError, match=r"non-finite embeddings .* for 4 of 4 images"):
        run_embed(_cfg(listing, tmp_path / "nan-run", tmp_path / "emb"), show_progress=False)
    assert _embed_cli(listing, tmp_path / "nan-run", tmp_path / "emb2") == 1
    assert "failures.parquet" in capsys.readouterr().err


def test_absolute_and_parent_keys_become_failure_rows(tmp_path, run_dir):
    make_listing(tmp_path / "data", 3)
    outside = tmp_path / "outside.png"
    (tmp_path / "data" / "imgs" / "0000.png").rename(outside)
    listing = tmp_path / "data" / "keys.csv"
    pd.DataFrame({"image": [str(outside), "../outside.png", "imgs/0001.png"], "caption": ["a", "b", "c"],
                  "id": [0, 1, 2]}).to_csv(listing, index=False)
    run_embed(_cfg(listing, run_dir, tmp_path / "emb", modalities=("images",)), show_progress=False)
    reasons = read_failures(tmp_path / "emb").column("reason").to_pylist()
    assert len(reasons) == 2 and "absolute path" in reasons[0] and "parent reference" in reasons[1]
    assert load_manifest(tmp_path / "emb").rows("images") == 1


# ---- further reproductions, by finding ----

def make_karpathy(folder: Path, n: int = 4, keys: list[str] | None = None, imgids: list[int] | None = None) -> Path:
    """A Karpathy folder as the user had it: `images/*.png` + `dataset_tiny.json` (test split, 5 captions)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / "images" / f"{i:06d}.png")
        imgid = imgids[i] if imgids else i
        key = keys[i] if keys else f"images/{i:06d}.png"
        sentences = [{"raw": f"a picture number {i} variant {k}", "tokens": [], "imgid": imgid,
                      "sentid": 5 * i + k} for k in range(5)]
        entries.append({"imgid": imgid, "filepath": str(Path(key).parent), "filename": Path(key).name,
                        "split": "test", "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
    (folder / "dataset_tiny.json").write_text(json.dumps({"dataset": "tiny", "images": entries}))
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. --out inside the data folder; --overwrite removes only what the manifest lists --------------------

@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_embed_refuses_out_overlapping_the_data_folder(tmp_path, run_dir, where):
    data = make_karpathy(tmp_path / "top" / "D")
    out = {"same": data, "inside": data / "emb", "contains": tmp_path / "top"}[where]
    before = _tree(data)
    with pytest.raises(ValueError, match="apart from the input") as err:
        run_embed(_cfg(data, run_dir, out), show_progress=False)
    assert str(data) in str(err.value) and str(out) in str(err.value)
    assert _tree(data) == before and not (data / "manifest.json").exists()


def test_embed_into_the_data_folder_with_overwrite_keeps_every_png(tmp_path, run_dir, other_run, capsys):
    """The user's sequence: `--data D --out D`, then another model with --overwrite (deleted D/images/)."""
    data = make_karpathy(tmp_path / "D")
    pngs = _tree(data / "images")
    for model, extra in ((run_dir, []), (other_run, ["--overwrite"])):
        code = main(_cli("embed", "--data", str(data), "--model", str(model), "--out", str(data), *extra))
        assert code == 1
        assert "apart from the input" in capsys.readouterr().err
    assert _tree(data / "images") == pngs


def test_regions_refuses_out_overlapping_the_data_folder(tmp_path, capsys):
    data = make_karpathy(tmp_path / "D")
    before = _tree(data)
    for out in (data, data / "pre"):
        code = main(_cli("regions", "--data", str(data), "--out", str(out), "--regions", "4"))
        err = capsys.readouterr().err
        assert code == 1 and "apart from the input" in err and str(data) in err
    assert _tree(data) == before


def test_regions_overwrite_never_deletes_precomp_files_it_did_not_write(tmp_path, capsys):
    data = make_karpathy(tmp_path / "D")
    out = tmp_path / "theirs_precomp"
    make_precomp(out, images=2)                          # someone's features, no regions.json
    before = _tree(out)
    code = main(_cli("regions", "--data", str(data), "--out", str(out), "--regions", "4", "--overwrite"))
    assert code == 1 and "not written by `hrem regions`" in capsys.readouterr().err
    assert _tree(out) == before


def test_listing_may_write_beside_itself_but_not_into_its_folder(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 4)
    run_embed(_cfg(listing, run_dir, tmp_path / "data" / "emb"), show_progress=False)   # README: --out emb/
    assert load_manifest(tmp_path / "data" / "emb").totals() == {"captions": 4, "images": 4}
    for out in (tmp_path / "data", tmp_path):
        with pytest.raises(ValueError, match="apart from the input"):
            run_embed(_cfg(listing, run_dir, out), show_progress=False)


def test_overwrite_with_fewer_shards_leaves_no_stale_shard_and_keeps_user_files(tmp_path, run_dir, other_run):
    listing = make_listing(tmp_path / "data", 10)
    emb = tmp_path / "emb"
    run_embed(_cfg(listing, run_dir, emb, image_shard_size=3), show_progress=False)   # 4 image shards
    (emb / "images" / "notes.txt").write_text("mine")
    (emb / "README.txt").write_text("mine too")
    run_embed(_cfg(listing, other_run, emb, image_shard_size=5, overwrite=True), show_progress=False)
    assert (emb / "images" / "notes.txt").read_text() == "mine" and (emb / "README.txt").exists()
    assert sorted(p.name for p in (emb / "images").glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert load_manifest(emb).totals() == {"captions": 10, "images": 10}


def test_overwrite_without_a_manifest_deletes_nothing(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 4)
    emb = tmp_path / "emb"
    (emb / "images").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), emb / "images" / "part-00000.parquet")
    with pytest.raises(ValueError, match="no manifest.json"):
        run_embed(_cfg(listing, run_dir, emb, overwrite=True), show_progress=False)
    assert (emb / "images" / "part-00000.parquet").is_file()


def test_overwrite_ignores_a_hand_edited_modality_pointing_outside(tmp_path, run_dir, other_run):
    listing = make_listing(tmp_path / "data", 4)
    emb = tmp_path / "emb"
    run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    victim = tmp_path / "victim" / "part-00000.parquet"
    victim.parent.mkdir()
    victim.write_bytes(b"someone else's")
    manifest = json.loads((emb / "manifest.json").read_text())
    manifest["shards"]["../victim"] = manifest["shards"].pop("captions")
    manifest["totals"]["../victim"] = manifest["totals"].pop("captions")
    (emb / "manifest.json").write_text(json.dumps(manifest))
    run_embed(_cfg(listing, other_run, emb, overwrite=True), show_progress=False)
    assert victim.read_bytes() == b"someone else's"


def test_emptied_shard_folders_are_removed_only_when_empty(tmp_path, run_dir, other_run):
    listing = make_listing(tmp_path / "data", 4)
    emb = tmp_path / "emb"
    run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    (emb / "captions" / "keep.txt").write_text("x")
    run_embed(_cfg(listing, other_run, emb, modalities=("images",), overwrite=True), show_progress=False)
    assert sorted(p.name for p in (emb / "captions").iterdir()) == ["keep.txt"]
    run_embed(_cfg(listing, run_dir, emb, modalities=("captions",), overwrite=True), show_progress=False)
    assert not (emb / "images").exists()


# -- 2. id domain: non-negative int64, errors name the file and the row -----------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_negative_listing_ids_are_refused_naming_file_and_row(tmp_path, run_dir, fmt):
    listing = make_listing(tmp_path / "data", 6, fmt=fmt)
    frame = pd.read_csv(listing) if fmt == "csv" else pd.read_parquet(listing)
    frame.loc[2, "id"], frame.loc[4, "id"] = -1, -7
    frame.to_csv(listing, index=False) if fmt == "csv" else frame.to_parquet(listing, index=False)
    with pytest.raises(ValueError, match=r"listing\.\w+: column 'id', row 3.*non-negative.*found -1") as err:
        run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    assert str(listing) in str(err.value)
    assert not (tmp_path / "emb" / "manifest.json").exists()


def test_non_integer_csv_id_names_file_and_row(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 6)
    frame = pd.read_csv(listing).astype({"id": object})
    frame.loc[3, "id"] = "abc"
    frame.to_csv(listing, index=False)
    with pytest.raises(ValueError, match=r"listing\.csv: column 'id', row 4 .*expected an integer.*'abc'") as err:
        run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    assert str(listing) in str(err.value)


def test_fractional_parquet_id_and_negative_image_id_are_refused(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 4, fmt="parquet")
    frame = pd.read_parquet(listing).astype({"id": float})
    frame.loc[1, "id"] = 2.5
    frame.to_parquet(listing, index=False)
    with pytest.raises(ValueError, match=r"column 'id', row 2: expected an integer.*2\.5"):
        run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    frame = pd.read_parquet(listing).drop(columns="id").assign(image_id=[3, 2, -5, 0])
    frame.to_parquet(listing, index=False)
    with pytest.raises(ValueError, match=r"column 'image_id', row 3: .*found -5"):
        run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)


def test_integral_float_ids_still_work(tmp_path, run_dir):
    listing = make_listing(tmp_path / "data", 4, fmt="parquet")
    pd.read_parquet(listing).astype({"id": float}).to_parquet(listing, index=False)
    run_embed(_cfg(listing, run_dir, tmp_path / "emb"), show_progress=False)
    ids = pq.read_table(tmp_path / "emb" / "images" / "part-00000.parquet").column("id").to_pylist()
    assert ids == [1000, 1001, 1002, 1003]


def test_negative_karpathy_imgid_is_refused_naming_the_json(tmp_path, run_dir):
    data = make_karpathy(tmp_path / "D", imgids=[0, 1, -7, 3])
    with pytest.raises(ValueError, match=r"dataset_tiny\.json: images of split 'test', row 3 .*non-negative.*-7"):
        run_embed(_cfg(data, run_dir, tmp_path / "emb"), show_progress=False)


def test_negative_precomp_id_is_refused_naming_the_ids_line(tmp_path):
    run = make_run(tmp_path / "run", card="tiny-regions")
    data = make_precomp(tmp_path / "f_precomp", images=3)
    (data / "test_ids.txt").write_text("4\n-1\n6\n")
    with pytest.raises(ValueError, match=r"test_ids\.txt: line 2: .*non-negative.*found -1"):
        run_embed(_cfg(data, run, tmp_path / "emb"), show_progress=False)


# -- 3. one writer per --out ----------------------------------------------------------------------------

def test_second_embed_into_a_locked_folder_fails_naming_the_holder(tmp_path, run_dir, capsys, lock_holder):
    listing = make_listing(tmp_path / "data", 6)
    emb = tmp_path / "emb"
    run_embed(_cfg(listing, run_dir, emb), show_progress=False)
    before = _tree(emb)
    proc = lock_holder(emb, "first job")
    code = main(_cli("embed", "--data", str(listing), "--model", str(run_dir), "--out", str(emb),
                     "--shard-size", "2", "2", "--overwrite"))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 1 and len(errors) == 1 and "first job" in errors[0] and f"pid {proc.pid}" in errors[0]
    assert {k: v for k, v in _tree(emb).items() if k != LOCK_NAME} == before


def test_second_regions_into_a_locked_folder_fails_naming_the_holder(tmp_path, capsys, lock_holder):
    data = make_karpathy(tmp_path / "D")
    out = tmp_path / "pre"
    proc = lock_holder(out, "first job")
    code = main(_cli("regions", "--data", str(data), "--out", str(out), "--regions", "4"))
    err = capsys.readouterr().err
    assert code == 1 and "first job" in err and f"pid {proc.pid}" in err
    assert not (out / "regions.json").exists()


def test_two_real_embeds_race_and_the_manifest_stays_consistent(tmp_path, run_dir, capsys):
    listing = make_listing(tmp_path / "data", 100)
    emb = tmp_path / "emb"
    first = subprocess.Popen([sys.executable, "-m", "hrem", "embed", "--data", str(listing), "--model", str(run_dir),
                              "--out", str(emb), "--shard-size", "25", "25", *_cli()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (emb / LOCK_NAME).exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.01)
    code = main(_cli("embed", "--data", str(listing), "--model", str(run_dir), "--out", str(emb),
                     "--shard-size", "100", "100", "--overwrite"))
    err = capsys.readouterr().err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert code == 1 and f"pid {first.pid}" in err
    manifest = load_manifest(emb)
    for modality in ("images", "captions"):
        assert len(manifest.records(modality)) == 4
        for record in manifest.records(modality):
            assert pq.ParquetFile(emb / modality / record.name).metadata.num_rows == record.rows == 25


# -- 4. a model that outputs NaN ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    import torch

    from hrem.checkpoint import save_run
    from hrem.factory import create_model, load_card

    card = load_card("tiny")
    model = create_model(card)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float("nan"))
    run = tmp_path_factory.mktemp("nan") / "run"
    save_run(run, model, card)
    return run


def test_all_nan_model_stops_after_its_first_shard(tmp_path, nan_run, capsys):
    listing = make_listing(tmp_path / "data", 10)
    emb = tmp_path / "emb"
    code = main(_cli("embed", "--data", str(listing), "--model", str(nan_run), "--out", str(emb),
                     "--shard-size", "4", "4"))
    err = capsys.readouterr().err
    assert code == 1 and "non-finite" in err and "4 of 4" in err and str(nan_run) in err
    failures = read_failures(emb).to_pandas()        # what was tried is on record
    assert len(failures) == 4 and failures.reason.str.contains("non-finite embedding").all()
    again = main(_cli("embed", "--data", str(listing), "--model", str(nan_run), "--out", str(emb),
                      "--shard-size", "4", "4"))
    assert again == 1                                 # a re-run does not turn it into a success


def test_some_non_finite_embeddings_finish_the_job_then_fail_with_the_count(tmp_path):
    run = make_run(tmp_path / "run", card="tiny-regions")
    data = make_precomp(tmp_path / "f_precomp", images=7)
    features = np.load(data / "test_ims.npy")
    features[5] = 3e38                                 # finite input, overflows inside the model
    np.save(data / "test_ims.npy", features)
    emb = tmp_path / "emb"
    with pytest.raises(RuntimeError, match=r"non-finite.* 1 of 7 images") as err:
        run_embed(_cfg(data, run, emb), show_progress=False)
    assert "failures.parquet" in str(err.value)
    assert load_manifest(emb).totals() == {"captions": 35, "images": 6}
    assert read_failures(emb).to_pandas().source_index.tolist() == [5]


# -- 5. absolute and ../ image keys ---------------------------------------------------------------------

def test_absolute_and_parent_keys_in_a_karpathy_json_become_failure_rows(tmp_path, run_dir):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    data = make_karpathy(tmp_path / "D", keys=["images/000000.png", str(secret), "../secret.png",
                                               "images/../../secret.png"])
    emb = tmp_path / "emb"
    run_embed(_cfg(data, run_dir, emb), show_progress=False)
    failures = read_failures(emb).to_pandas()
    assert failures.source_index.tolist() == [1, 2, 3]
    assert "absolute path" in failures.reason[0] and "parent reference" in failures.reason[1]
    assert load_manifest(emb).totals()["images"] == 1

