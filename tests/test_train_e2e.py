"""`hrem train` -> `hrem evaluate` through hrem.cli.main with the real tiny models: on a precomp folder
written here (learning beats chance), on a small ShapesRef folder (the image path end to end), resume
after a stop, and the checkpoint round trip (the saved model re-evaluated gives the logged dev score)."""
import json
from math import comb

import numpy as np
import pytest
import torch

import hrem.cli
from hrem.checkpoint import load_run

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "star", "triangle", "hexagon"]
SIZES = ["small", "large", "medium"]


def write_precomp(folder, seed=0, counts=(("train", 240), ("dev", 40), ("test", 40)), regions=6, dim=16):
    """A *_precomp folder: each image is (colour, shape, size); its regions carry one attribute direction
    each (plus noise), its 5 captions name the attributes in different templates."""
    rng = np.random.default_rng(seed)
    dirs = {name: rng.normal(size=(len(vals), dim)) for name, vals in
            (("c", COLOURS), ("s", SHAPES), ("z", SIZES))}
    templates = ["a {z} {c} {s}", "the {s} is {c} and {z}", "a picture of one {z} {s} coloured {c}",
                 "{c} {s} , {z}", "there is a {c} {z} {s}"]
    folder.mkdir(parents=True)
    for split, n in counts:
        attrs = np.stack([rng.integers(len(COLOURS), size=n), rng.integers(len(SHAPES), size=n),
                          rng.integers(len(SIZES), size=n)], 1)
        feats = rng.normal(scale=0.3, size=(n, regions, dim))
        for i, (c, s, z) in enumerate(attrs):
            feats[i, 0::3] += dirs["c"][c]
            feats[i, 1::3] += dirs["s"][s]
            feats[i, 2::3] += dirs["z"][z]
        np.save(folder / f"{split}_ims.npy", np.maximum(feats, 0).astype(np.float32))
        caps = [t.format(c=COLOURS[c], s=SHAPES[s], z=SIZES[z]) for c, s, z in attrs for t in templates]
        (folder / f"{split}_caps.txt").write_text("\n".join(caps) + "\n")
    return folder


def chance_r10(n_images, per_image=5):
    m = per_image * n_images
    return 100 * 10 / n_images, 100 * (1 - comb(m - per_image, 10) / comb(m, 10))   # t2i, i2t


def cli(*argv):
    assert hrem.cli.main(["--log-level", "WARNING", *map(str, argv)]) == 0


@pytest.fixture(scope="module")
def precomp(tmp_path_factory):
    return write_precomp(tmp_path_factory.mktemp("data") / "synth_precomp")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from hrem.data.cache import ensure_shapesref
    return ensure_shapesref(tmp_path_factory.mktemp("shapes") / "s", train=60, dev=12, test=12, size=64, seed=0,
                            workers=1)


def test_precomp_train_then_evaluate_beats_chance(precomp, tmp_path):
    run = tmp_path / "run"
    cli("train", "--card", "tiny-regions", "--data", precomp, "--out", run, "--workers", "0", "--epochs", "4",
        "--batch-size", "32", "--set", "train.warmup_iters=60", "--lr", "0.002")
    cli("evaluate", "--model", run, "--data", precomp, "--split", "test", "--workers", "0", "--save-sims")
    report = json.loads((run / "eval-test" / "report.json").read_text())
    summary = report["results"]["all"] if "results" in report else report["all"]
    t2i_chance, i2t_chance = chance_r10(40)
    assert summary["t2i_r10"] >= 2.5 * t2i_chance and summary["i2t_r10"] >= 2.5 * i2t_chance, summary
    sims = np.load(run / "eval-test" / "sims.npy")
    assert sims.shape == (40, 200)
    # the report's t2i R@1 recomputed by brute force from the saved score matrix
    gt = np.repeat(np.arange(40), 5)
    assert 100 * np.mean(sims.argmax(0) == gt) == pytest.approx(summary["t2i_r1"])


def test_resume_after_stop_continues_optimizer_and_counts(precomp, tmp_path):
    run = tmp_path / "run"
    common = ["--card", "tiny-regions", "--data", precomp, "--out", run, "--workers", "0", "--epochs", "2",
              "--batch-size", "32"]
    cli("train", *common, "--max-iters", "5")
    first = torch.load(run / "training_state.pt", weights_only=True)
    assert first["position"]["iteration"] == 5
    cli("train", *common)
    state = torch.load(run / "training_state.pt", weights_only=True)
    assert state["position"]["iteration"] == 2 * (1200 // 32) and state["position"]["epoch"] == 2
    groups = {g["name"]: g["params"] for g in state["optimizer"]["param_groups"]}
    opt_state = state["optimizer"]["state"]
    # AdamW's step counters ran on from the saved state: model params stepped every iteration (74), the
    # criterion's only after its warm-up (50 iterations), so 24
    assert {int(opt_state[i]["step"]) for i in groups["model"] if i in opt_state} == {74}
    assert {int(opt_state[i]["step"]) for i in groups["criterion"] if i in opt_state} == {24}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r["iteration"] for r in lines if r["kind"] == "step"]
    assert logged == sorted(set(logged)) and logged[-1] == 70   # no restart from 0; every 10th iteration
    # a resumed run must use the same card: refused with an error (exit code 1)
    assert hrem.cli.main(["train", *map(str, common), "--set", "embed_size=64"]) == 1


def test_shapesref_train_evaluate_and_checkpoint_round_trip(shapes, tmp_path):
    run = tmp_path / "run"
    cli("train", "--card", "tiny", "--data", shapes, "--out", run, "--workers", "0", "--max-iters", "4",
        "--batch-size", "16", "--eval-every", "2")
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    best = max(evals, key=lambda r: r["rsum"])
    cli("evaluate", "--model", run, "--data", shapes, "--split", "dev", "--protocol", "all", "--out", tmp_path / "ev",
        "--workers", "0")
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    summary = report["results"]["all"] if "results" in report else report["all"]
    assert summary["rsum"] == pytest.approx(best["rsum"], abs=1e-6)
    assert (tmp_path / "ev" / "report.md").is_file() and (tmp_path / "ev" / "recall_curves.png").is_file()
    model, card, fingerprint = load_run(run)
    assert card.name == "tiny" and len(fingerprint) >= 64
