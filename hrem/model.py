"""HREMModel: two independent encoders into one L2-normalised joint space (REFERENCE_HREM.md §0, §1.5).

Inference embeddings are per item: an image (caption) encoded alone or inside any batch gives the same
vector, because the only cross-instance part of HREM, the instance-level relation, lives in the training
criterion (hrem.relation.instance). Retrieval is a dot product of the normalised embeddings.

State-dict keys: `img_enc.fc.fc.*`, `img_enc.fc.mlp.*`, `img_enc.aggr.layers.0.*` (+ `img_enc.backbone.*`
for grid cards), `txt_enc.bert.*`, `txt_enc.linear.*`, `txt_enc.aggr.layers.0.*` (+ `*.gpool.*` with GPO):
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

__all__ = ["HREMModel", "TrainOutputs", "build_hrem", "build_image_encoder", "build_caption_encoder"]


def _fragment_relation(card: HREMCard) -> FragmentRelation | None:
    head = card.head
    if not head.fragment_relation:
        return None
    return FragmentRelation(card.embed_size, head.heads, head.ff_dim or card.embed_size, head.dropout)


def build_image_encoder(card: HREMCard) -> RegionImageEncoder:
    image = card.image
    hidden = image.mlp_hidden or card.embed_size // 2
    if image.kind == "regions":
        return RegionImageEncoder(image.feature_dim, card.embed_size, hidden, card.head, _fragment_relation(card))
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
        if self.card.image.kind == "regions":
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

    def forward_train(self, images: ImageBatch, texts: TokenBatch) -> TrainOutputs:
        """Everything the criterion needs: normalised embeddings and the pre-pool tokens with masks."""
        img, cap = self.image_fragments(images), self.text_fragments(texts)
        return TrainOutputs(img_emb=l2norm(img.embedding), cap_emb=l2norm(cap.embedding),
                            img_tokens=img.tokens, img_mask=img.mask, cap_tokens=cap.tokens, cap_mask=cap.mask)

    def forward(self, images: ImageBatch, texts: TokenBatch) -> TrainOutputs:
        return self.forward_train(images, texts)


def build_hrem(card: HREMCard, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> HREMModel:
    """The model of an `hrem` card with fresh (or pretrained-backbone) weights on `device` / `dtype`."""
    model = HREMModel(card, build_image_encoder(card), build_caption_encoder(card))
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
