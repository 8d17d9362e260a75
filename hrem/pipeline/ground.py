"""The grounding stage: a trained MCN run -> box + mask of the referred object, and its evaluation.

    grounder = Grounder.load()                        # default: the shipped demo grounding model
    (g,) = grounder.ground(["scene.png"], ["the red circle left of the square"])
    g.box, g.score, g.mask.shape, g.as_dict()["mask_rle"]

    refs = read_grounding_split("hrem-out/cache/shapesref-...", "test")
    summary = evaluate_grounding(grounder.model, grounder.tokenizer, refs, device="cpu")

Every box and mask is in ORIGINAL image pixels (the model works on letterboxed S x S inputs).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from hrem.checkpoint import load_run
from hrem.data.grounding_dataset import GroundingCollate, GroundingEvalSet
from hrem.data.readers.refs import RefObject, read_refs
from hrem.data.sources.roots import ImageRefused, recorded_image_root, resolve_image
from hrem.data.splits import refs_file_split
from hrem.data.tokenize import TextTokenizer
from hrem.eval.grounding_accumulator import GroundingAccumulator
from hrem.eval.rle import rle_encode
from hrem.grounding import GroundingModel, build_mcn_tokenizer, letterbox_image
from hrem.utils.images import load_image_file
from hrem.utils.paths import ASSETS_DIR
from hrem.utils.registry import resolve_model
from hrem.vision.letterbox import SampleLetterbox

log = logging.getLogger(__name__)

DEMO_GROUNDING_DIR = ASSETS_DIR / "demo-grounding"
TRAIN_COMMAND = "hrem train-grounding --out DIR"


@dataclass(frozen=True)
class Grounding:
    """Where one expression lands in one image (original pixels)."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float                             # sigma(objectness) of the chosen box
    mask: np.ndarray                         # bool [H, W]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: box, score and the mask as COCO RLE (compressed counts string)."""
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4),
                "mask_rle": rle_encode(self.mask)}


def _open_rgb(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    return load_image_file(image)  # names the file: missing, unreadable or over the pixel budget


class Grounder:
    """A loaded grounding run: batches (image, expression) pairs through the model."""

    def __init__(self, model: GroundingModel, fingerprint: str, device: torch.device | str = "cpu",
                 batch_size: int = 8, source: Path | None = None) -> None:
        self.model, self.card, self.fingerprint = model.eval(), model.card, fingerprint
        self.device, self.batch_size, self.source = torch.device(device), batch_size, source
        self.tokenizer: TextTokenizer = build_mcn_tokenizer(self.card)

    @classmethod
    def load(cls, run_dir: str | Path | None = None, device: torch.device | str = "cpu",
             batch_size: int = 8) -> Grounder:
        """A grounding run directory (config.json of kind "mcn" + model.safetensors) or a shipped name
        ('demo-grounding', 'packaged:NAME'; hrem.utils.registry); None = the shipped demo."""
        try:
            run_dir = resolve_model(run_dir if run_dir is not None else DEMO_GROUNDING_DIR, "grounding")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"grounding model not available: {exc}; or train one with "
                                    f"`{TRAIN_COMMAND}`") from None
        if not (run_dir / "model.safetensors").is_file():
            raise FileNotFoundError(f"{run_dir}: grounding model not available (no model.safetensors); train "
                                    f"one with `{TRAIN_COMMAND}` and pass it with --grounding-model")
        model, card, fingerprint = load_run(run_dir, device=device)
        if getattr(card, "kind", None) != "mcn":
            raise ValueError(f"{run_dir}/config.json: expected a grounding card (kind 'mcn'), found kind "
                             f"{getattr(card, 'kind', None)!r}")
        log.info("grounding model %s (card %s, fingerprint %s)", run_dir, card.name, fingerprint[:16])
        return cls(model, fingerprint, device, batch_size, run_dir)

    def ground(self, images: Sequence[Any], texts: Sequence[str], asnls: bool | None = None) -> list[Grounding]:
        """One Grounding per (image, text) pair; images are paths, PIL images or uint8 arrays."""
        if isinstance(texts, str) or len(images) != len(texts):
            raise ValueError(f"ground: expected as many texts as images, found {len(texts)} text(s) for "
                             f"{len(images)} image(s)")
        empty = [i for i, t in enumerate(texts) if not str(t).strip()]
        if empty:
            raise ValueError(f"ground: empty expression at position(s) {empty}")
        out: list[Grounding] = []
        for start in range(0, len(images), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(images)))
            out += self._ground_batch([images[i] for i in chunk], [str(texts[i]) for i in chunk], asnls)
        return out

    def _ground_batch(self, images: list[Any], texts: list[str], asnls: bool | None) -> list[Grounding]:
        letterboxed = [letterbox_image(_open_rgb(image), self.card.input_size) for image in images]
        pixels = torch.from_numpy(np.stack([p for p, _ in letterboxed])).to(self.device)
        tokens = self.tokenizer(texts).to(self.device)
        predictions = self.model.ground(pixels, tokens, [m for _, m in letterboxed], asnls=asnls)
        return [Grounding(tuple(float(v) for v in p.box_xyxy), p.score, p.mask) for p in predictions]


def read_grounding_split(data: str | Path, split: str, images: str | Path | None = None,
                         masks: str | Path | None = None) -> list[RefObject]:
    """A split of a ShapesRef folder (refs/<split>.json) or of a RefCOCO-style JSON file
    ({split: [entry, ...]}, images under `images`, masks under `masks`)."""
    data = Path(data)
    if data.is_dir():
        path = data / "refs" / f"{refs_file_split(split)}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no refs file for split {split!r} in the dataset folder {data}")
        return read_refs(path, split, Path(images) if images else data / "images", masks)
    if not data.is_file():
        raise FileNotFoundError(f"{data}: expected a ShapesRef folder or a RefCOCO-style refs JSON file")
    return read_refs(data, split, Path(images) if images else data.parent, masks)


def eval_loader(refs: Sequence[RefObject], input_size: int, tokenizer: TextTokenizer, batch_size: int = 32,
                workers: int = 0, limit: int | None = None) -> DataLoader:
    dataset = GroundingEvalSet(refs, SampleLetterbox(input_size), limit)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=GroundingCollate(tokenizer))


@torch.no_grad()
def evaluate_grounding(model: GroundingModel, tokenizer: TextTokenizer, refs: Sequence[RefObject],
                       device: torch.device | str = "cpu", batch_size: int = 32, workers: int = 0,
                       asnls: bool | None = None, limit: int | None = None, progress: bool = False) -> dict:
    """Acc@0.5, box mIoU, mask mIoU, oIoU, Prec@X and IE over every (object, sentence) sample (in %)."""
    loader = eval_loader(refs, model.card.input_size, tokenizer, batch_size, workers, limit)
    accumulator = GroundingAccumulator()
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="grounding eval", disable=not progress, dynamic_ncols=True):
            predictions = model.ground(batch.pixels.to(device), batch.tokens.to(device), batch.metas, asnls)
            pred_boxes = np.stack([p.box_xyxy for p in predictions])
            masks = (batch.masks, [p.mask for p in predictions]) if batch.masks is not None else (None, None)
            accumulator.add(pred_boxes, batch.boxes_xyxy, masks[1], masks[0])
    finally:
        model.train(was_training)
    return accumulator.summary()


def centre_box_baseline(train_refs: Sequence[RefObject], refs: Sequence[RefObject]) -> dict:
    """Acc@0.5 of the no-learning baseline: a box of the mean training GT size centred in every image."""
    from hrem.data.grounding_dataset import ref_box_xyxy

    mean_w, mean_h = np.mean([ref.bbox_xywh[2:] for ref in train_refs], axis=0)
    sizes: dict[Path, tuple[int, int]] = {}
    pred, gt = [], []
    for ref in refs:
        if ref.image_path not in sizes:
            with Image.open(ref.image_path) as image:  # reads the header only
                sizes[ref.image_path] = image.size
        cx, cy = sizes[ref.image_path][0] / 2, sizes[ref.image_path][1] / 2
        box = [cx - mean_w / 2, cy - mean_h / 2, cx + mean_w / 2, cy + mean_h / 2]
        pred += [box] * len(ref.sentences)
        gt += [ref_box_xyxy(ref)] * len(ref.sentences)
    accumulator = GroundingAccumulator()
    accumulator.add(np.asarray(pred, dtype=np.float64), np.asarray(gt))
    return accumulator.summary()


def search_image_root(emb_dir: str | Path) -> Path:
    """Where the image keys of an embeddings folder are relative to (hrem.data.sources.roots)."""
    root = recorded_image_root(emb_dir)
    if root is None:
        raise FileNotFoundError(f"{emb_dir}/manifest.json: records no image folder (the corpus was embedded "
                                f"from precomputed features?); pass the image folder (image_root / --image-root)")
    return root


def _result_image(key: str, image_root: Path) -> Path:
    """The file of a search result under the image root; the root's rules (no absolute keys, no '..',
    no symlink out of the root) apply to search results too."""
    try:
        return resolve_image(image_root, key)
    except ImageRefused as exc:
        raise FileNotFoundError(f"image of search result {key!r}: {exc}; pass the image folder "
                                f"(image_root / --image-root)") from None


def ground_results(grounder: Grounder, queries: Sequence[str], keys: Sequence[Sequence[str]],
                   image_root: Path) -> list[list[Grounding]]:
    """Ground each query in each of its retrieved images (one batched pass over all pairs)."""
    pairs = [(str(q), _result_image(key, image_root)) for q, row in zip(queries, keys) for key in row]
    found = grounder.ground([p for _, p in pairs], [q for q, _ in pairs]) if pairs else []
    out, start = [], 0
    for row in keys:
        out.append(found[start:start + len(row)])
        start += len(row)
    return out


def write_result_overlays(out_dir: str | Path, queries: Sequence[str], keys: Sequence[Sequence[str]],
                          groundings: Sequence[Sequence[Grounding]], image_root: Path) -> list[Path]:
    """q<query>-r<rank>-<image stem>.png per grounded result, e.g. q1-r01-000123.png."""
    from hrem.pipeline.overlay import write_overlay

    written = []
    for qi, (query, row, found) in enumerate(zip(queries, keys, groundings), 1):
        for rank, (key, g) in enumerate(zip(row, found), 1):
            name = f"q{qi}-r{rank:02d}-{Path(key).stem}.png"
            written.append(write_overlay(Path(out_dir) / name, _result_image(key, image_root), g.box, g.score,
                                         g.mask, query))
    return written
