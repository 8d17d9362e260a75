"""HREMModel: two independent encoders into one L2-normalised joint space (REFERENCE_HREM.md §0, §1.5).

Inference embeddings are per item: an image (caption) encoded alone or inside any batch gives the same
vector, because the only cross-instance part of HREM, the instance-level relation, lives in the training
criterion (hrem.relation.instance). Retrieval is a dot product of the normalised embeddings.

State-dict keys: `img_enc.fc.fc.*`, `img_enc.fc.mlp.*`, `img_enc.aggr.layers.0.*` (+ `img_enc.backbone.*`
for grid cards, `img_enc.detector.*` for detected-region cards), `txt_enc.bert.*`, `txt_enc.linear.*`, `txt_enc.aggr.layers.0.*` (+ `*.gpool.*` with GPO):
the official checkpoint keys under two prefixes.
"""
from __future__ import annotations

import torch
from torch import nn

from hrem.config.model import HREMCard
from hrem.data.batch import ImageBatch
from hrem.data.tokenize import TokenBatch
from hrem.encoders.caption import CaptionEncoder
from hrem.encoders.head import EncoderOutput
from hrem.encoders.image import GridImageEncoder, RegionImageEncoder
from hrem.encoders.pooling import l2norm
from hrem.encoders.vision import build_vision_backbone
from hrem.relation.fragment import FragmentRelation
from hrem.relation.outputs import TrainOutputs
from hrem.utils.paths import resolve_text_model_path
from hrem.vision.region_rows import extract_regions, row_width, square_content

__all__ = ["HREMModel", "TrainOutputs", "build_hrem", "build_image_encoder", "build_caption_encoder"]


def _fragment_relation(card: HREMCard) -> FragmentRelation | None:
    head = card.head
    if not head.fragment_relation:
        return None
    return FragmentRelation(card.embed_size, head.heads, head.ff_dim or card.embed_size, head.dropout)


class DetectedRegionImageEncoder(RegionImageEncoder):
    """The region head of a `regions` card plus a frozen region detector in front of it: precomputed rows
    (`hrem regions` output, made by the same detector) go straight to the head, letterboxed pixels go
    through the detector first (hrem.vision.region_rows.extract_regions, the function `hrem regions` uses),
    so both paths give the same embedding."""

    def __init__(self, detector: nn.Module, card: HREMCard, hidden_dim: int, aggr: nn.Module | None) -> None:
        ref = card.image.detector
        width = row_width(detector, ref.geometry)
        if width != card.image.feature_dim:
            raise ValueError(f"image.feature_dim: the detector gives rows of {detector.feature_dim} features"
                             f"{' + 5 geometry columns' if ref.geometry else ''} = {width}, the card says "
                             f"{card.image.feature_dim}")
        super().__init__(card.image.feature_dim, card.embed_size, hidden_dim, card.head, aggr)
        self.detector = detector
        self.regions, self.geometry = ref.regions, ref.geometry

    def detect(self, pixels: torch.Tensor, content: torch.Tensor | None) -> torch.Tensor:
        """pixels [B, 3, S, S] letterboxed in [0, 1] -> region rows [B, R, F]."""
        if content is None:   # square images filling the whole input
            content = square_content(pixels.shape[0], pixels.shape[-1]).to(pixels.device)
        return extract_regions(self.detector, pixels, content, self.regions, self.geometry).features


def build_image_encoder(card: HREMCard, detector: nn.Module | None = None) -> RegionImageEncoder:
    image = card.image
    hidden = image.mlp_hidden or card.embed_size // 2
    if image.kind == "regions":
        return RegionImageEncoder(image.feature_dim, card.embed_size, hidden, card.head, _fragment_relation(card))
    if image.kind == "detected_regions":
        if detector is None:
            raise ValueError(f"card '{card.name}': a detected_regions image side needs its detector "
                             f"({image.detector.path}); build the model through hrem.factory.create_model")
        return DetectedRegionImageEncoder(detector, card, hidden, _fragment_relation(card))
    backbone, channels = build_vision_backbone(image.backbone)
    return GridImageEncoder(backbone, channels, card.embed_size, hidden, card.head, _fragment_relation(card))


def build_caption_encoder(card: HREMCard) -> CaptionEncoder:
    text = card.text
    model_dir = resolve_text_model_path(text.backbone)
    return CaptionEncoder(model_dir, card.embed_size, card.head, _fragment_relation(card),
                          pretrained=text.pretrained, config_overrides=dict(text.config_overrides) or None)


class HREMModel(nn.Module):
    def __init__(self, card: HREMCard, img_enc: RegionImageEncoder, txt_enc: CaptionEncoder) -> None:
        super().__init__()
        self.card = card
        self.img_enc = img_enc
        self.txt_enc = txt_enc
        self._apply_freeze()

    @property
    def embed_dim(self) -> int:
        return self.card.embed_size

    def frozen_modules(self) -> list[nn.Module]:
        """Backbones the card keeps fixed: no gradients, always in eval mode (BatchNorm, dropout)."""
        frozen = []
        if self.card.text.freeze:
            frozen.append(self.txt_enc.bert)
        if isinstance(self.img_enc, GridImageEncoder) and self.card.image.backbone.freeze:
            frozen.append(self.img_enc.backbone)
        if isinstance(self.img_enc, DetectedRegionImageEncoder):
            frozen.append(self.img_enc.detector)   # the detector is a fixed feature extractor (as BUTD's)
        return frozen

    def _apply_freeze(self) -> None:
        for module in self.frozen_modules():
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> "HREMModel":
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def _finish(self, embedding: torch.Tensor, normalize: bool) -> torch.Tensor:
        return l2norm(embedding) if normalize and self.card.head.normalize else embedding

    def image_fragments(self, batch: ImageBatch) -> EncoderOutput:
        if self.card.image.kind == "detected_regions" and batch.regions is None and batch.pixels is not None:
            regions = self.img_enc.detect(batch.pixels, batch.content)
            return self.img_enc(regions, torch.full((regions.shape[0],), regions.shape[1], dtype=torch.long,
                                                    device=regions.device))
        if self.card.image.kind in ("regions", "detected_regions"):
            if batch.regions is None or batch.lengths is None:
                raise ValueError(f"card '{self.card.name}' encodes region features: ImageBatch.regions and "
                                 f".lengths are required, found regions={batch.regions is not None}, "
                                 f"lengths={batch.lengths is not None}")
            return self.img_enc(batch.regions, batch.lengths)
        if batch.pixels is None:
            raise ValueError(f"card '{self.card.name}' encodes pixels ({self.card.image.image_size} px): "
                             "ImageBatch.pixels is required, found None")
        return self.img_enc(batch.pixels)

    def text_fragments(self, batch: TokenBatch) -> EncoderOutput:
        return self.txt_enc(batch.input_ids, batch.attention_mask)

    def encode_image(self, batch: ImageBatch, normalize: bool = True) -> torch.Tensor:
        """[B, D] image embeddings (L2-normalised unless normalize=False or the card says otherwise)."""
        return self._finish(self.image_fragments(batch).embedding, normalize)

    def encode_text(self, batch: TokenBatch, normalize: bool = True) -> torch.Tensor:
        """[B, D] caption embeddings."""
        return self._finish(self.text_fragments(batch).embedding, normalize)

    def forward_train(self, images: ImageBatch, texts: TokenBatch,
                      image_index: torch.Tensor | None = None) -> TrainOutputs:
        """Everything the criterion needs: normalised embeddings and the pre-pool tokens with masks.
        `image_index` [B] (image-grouped batches): caption j pairs with image image_index[j]; each image
        is encoded once and its outputs are repeated for its captions."""
        img, cap = self.image_fragments(images), self.text_fragments(texts)
        if image_index is not None:
            index = image_index.to(img.embedding.device)
            img = type(img)(img.embedding[index], img.tokens[index], img.mask[index])
        return TrainOutputs(img_emb=l2norm(img.embedding), cap_emb=l2norm(cap.embedding),
                            img_tokens=img.tokens, img_mask=img.mask, cap_tokens=cap.tokens, cap_mask=cap.mask)

    def forward(self, images: ImageBatch, texts: TokenBatch, image_index: torch.Tensor | None = None) -> TrainOutputs:
        return self.forward_train(images, texts, image_index)


def build_hrem(card: HREMCard, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
               detector: nn.Module | None = None) -> HREMModel:
    """The model of an `hrem` card with fresh (or pretrained-backbone) weights on `device` / `dtype`;
    `detector` (built by hrem.factory) for detected_regions cards."""
    model = HREMModel(card, build_image_encoder(card, detector), build_caption_encoder(card))
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
