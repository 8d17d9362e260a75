"""Official HREM (`model_best.pth`) and VSE-infinity checkpoints -> hrem run directories.

The file is read with `torch.load(weights_only=True)` and only `argparse.Namespace` allowed beyond
tensors and plain containers, so no arbitrary object is ever unpickled (REFERENCE_HREM.md §4.6). Layout:
`{"model": [image_state_dict, text_state_dict], "opt": Namespace, "epoch", "best_rsum", "Eiters"}`.

Key mapping (after stripping DataParallel's `module.` prefix):
- HREM: identity under `img_enc.` / `txt_enc.` (our encoders keep the official names).
- VSE-infinity (precomputed regions, `precomp_enc_type='basic'`): image `fc.*` -> `fc.fc.*`, `mlp.*` ->
  `fc.mlp.*`, `gpool.*` unchanged; text identity. The card gets GPO pooling and no fragment relation.
- Dropped: `bert.embeddings.position_ids` (a buffer older transformers saved) and `bert.pooler.*` (our
  backbones are built without the unused pooler). Anything else that does not fit the rebuilt model is
  an error that lists the keys.

The card is rebuilt from `opt` (embed_size, img_dim, nhead, dropout, residual_weight, the instance-relation
and loss settings); the text backbone's architecture comes from the user-given local directory (the
official code hard-codes bert-base-uncased), whose hidden size must match the checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hrem.checkpoint.run import save_run
from hrem.config.base import from_dict
from hrem.config.model import HREMCard
from hrem.factory import create_model, load_weights
from hrem.utils.files import sha256_file
from hrem.utils.paths import resolve_text_model_path

log = logging.getLogger(__name__)

DROPPED_TEXT_KEYS = ("bert.embeddings.position_ids", "bert.pooler.")
FORMATS = ("auto", "hrem", "vse_infty")


def read_official(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded without unpickling anything but tensors, containers and Namespace."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: holds objects other than tensors and argparse.Namespace; refusing to "
                         f"unpickle them ({str(exc).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: expected a dict with 'model' (and 'opt'), found {found}")
    model = ckpt["model"]
    if not (isinstance(model, (list, tuple)) and len(model) == 2 and all(isinstance(m, dict) for m in model)):
        raise ValueError(f"{path}: 'model' must be a list of two state dicts [image, text], "
                         f"found {type(model).__name__}")
    return ckpt


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def detect_format(image_state: dict[str, torch.Tensor]) -> str:
    if "fc.fc.weight" in image_state:
        return "hrem"
    if any(k.startswith("backbone.") or k.startswith("image_encoder.") for k in image_state):
        raise ValueError("VSE-infinity checkpoints with an image backbone (raw images) are not supported; "
                         "only precomputed-region ('basic') checkpoints are")
    if "fc.weight" in image_state and any(k.startswith("gpool.") for k in image_state):
        return "vse_infty"
    raise ValueError(f"unrecognised image encoder keys {sorted(image_state)[:8]}: expected HREM ('fc.fc.weight') "
                     "or VSE-infinity ('fc.weight' + 'gpool.*')")


def map_image_keys(state: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    if fmt == "hrem":
        return {f"img_enc.{k}": v for k, v in state.items()}
    mapped = {}
    for key, value in state.items():
        if key.startswith("fc."):
            key = "fc." + key
        elif key.startswith("mlp."):
            key = "fc." + key
        mapped[f"img_enc.{key}"] = value
    return mapped


def map_text_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    kept, dropped = {}, []
    for key, value in state.items():
        if key.startswith(DROPPED_TEXT_KEYS):
            dropped.append(key)
        else:
            kept[f"txt_enc.{key}"] = value
    return kept, dropped


def _opt(opt: Any, name: str, default: Any) -> Any:
    return getattr(opt, name, default) if opt is not None else default


def _heads_for(embed: int, wanted: int) -> int:
    return wanted if embed % wanted == 0 else 1


def card_dict_from_opt(opt: Any, fmt: str, image_state: dict[str, torch.Tensor], text_dir: Path,
                       name: str) -> dict[str, Any]:
    """The card of an official checkpoint: architecture from `opt`, checked against the tensor shapes."""
    fc_weight = image_state["fc.fc.weight" if fmt == "hrem" else "fc.weight"]
    embed, img_dim = int(fc_weight.shape[0]), int(fc_weight.shape[1])
    for field, found in (("embed_size", embed), ("img_dim", img_dim)):
        declared = _opt(opt, field, found)
        if int(declared) != found:
            raise ValueError(f"opt.{field} is {declared} but the image encoder's fc weight has {found}")
    dataset = str(_opt(opt, "dataset", _opt(opt, "data_name", "f30k")))
    hrem = fmt == "hrem"
    heads = _heads_for(embed, int(_opt(opt, "nhead", 16)))
    dropout = float(_opt(opt, "dropout", 0.1))
    mlp_hidden = int(image_state["fc.mlp.layers.0.weight" if hrem else "mlp.layers.0.weight"].shape[0])
    return {
        "name": name, "kind": "hrem",
        "description": f"converted from an official {'HREM' if hrem else 'VSE-infinity'} checkpoint ({dataset})",
        "embed_size": embed,
        "image": {"kind": "regions", "feature_dim": img_dim, "mlp_hidden": mlp_hidden},
        "text": {"backbone": str(text_dir), "pretrained": False},
        "head": {"pooling": "hrem" if hrem else "gpo", "fragment_relation": hrem, "heads": heads,
                 "residual_weight": float(_opt(opt, "residual_weight", 0.8)), "dropout": dropout},
        "instance_relation": _instance_relation_from_opt(opt, embed, hrem),
        "loss": _loss_from_opt(opt, dataset, hrem),
        "train": _train_from_opt(opt, hrem),
    }


def _instance_relation_from_opt(opt: Any, embed: int, hrem: bool) -> dict[str, Any]:
    if not hrem:
        return {"enabled": False}
    return {"enabled": True, "mask_weight": float(_opt(opt, "mask_weight", 1.0)),
            "threshold": float(_opt(opt, "threshold", 0.5)), "topk": int(_opt(opt, "topk", 10)),
            "reg_weight": float(_opt(opt, "reg_loss_weight", 10.0)),
            "heads": _heads_for(embed, int(_opt(opt, "nhead", 16))), "layers": int(_opt(opt, "num_layers_enc", 1)),
            "dropout": float(_opt(opt, "dropout", 0.1)), "cross_loss": bool(_opt(opt, "cross_loss", 1)),
            "norm_input": bool(_opt(opt, "norm_input", 1))}


def _loss_from_opt(opt: Any, dataset: str, hrem: bool) -> dict[str, Any]:
    default = "trip" if hrem else "vse"
    return {"base": str(_opt(opt, "base_loss", default)), "gnn": str(_opt(opt, "gnn_loss", default)),
            "margin": float(_opt(opt, "margin", 0.2)), "cutoff": 1.9 if dataset.startswith("coco") else 1.7,
            "max_violation": True}


def _train_from_opt(opt: Any, hrem: bool) -> dict[str, Any]:
    return {"lr": float(_opt(opt, "learning_rate", 5e-4)), "epochs": int(_opt(opt, "num_epochs", 30 if hrem else 25)),
            "decay_epochs": [int(e) for e in _opt(opt, "lr_schedules", [15, 25] if hrem else [15])],
            "batch_size": int(_opt(opt, "batch_size", 128)), "grad_clip": float(_opt(opt, "grad_clip", 2.0)),
            "warmup_iters": int(_opt(opt, "warmup", 8000 if hrem else 0))}


def _check_text_width(text_state: dict[str, torch.Tensor], text_dir: Path) -> None:
    import json

    hidden = json.loads((text_dir / "config.json").read_text()).get("hidden_size")
    linear = text_state.get("linear.weight")
    if linear is None:
        raise ValueError("text encoder state dict has no 'linear.weight'")
    if hidden is not None and int(linear.shape[1]) != int(hidden):
        raise ValueError(f"{text_dir}/config.json: hidden_size {hidden} does not match the checkpoint's "
                         f"linear.weight {tuple(linear.shape)}; give the text model the checkpoint was trained with")


def convert_checkpoint(src: str | Path, out_dir: str | Path, text_model: str, card_name: str | None = None,
                       fmt: str = "auto", overwrite: bool = False) -> str:
    """Convert `src` into the run directory `out_dir`; returns the model fingerprint. An existing non-empty
    `out_dir` is refused unless `overwrite`; then it is replaced as a whole (no old file stays beside the
    new weights)."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, found {fmt!r}")
    out_dir = Path(out_dir)
    _check_output(out_dir, overwrite)
    ckpt = read_official(src)
    image_state, text_state = (strip_module_prefix(sd) for sd in ckpt["model"])
    fmt = detect_format(image_state) if fmt == "auto" else fmt
    text_dir = resolve_text_model_path(text_model).resolve()
    _check_text_width(text_state, text_dir)
    name = card_name or f"{'hrem' if fmt == 'hrem' else 'vse-infty'}-converted"
    card = from_dict(HREMCard, card_dict_from_opt(ckpt.get("opt"), fmt, image_state, text_dir, name), f"{src} (opt)")
    text_keys, dropped = map_text_keys(text_state)
    state = {**map_image_keys(image_state, fmt), **text_keys}
    model = create_model(card)
    load_weights(model, card, state)
    info = {"source": str(Path(src).resolve()), "source_sha256": sha256_file(src), "format": fmt,
            "dropped_keys": dropped, **{k: _plain(ckpt.get(k)) for k in ("epoch", "best_rsum", "Eiters")}}
    with staged_dir(out_dir) as staging:
        fingerprint = save_run(staging, model, card, extra_files={"conversion.json": info},
                               store_text_backbone=True)
    log.info("converted %s (%s, %d tensors, dropped %d) -> %s", src, fmt, len(state), len(dropped), out_dir)
    return fingerprint


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value if isinstance(value, (int, float, str, type(None))) else str(value)


def _check_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: expected a run directory to write, found a file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"{out_dir}: expected a new or empty run directory, found existing files "
                         f"({', '.join(sorted(p.name for p in out_dir.iterdir())[:5])}); pass --overwrite to "
                         f"replace it")


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a staging folder beside `out_dir`; on success it replaces `out_dir` by renames, so a reader
    sees the old folder or the new one, and a crash leaves at most a hidden staging/old folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield staging
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(staging, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
