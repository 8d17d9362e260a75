"""The training loop with stand-in model/criterion (tests/test_train_standins.py): resume, NaN skip,
stopping rules, optimizer groups, decay, metrics.jsonl, model selection, weights-only state."""
import json

import pytest
import torch
from test_train_standins import BagModel, ContrastiveCriterion, synthetic_precomp_split

from hrem.config.base import ConfigError
from hrem.data.collate import TrainCollate
from hrem.data.datasets import CaptionDataset, ImageLoader
from hrem.data.tokenize import TextTokenizer
from hrem.train.config import TrainConfig
from hrem.train.loop import Trainer
from hrem.train.optim import budget_fraction, lr_scale, param_groups
from hrem.train.sampler import EpochBatchSampler, steps_per_epoch
from hrem.utils.paths import packaged_minilm_dir


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer(packaged_minilm_dir())


def make_trainer(run_dir, tokenizer, config, evaluate=None, saved=None, nan_at=None):
    torch.manual_seed(0)
    split = synthetic_precomp_split(n_images=40)
    dataset = CaptionDataset(split, ImageLoader(split, None), config.region_drop_p)
    saved = saved if saved is not None else []
    evaluate = evaluate or (lambda model: {"rsum": 1.0})
    return Trainer(BagModel(), ContrastiveCriterion(nan_at), dataset, TrainCollate(tokenizer), config, "cpu",
                   run_dir, evaluate, lambda model: saved.append({k: v.clone() for k, v in model.state_dict().items()}))


def base_config(**kw):
    defaults = dict(lr=1e-2, epochs=2, batch_size=16, workers=0, text_aug_p=0.0, region_drop_p=0.0,
                    decay_epochs=(1,), log_every=1)
    return TrainConfig(**{**defaults, **kw})


def test_sampler_covers_each_epoch_and_skips_by_index():
    full = list(EpochBatchSampler(50, 8, seed=3, epoch=1))
    assert len(full) == steps_per_epoch(50, 8) == 6
    flat = [i for b in full for i in b]
    assert len(set(flat)) == 48 and all(0 <= i < 50 for i in flat)
    assert list(EpochBatchSampler(50, 8, seed=3, epoch=1, skip=4)) == full[4:]
    assert list(EpochBatchSampler(50, 8, seed=3, epoch=2)) != full
    assert len(list(EpochBatchSampler(5, 8, seed=0, epoch=0))) == 1   # split smaller than a batch


def test_param_groups_and_step_decay():
    cfg = TrainConfig(lr=1e-3, backbone_lr_mult=0.1, graph_lr_factor=2.0, decay_epochs=(2, 4), decay_rate=0.1)
    model, crit = BagModel(), ContrastiveCriterion()
    model.img_enc.bias.requires_grad_(False)
    groups = {g["name"]: g for g in param_groups(model, crit, cfg)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert [p is model.txt_enc.bert.weight for p in groups["backbone"]["params"]] == [True]
    assert groups["criterion"]["lr"] == pytest.approx(2e-3)
    assert all(p is not model.img_enc.bias for p in groups["model"]["params"])   # frozen: left out
    assert [lr_scale(e, cfg) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_uninterrupted_equals_killed_and_resumed(tmp_path, tokenizer):
    config = base_config()
    straight = make_trainer(tmp_path / "a", tokenizer, config)
    pos_a = straight.run()
    assert pos_a.iteration == 2 * steps_per_epoch(200, 16) == 24 and pos_a.epoch == 2

    first = make_trainer(tmp_path / "b", tokenizer, base_config(max_iters=17))   # stops mid epoch 1
    assert first.run().iteration == 17
    state = torch.load(tmp_path / "b" / "training_state.pt", weights_only=True)
    assert state["position"]["iteration"] == 17 and state["position"]["step_in_epoch"] == 5

    second = make_trainer(tmp_path / "b", tokenizer, config)
    assert second.resume()
    assert second.position.iteration == 17
    pos_b = second.run()
    assert pos_b.iteration == pos_a.iteration and pos_b.epoch == pos_a.epoch
    # AdamW's step counters continued from the saved optimizer state instead of restarting at 0
    steps = {int(s["step"]) for s in second.optimizer.state.values()}
    assert steps == {24}
    # deterministic data order + restored RNG: the resumed run ends with the same weights
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert second.criterion.iterations_seen[0] == 17   # the warm-up counter continued


def test_lr_decays_at_decay_epoch(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, base_config(lr=1e-2, decay_epochs=(1,), decay_rate=0.5))
    trainer.run()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = {(r["epoch"], r["lr"]) for r in lines if r["kind"] == "step"}
    assert sorted({lr for e, lr in lrs if e == 0}) == pytest.approx([1e-2])
    assert sorted({lr for e, lr in lrs if e == 1}) == pytest.approx([5e-3])


def test_lr_decays_at_budget_fractions(tmp_path, tokenizer):
    config = base_config(lr=1e-2, max_iters=20, decay_epochs=(), decay_fractions=(0.5, 0.75), decay_rate=0.5)
    make_trainer(tmp_path, tokenizer, config).run()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in lines if r["kind"] == "step"]
    # iterations 1..10 ran before 50% of the budget, 11..15 before 75%, 16..20 after
    assert lrs == pytest.approx([1e-2] * 10 + [5e-3] * 5 + [2.5e-3] * 5)


def test_budget_fraction_takes_the_further_budget():
    both = TrainConfig(max_iters=100, time_budget_min=10)
    assert budget_fraction(25, 300.0, both) == pytest.approx(0.5)    # time: 5 of 10 min
    assert budget_fraction(80, 60.0, both) == pytest.approx(0.8)     # iterations
    assert budget_fraction(80, 60.0, TrainConfig()) == 0.0
    assert lr_scale(0, TrainConfig(max_iters=10, decay_fractions=(0.5,)), 0.5) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="decay_fractions"):
        TrainConfig(decay_fractions=(0.5,))
    with pytest.raises(ConfigError, match="decay_fractions"):
        TrainConfig(max_iters=10, decay_fractions=(1.5,))


def test_nan_steps_are_skipped_without_update(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, base_config(epochs=1, max_iters=4), nan_at={2})
    before = {}

    original_step = trainer._step

    def spying_step(batch):
        if trainer.position.iteration == 2:
            before.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
            out = original_step(batch)
            for k, v in trainer.model.state_dict().items():
                assert torch.equal(v, before[k]), f"{k} changed on a skipped step"
            return out
        return original_step(batch)

    trainer._step = spying_step
    position = trainer.run()
    assert position.skipped_steps == 1 and position.iteration == 4


def test_loss_goes_down_and_metrics_are_logged(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, base_config(epochs=3))
    trainer.run()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if r["kind"] == "step"]
    assert len(losses) == 36
    assert sum(losses[-6:]) / 6 < 0.6 * sum(losses[:6]) / 6
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2, 3] and all(r["split"] == "dev" for r in evals)


def test_best_model_saved_only_on_improvement(tmp_path, tokenizer):
    scores = iter([10.0, 30.0, 20.0, 40.0])
    saved = []
    trainer = make_trainer(tmp_path, tokenizer, base_config(epochs=4), lambda m: {"rsum": next(scores)}, saved)
    position = trainer.run()
    assert len(saved) == 3 and position.best_rsum == 40.0 and position.best_iteration == 48


def test_eval_and_save_every_iterations_and_time_budget(tmp_path, tokenizer):
    calls = []
    trainer = make_trainer(tmp_path / "a", tokenizer, base_config(eval_every=5, save_every=5, max_iters=12),
                           lambda m: calls.append(m.training) or {"rsum": 0.0})
    trainer.run()
    assert len(calls) == 3 and not any(calls)            # at 5, 10 and the final 12; model in eval mode
    budget = make_trainer(tmp_path / "b", tokenizer, base_config(time_budget_min=1e-9, epochs=5))
    position = budget.run()
    assert position.iteration == 0 and (tmp_path / "b" / "training_state.pt").is_file()
