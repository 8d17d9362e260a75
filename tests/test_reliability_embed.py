"""Reliability of the embed / regions side (issue "Nothing lost, nothing hung"), each finding reproduced:
outputs never overlap inputs and --overwrite removes only what the manifest lists; ids are non-negative
and bad ids name file and row; one writer per --out; an all-NaN model fails instead of exiting 0 with 0
rows; absolute and '..' image keys become failure rows."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
from test_embed_support import make_listing, make_run

from hrem.cli import main
from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig
from hrem.store import load_manifest, read_failures
from hrem.utils.locks import OutputLocked
from hrem.utils.paths import refuse_overlap


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run")


def _cfg(data, model, out, **kw) -> EmbedConfig:
    base = dict(image_shard_size=4, caption_shard_size=4, workers=0, device="cpu", batch_size=2, threads=1)
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


HOLD = """
import sys, time
from hrem.utils.locks import output_lock
with output_lock(sys.argv[1], command="hrem embed (first job)"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_to_one_out_is_refused_naming_the_first(tmp_path, run_dir, capsys):
    listing = make_listing(tmp_path / "data", 6)
    out = tmp_path / "emb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=rf"first job.*pid {holder.pid}"):
            run_embed(_cfg(listing, run_dir, out), show_progress=False)
        assert _embed_cli(listing, run_dir, out) == 1
        assert "another job is writing here" in capsys.readouterr().err
        assert not (out / "manifest.json").exists()
    finally:
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
    with pytest.raises(RuntimeError, match=r"found 0 of 4 images.*non-finite embedding"):
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
