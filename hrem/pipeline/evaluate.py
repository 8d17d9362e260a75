"""`hrem evaluate`: a run directory + a dataset split -> R@K report (report.json, report.md, recall PNG).

Each unique image is encoded once (the reference encodes every image five times, once per caption),
captions in length-sorted batches; `hrem.eval.evaluate_retrieval` ranks blockwise. `SplitEvaluator` is
the same computation as a callable `model -> flat scores`, which `hrem train` uses on the dev split for
model selection.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from hrem.checkpoint.loaded import load_model
from hrem.data.datasets import ImageDataset, ImageLoader, RetrievalSplit, open_retrieval_split
from hrem.data.tokenize import TextTokenizer
from hrem.eval import evaluate_retrieval, write_report
from hrem.pipeline.encode import EncodeOptions, encode_captions, encode_images
from hrem.utils.files import atomic_path
from hrem.utils.paths import ASSETS_DIR
from hrem.utils.registry import shipped_models

log = logging.getLogger(__name__)

PROTOCOL_CHOICES = ("auto", "all", "f30k", "coco1k", "coco5k")


def default_protocols(split: RetrievalSplit) -> tuple[str, ...]:
    """The paper's protocols for the dataset (F30K 1K; COCO 5K + 5-fold 1K), else the whole split."""
    if split.dataset.startswith("coco") and split.num_images >= 1000:
        return ("coco5k", "coco1k")
    if split.dataset.startswith("f30k"):
        return ("f30k",)
    return ("all",)


def resolve_protocols(requested: Sequence[str], split: RetrievalSplit) -> tuple[str, ...]:
    bad = [p for p in requested if p not in PROTOCOL_CHOICES]
    if bad or not requested:
        raise ValueError(f"--protocol: expected some of {list(PROTOCOL_CHOICES)}, found {list(requested)}")
    out: list[str] = []
    for p in requested:
        out.extend(default_protocols(split) if p == "auto" else (p,))
    return tuple(dict.fromkeys(out))


class SplitEvaluator:
    """Callable: model -> {"protocol", "rsum", "i2t_r1", ...} on one split (first protocol's numbers)."""

    def __init__(self, split: RetrievalSplit, preprocess: Callable[[Any], Any] | None,
                 tokenizer: TextTokenizer, options: EncodeOptions, protocols: Sequence[str] = ("all",)) -> None:
        self.split, self.tokenizer, self.options = split, tokenizer, options
        self.images = ImageDataset(split, ImageLoader(split, preprocess))
        self.protocols = tuple(protocols)

    def embed(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        was_training = model.training
        model.eval()
        try:
            img = encode_images(model, self.images, self.options)
            cap = encode_captions(model, self.split.captions, self.tokenizer, self.options)
        finally:
            model.train(was_training)
        return img, cap

    def results(self, model: nn.Module) -> dict[str, dict]:
        img, cap = self.embed(model)
        return evaluate_retrieval(img, cap, self.split.caption_image, self.protocols)

    def __call__(self, model: nn.Module) -> dict:
        protocol = self.protocols[0]
        summary = self.results(model)[protocol]
        flat = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {"protocol": protocol, **flat}


def save_sims(path: Path, img: np.ndarray, cap: np.ndarray, rows_per_block: int = 1024) -> None:
    """img @ cap.T as float32 .npy, written block by block through a memmap (bounded memory), atomically."""
    with atomic_path(path) as tmp:
        sims = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(img.shape[0], cap.shape[0]))
        for start in range(0, img.shape[0], rows_per_block):
            sims[start:start + rows_per_block] = img[start:start + rows_per_block] @ cap.T
        sims.flush()
        del sims


def default_report_dir(model_dir: Path, split: str) -> Path:
    """RUN/eval-<split>; a shipped checkpoint's folder lives inside the installed package, which is no place
    for user output (and may be read-only), so its reports go to hrem-out/eval/<name>-<split>."""
    shipped = [m.name for m in shipped_models() if m.path.resolve() == model_dir.resolve()]
    if shipped or ASSETS_DIR.resolve() in model_dir.resolve().parents:
        return Path("hrem-out") / "eval" / f"{shipped[0] if shipped else model_dir.name}-{split}"
    return model_dir / f"eval-{split}"


def evaluate_run(run_dir: str | Path, data_dir: str | Path, split: str, protocols: Sequence[str],
                 out_dir: str | Path | None, options: EncodeOptions, with_sims: bool = False,
                 image_root: str | Path | None = None, index_dir: str | Path | None = None) -> dict[str, Any]:
    """Load RUN (a run directory or a shipped name such as 'demo'), encode `split` of `data_dir`, write the
    report into `out_dir` (default: default_report_dir)."""
    loaded = load_model(run_dir, options.device)
    card, fingerprint = loaded.card, loaded.fingerprint
    data = open_retrieval_split(data_dir, split, image_root)
    log.info("evaluating %s on %s (%s format, %s split: %d images, %d captions)", run_dir, data_dir,
             data.format, split, data.num_images, len(data.captions))
    preprocess = loaded.preprocess if data.format == "images" else None
    evaluator = SplitEvaluator(data, preprocess, loaded.tokenizer, options, resolve_protocols(protocols, data))
    started = time.perf_counter()
    img, cap = evaluator.embed(loaded.model)
    encode_seconds = time.perf_counter() - started
    results = evaluate_retrieval(img, cap, data.caption_image, evaluator.protocols)
    out = Path(out_dir) if out_dir else default_report_dir(loaded.run_dir, split)
    meta = {"model": str(run_dir), "model_fingerprint": fingerprint, "card": card.name, "data": str(data_dir),
            "format": data.format, "dataset": data.dataset, "split": split, "n_images": data.num_images,
            "n_captions": len(data.captions), "precision": options.precision,
            "encode_seconds": round(encode_seconds, 3)}
    ann = None
    if index_dir is not None:   # R@K through the FAISS index, beside the exact numbers (hrem.pipeline.search_eval)
        from hrem.pipeline.search_eval import index_report

        ann = index_report(index_dir, img, cap, data.image_ids, data.caption_image, fingerprint)
        meta["ann"] = {"index": str(index_dir), **ann}
    write_report(out, results, meta)
    if with_sims:
        save_sims(out / "sims.npy", img, cap)
    return {"results": results, "meta": meta, "out_dir": str(out), "ann": ann}
