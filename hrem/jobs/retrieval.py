"""The retrieval jobs: `run_train` (HREM on a dataset folder, dev selection, resumable) and `run_evaluate`
(R@K report of a run on a split).

    summary = run_train(TrainJob(card="tiny", data="shapes/", out="runs/tiny", max_iters=200))
    report = run_evaluate(EvaluateJob(model="runs/tiny", data="shapes/", split="test"))
"""
from __future__ import annotations

import logging
from pathlib import Path

from hrem.config.base import to_dict
from hrem.data.datasets import open_retrieval_split
from hrem.factory import create_image_preprocessor, create_tokenizer, load_card
from hrem.jobs.common import check_resume, command_line, loop_settings, one_writer, record_job
from hrem.jobs.eval_config import EvaluateJob
from hrem.jobs.summary import EvaluationSummary, TrainSummary
from hrem.jobs.train_config import TrainJob
from hrem.pipeline.encode import EncodeOptions
from hrem.pipeline.evaluate import SplitEvaluator, evaluate_run
from hrem.train.run import build_trainer, record_or_check_args, save_text_cache, train_config_from_card
from hrem.utils.device import resolve_device, resolve_precision, set_threads
from hrem.utils.seed import seed_everything

log = logging.getLogger(__name__)


@one_writer
def run_train(job: TrainJob) -> TrainSummary:
    """Train job.card on job.data into job.out; the best dev model (by job.selection_metric) is kept."""
    out = Path(job.out)
    check_resume(out, job.resume)
    set_threads(job.threads)
    device = resolve_device(job.device)
    precision = resolve_precision(job.precision, device)
    card = load_card(job.card, overrides=job.overrides)
    config = train_config_from_card(card, **loop_settings(job, precision, job.selection_metric),
                                    text_cache_file=job.text_cache, group_images=job.group_images)
    seed_everything(job.seed)
    train_split = open_retrieval_split(job.data, "train", job.image_root)
    dev_split = open_retrieval_split(job.data, "dev", job.image_root)
    log.info("data %s: %s format, train %d images / dev %d images", job.data, train_split.format,
             train_split.num_images, dev_split.num_images)
    tokenizer = create_tokenizer(card)
    preprocess = create_image_preprocessor(card) if train_split.format == "images" else None
    options = EncodeOptions(device=device, batch_size=job.eval_batch_size, workers=job.workers, precision=precision)
    evaluate = SplitEvaluator(dev_split, preprocess, tokenizer, options, ("all",))
    out.mkdir(parents=True, exist_ok=True)
    record_or_check_args(out, card, config, {"data": str(job.data), "format": train_split.format,
                                             "job": to_dict(job), "command": command_line()})
    trainer = build_trainer(card, train_split, preprocess, tokenizer, out, config, device, evaluate,
                            show_progress=job.progress)
    if job.resume != "never":
        trainer.resume()
    record_job(out, job)   # after resume(): a refused session leaves the run's record alone
    position = trainer.run()
    save_text_cache(trainer.model, card, config)
    return TrainSummary(out, position.iteration, position.epoch, config.selection_metric, position.best_score,
                        position.best_iteration)


def run_evaluate(job: EvaluateJob) -> EvaluationSummary:
    """R@1/5/10, medr, meanr, rsum of job.model on job.split: report.json, report.md, recall_curves.png."""
    set_threads(job.threads)
    device = resolve_device(job.device)
    options = EncodeOptions(device=device, batch_size=job.batch_size, workers=job.workers,
                            precision=resolve_precision(job.precision, device))
    report = evaluate_run(job.model, job.data, job.split, list(job.protocols), job.out, options, job.save_sims,
                          job.image_root, index_dir=job.index)
    lines = [_recall_line(protocol, summary) for protocol, summary in report["results"].items()]
    if report.get("ann"):
        from hrem.pipeline.search_eval import side_by_side

        lines += side_by_side(next(iter(report["results"].values())), report["ann"])
    lines.append(f"report written to {report['out_dir']}")
    return EvaluationSummary(report["results"], Path(report["out_dir"]), tuple(lines))


def _recall_line(protocol: str, s: dict) -> str:
    return (f"{protocol}: i2t R@1/5/10 {s['i2t_r1']:.1f} / {s['i2t_r5']:.1f} / {s['i2t_r10']:.1f}"
            f"  t2i R@1/5/10 {s['t2i_r1']:.1f} / {s['t2i_r5']:.1f} / {s['t2i_r10']:.1f}  rsum {s['rsum']:.1f}")
