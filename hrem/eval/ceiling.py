"""The truth-only oracle of a ShapesRef split: how well a perfect reader of the captions can retrieve.

The oracle knows only which captions are true of which images (hrem.eval.shapes_truth, from the caption
text parsed by hrem.eval.shapes_grammar; stored facts for captions outside that grammar, e.g. version 1's
"between" frames). It ranks every true item first, in random order among themselves; its expected
recall is computed exactly:
- t2i: a caption true of t images (its own among them) finds its image in the first K with
  probability min(K, t) / t;
- i2t: an image with T true captions, o of them its own, has one of its own in the first K with
  probability 1 - C(T - o, K) / C(T, K).
A model can beat this only by exploiting which captions a scene tends to produce, not what they say.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hrem.eval.shapes_grammar import CaptionParseError, Vocabulary, parse_caption
from hrem.eval.shapes_truth import truth_matrix

KS = (1, 5, 10)
SPLIT_FILES = {"dev": "val", "val": "val", "train": "train", "test": "test"}


def oracle_recall(truth: np.ndarray, caption_image: np.ndarray) -> dict:
    """Expected R@K (in %) of the truth-only oracle; truth [captions, images], caption_image [captions]."""
    captions = np.arange(truth.shape[0])
    if not truth[captions, caption_image].all():
        bad = captions[~truth[captions, caption_image]][:5].tolist()
        raise ValueError(f"captions {bad} are not true of their own image: the facts or the evaluator are wrong")
    per_caption = truth.sum(axis=1)
    per_image = truth.sum(axis=0)
    own = np.bincount(caption_image, minlength=truth.shape[1])
    out: dict = {}
    for k in KS:
        out[f"t2i_r{k}"] = 100.0 * float(np.mean(np.minimum(k, per_caption) / per_caption))
        out[f"i2t_r{k}"] = 100.0 * float(np.mean([1.0 - math.comb(int(t - o), k) / math.comb(int(t), k)
                                                  if t >= k else 1.0 for t, o in zip(per_image, own)]))
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in KS)
    out["images_per_caption"] = {"median": float(np.median(per_caption)), "mean": float(per_caption.mean())}
    out["true_captions_per_image"] = {"median": float(np.median(per_image)), "mean": float(per_image.mean())}
    return out


def split_captions(folder: Path, split: str) -> tuple[list[dict], list[str], list[list[dict]], np.ndarray, int]:
    """(scenes, caption texts, stored facts, caption -> image row, image side) of one split."""
    name = SPLIT_FILES.get(split, split)
    path = folder / "scenes" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scene graphs for split {split!r} (expected a ShapesRef folder)")
    data = json.loads(path.read_text(encoding="utf-8"))
    scenes = data["images"]
    texts = [c["text"] for s in scenes for c in s["captions"]]
    stored = [c["facts"] for s in scenes for c in s["captions"]]
    rows = np.array([i for i, s in enumerate(scenes) for _ in s["captions"]], np.int64)
    return scenes, texts, stored, rows, int(data["size"])


def caption_facts(texts: list[str], stored: list[list[dict]], vocab: Vocabulary) -> tuple[list[list[dict]], int]:
    """Facts parsed from each text; the stored facts where the text is outside the grammar (counted)."""
    facts, fallback = [], 0
    for text, known in zip(texts, stored):
        try:
            facts.append(parse_caption(text, vocab))
        except CaptionParseError:
            facts.append(known)
            fallback += 1
    return facts, fallback


def shapes_ceiling(folder: str | Path, split: str = "test") -> dict:
    folder = Path(folder)
    meta = json.loads((folder / "shapesref.json").read_text(encoding="utf-8"))
    scenes, texts, stored, rows, side = split_captions(folder, split)
    facts, fallback = caption_facts(texts, stored, Vocabulary.from_metadata(meta))
    truth = truth_matrix(facts, scenes, side)
    return {"data": str(folder), "split": split, "caption_version": meta.get("version"), "images": len(scenes),
            "captions": len(texts), "facts_from_text": len(texts) - fallback, "facts_stored": fallback,
            "oracle": oracle_recall(truth, rows)}
