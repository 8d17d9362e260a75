"""Any `transformers` object detector from a local directory as an hrem region detector (the
hrem.vision.regions contract), so raw photos get HREM's region input without the Caffe / detectron
extractors of BUTD.

    det = load_hf_detector("models/detr-resnet-50", device="cpu", input_size=640)
    regions = det.detect_regions(letterboxed_pixels, count=36)

- **Families**: DETR, Conditional-DETR, Deformable-DETR, RT-DETR (`AutoModelForObjectDetection`). Weights
  are read from the directory only (`local_files_only`); a config that needs timm (`use_timm_backbone`, or
  `backbone_config.model_type: timm_backbone` in transformers 5) or a downloaded backbone (a `backbone`
  name without `backbone_config`) is refused with the field to change, before transformers parses it.
- **Pixels**: letterboxed RGB in [0, 1] at `input_size` (default 640); the model's own mean / std
  (`preprocessor_config.json` `image_mean` / `image_std`, none when it says `do_normalize: false` as
  RT-DETR's does, ImageNet otherwise) are applied here, because
  transformers' image-processor classes need torchvision. No pixel mask: the grey letterbox padding is
  part of the image, as in hrem's other detectors.
- **Scores and boxes**: each family's `post_process_object_detection` rule, per query: DETR softmax over
  the classes without the last ("no object") one; the sigmoid families (Conditional / Deformable DETR,
  RT-DETR with focal loss) the best sigmoid class. Deviation: those families' post-processing takes the
  top-k over (query, class) pairs, which can list one query several times; a region is a query here, so
  each query appears once, with its best class.
- **Features**: the decoder's last hidden state of the query that made the box ([d_model] per region),
  the analogue of BUTD's pooled RoI feature. DETR-family predictions are a set, so there is no NMS; the
  `count` best queries are returned (all of them when the model has fewer queries).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from hrem.vision.boxes import cxcywh_to_xyxy
from hrem.vision.regions import RegionSet

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SOFTMAX_FAMILIES = ("detr",)
SIGMOID_FAMILIES = ("conditional_detr", "deformable_detr", "rt_detr", "rt_detr_v2", "d_fine", "dab_detr")
DEFAULT_INPUT_SIZE = 640


class HFRegionDetector(nn.Module):
    def __init__(self, model: nn.Module, input_size: int = DEFAULT_INPUT_SIZE,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        config = model.config
        family = config.model_type
        if family not in SOFTMAX_FAMILIES + SIGMOID_FAMILIES:
            raise ValueError(f"model_type {family!r}: expected a DETR-family detector "
                             f"({', '.join(SOFTMAX_FAMILIES + SIGMOID_FAMILIES)})")
        self.model = model
        self.input_size = int(input_size)
        self.feature_dim = int(config.d_model)
        self.softmax = family in SOFTMAX_FAMILIES or (family.startswith("rt_detr")
                                                      and not getattr(config, "use_focal_loss", True))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def query_scores(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """logits [B, Q, C(+1)] -> (score [B, Q], label [B, Q]) by the family's rule."""
        probs = logits.float().softmax(-1)[..., :-1] if self.softmax else logits.float().sigmoid()
        return probs.max(dim=-1)

    @torch.no_grad()
    def detect_regions(self, pixels: Tensor, count: int) -> list[RegionSet]:
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B, 3, S, S] letterboxed RGB in [0, 1], found {tuple(pixels.shape)}")
        out = self.model(pixel_values=(pixels - self.mean.to(pixels)) / self.std.to(pixels))
        scores, labels = self.query_scores(out.logits)
        side = pixels.new_tensor([pixels.shape[-1], pixels.shape[-2]] * 2, dtype=torch.float32)
        boxes = (cxcywh_to_xyxy(out.pred_boxes.float()) * side).clamp(min=0)
        boxes = torch.minimum(boxes, side)
        regions = []
        for b in range(pixels.shape[0]):
            order = torch.argsort(scores[b], descending=True, stable=True)[:count]
            regions.append(RegionSet(boxes[b, order], scores[b, order], out.last_hidden_state[b, order].float(),
                                     {"label": labels[b, order]}))
        return regions


def _check_config(config_path: Path) -> dict:
    """Refuse, before transformers parses it, a config that needs timm or a download: transformers 5 asks
    the Hub about a `backbone` name without `backbone_config` even with local_files_only."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    backbone_config = config.get("backbone_config") or {}
    if config.get("use_timm_backbone") or backbone_config.get("model_type") == "timm_backbone":
        raise ValueError(f"{config_path}: the backbone is a timm model (use_timm_backbone / backbone_config."
                         f"model_type 'timm_backbone'); hrem cannot use timm -- save the model with a transformers "
                         f"ResNet backbone_config")
    if config.get("backbone") and not backbone_config:
        raise ValueError(f"{config_path}: backbone {config['backbone']!r} is named without a backbone_config, "
                         f"which transformers would look up online; set backbone_config (e.g. a ResNetConfig)")
    if config.get("use_pretrained_backbone") and not (config_path.parent / "model.safetensors").is_file() \
            and not (config_path.parent / "pytorch_model.bin").is_file():
        raise ValueError(f"{config_path}: use_pretrained_backbone is true but the folder has no weights; the "
                         f"backbone would be downloaded -- set use_pretrained_backbone=false")
    return config


def _mean_std(model_dir: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    path = model_dir / "preprocessor_config.json"
    if not path.is_file():
        return IMAGENET_MEAN, IMAGENET_STD
    values = json.loads(path.read_text(encoding="utf-8"))
    if values.get("do_normalize") is False:      # e.g. RT-DETR: pixels in [0, 1] as they are
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return tuple(values.get("image_mean", IMAGENET_MEAN)), tuple(values.get("image_std", IMAGENET_STD))


def load_hf_detector(model_dir: str | Path, device: torch.device | str = "cpu",
                     input_size: int | None = None) -> HFRegionDetector:
    """A local transformers object-detection directory -> HFRegionDetector in eval mode."""
    import transformers

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: expected a transformers model directory with config.json")
    _check_config(model_dir / "config.json")
    transformers.utils.logging.set_verbosity_error()
    model = transformers.AutoModelForObjectDetection.from_pretrained(str(model_dir), local_files_only=True)
    mean, std = _mean_std(model_dir)
    return HFRegionDetector(model, input_size or DEFAULT_INPUT_SIZE, mean, std).to(device).eval()
