"""benchmarks/grounding_campaign.py: the rows file names valid cards and switches; planning skips done and
running runs, resumes stopped ones first and refuses a folder started with other settings; a real two-seed
campaign of a tiny row trains both seeds side by side, prints their table, and has nothing left to do after."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrem.factory import load_card


@pytest.fixture(scope="module")
def campaign(benchmark_script):
    return benchmark_script("grounding_campaign")


def test_every_shipped_row_is_a_valid_grounding_card(campaign):
    protocol, rows = campaign.load_rows(campaign.ROWS_FILE)
    assert protocol["max_iters"] == 1655     # the shipped demo grounding model's budget
    for row in rows.values():
        card = load_card(row.card, row.switches)
        assert card.kind == "mcn", row.name


def _fake_run(folder: Path, card: str, switches: dict, seed: int, *, steps: int = 0, done: bool = False) -> None:
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"card": card, "overrides": switches, "seed": seed}))
    lines = [json.dumps({"kind": "step", "iteration": i + 1}) for i in range(steps)]
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if done:
        (folder / "report").mkdir()
        (folder / "report" / "report.json").write_text("{}")


def test_plan_resumes_stopped_runs_first_and_skips_done_and_running_ones(campaign, tmp_path, lock_holder):
    row = campaign.Row("r", "row r", "mcn-tiny", {"losses.mask_weight": 0.5})
    _fake_run(tmp_path / "r-s0", "mcn-tiny", row.switches, 0, steps=3, done=True)
    _fake_run(tmp_path / "r-s2", "mcn-tiny", row.switches, 2, steps=7)
    _fake_run(tmp_path / "r-s3", "mcn-tiny", row.switches, 3, steps=2)
    holder = lock_holder(tmp_path / "r-s3")
    todo = campaign.plan(tmp_path, [row], [0, 1, 2, 3])
    assert [run.folder.name for run in todo] == ["r-s2", "r-s1"]
    states = [campaign.run_state(campaign.Run(row, s, tmp_path / f"r-s{s}")) for s in (0, 1, 2, 3)]
    assert states[:3] == ["done", "missing", "stopped at iteration 7"]
    assert states[3].startswith("running") and f"pid {holder.pid}" in states[3]
    command = campaign.command(todo[0], {"max_iters": 5, "decay_fractions": [0.5, 0.75]}, None)
    assert command[command.index("--set") + 1] == "losses.mask_weight=0.5"
    assert command[command.index("--decay-fractions") + 1] == "0.5,0.75"
    assert command[command.index("--seed") + 1] == "2"


def test_a_folder_started_with_other_switches_is_refused_naming_it(campaign, tmp_path):
    row = campaign.Row("r", "row r", "mcn-tiny", {"losses.mask_weight": 0.5})
    _fake_run(tmp_path / "r-s0", "mcn-tiny", {"losses.mask_weight": 0.2}, 0, steps=3)
    with pytest.raises(ValueError, match=r"r-s0/job\.json: expected card 'mcn-tiny', switches .*0\.5.*found .*0\.2"):
        campaign.plan(tmp_path, [row], [0])


def test_a_two_seed_campaign_trains_both_seeds_and_then_has_nothing_left(campaign, tmp_path, capsys):
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(tmp_path / "shapes", train=12, dev=3, test=3, size=64, workers=1)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps({
        "protocol": {"max_iters": 2, "batch_size": 4, "eval_every": 2, "save_every": 1, "dev_limit": 3,
                     "workers": 0, "threads": 1, "device": "cpu"},
        "rows": {"tiny": {"title": "tiny MCN", "card": "mcn-tiny", "set": {"losses.mask_weight": 0.5}}}}))
    argv = ["--root", str(tmp_path / "runs"), "--rows-file", str(rows_file), "--data", str(data),
            "--seeds", "0", "1", "--parallel", "2"]
    assert campaign.main(argv) == 0
    out = capsys.readouterr().out
    assert "tiny-s0: finished" in out and "tiny-s1: finished" in out
    assert "| tiny MCN | 2 |" in out
    for seed in (0, 1):
        run = tmp_path / "runs" / f"tiny-s{seed}"
        assert json.loads((run / "job.json").read_text())["seed"] == seed
        assert (run / "report" / "report.json").is_file() and (tmp_path / "runs" / f"tiny-s{seed}.log").is_file()
    logs = {seed: (tmp_path / "runs" / f"tiny-s{seed}.log").read_text() for seed in (0, 1)}
    assert campaign.main(argv) == 0                      # all done: nothing is trained again
    assert "finished" not in capsys.readouterr().out
    assert all((tmp_path / "runs" / f"tiny-s{s}.log").read_text() == logs[s] for s in (0, 1))


@pytest.mark.parametrize("last,expected", [
    ({"log_var_rec": 0.29, "log_var_res": -0.456}, (0.5 * 2.718281828 ** 0.456) / (0.5 * 2.718281828 ** -0.29)),
    ({"weight_rec": 0.8, "weight_res": 1.2}, 1.5),
    ({"xy": 1.0}, None),
])
def test_final_weight_ratio_reads_the_last_step_of_each_balancing(campaign, tmp_path, last, expected):
    steps = [{"kind": "step", "iteration": 1, "log_var_rec": 5.0, "log_var_res": 5.0, "weight_rec": 9.0,
              "weight_res": 1.0}, {"kind": "eval", "acc@0.5": 1.0}, {"kind": "step", "iteration": 2, **last}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    ratio = campaign.grounding_seeds.final_weight_ratio(tmp_path)
    assert ratio == (None if expected is None else pytest.approx(expected, rel=1e-6))
