"""Upper and lower bounds of the size fields of cards: a typo such as `image.image_size: 100000` must be a
ConfigError naming the field, not a job the kernel OOM-kills an hour later.

Bounds are generous (several times the largest published setting) and keyed by dataclass name so that
this table needs no import of the card modules. `None` values (= "use the default") are not checked.
"""
from __future__ import annotations

from typing import Any

WIDTH = (1, 16384)        # embedding / hidden widths: a 16384 x 16384 float32 linear layer is already 1 GB
HEADS = (1, 128)
LAYERS = (1, 64)
SIDE = (16, 2048)         # square input side in pixels (2048^2 x batch x channels of activations)

RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "HREMCard": {"embed_size": WIDTH},
    "ImageCard": {"image_size": SIDE, "feature_dim": WIDTH, "mlp_hidden": WIDTH},
    "DetectorRefCard": {"regions": (1, 1000), "input_size": (16, 4096)},
    "TextCard": {"max_length": (1, 4096)},
    "HeadCard": {"heads": HEADS, "ff_dim": WIDTH, "maxk": (1, 1000), "gpo_pe_dim": (1, 4096),
                 "gpo_hidden": (1, 4096)},
    "InstanceRelationCard": {"heads": HEADS, "layers": LAYERS, "ff_dim": WIDTH, "topk": (1, 1000)},
    "MCNCard": {"input_size": (32, 2048)},
    "MCNLanguageCfg": {"max_tokens": (1, 512), "dim": WIDTH, "word_dim": WIDTH},
    "MCNWidthsCfg": {"fusion": WIDTH, "neck": WIDTH, "aspp": WIDTH, "garan_heads": HEADS},
    "MCNMaskRefineCfg": {"skip": WIDTH, "width": WIDTH},
    "DetectorCard": {"input_size": SIDE},
    "BoxHeadCfg": {"width": WIDTH},
    "RegionHeadCfg": {"pool": (1, 64), "hidden": WIDTH, "feature_dim": WIDTH, "jitter_boxes": (0, 1000),
                      "background_boxes": (0, 10000)},
}


def range_errors(obj: Any) -> list[str]:
    """'field: expected an integer in [lo, hi], found v' for each out-of-range field of `obj`."""
    errors = []
    for name, (lo, hi) in RANGES.get(type(obj).__name__, {}).items():
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and not lo <= value <= hi:
            errors.append(f"{name}: expected an integer in [{lo}, {hi}], found {value}")
    return errors
