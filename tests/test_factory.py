"""Cards and the factory: names, overrides, validation messages, strict weight loading."""
import json

import pytest
import torch

from hrem.config.base import ConfigError
from hrem.config.model import HREMCard
from hrem.factory import (create_image_preprocessor, create_model, create_tokenizer, list_models, load_card,
                          load_weights)


def test_packaged_cards_validate():
    names = list_models("hrem")
    assert {"tiny", "tiny-regions", "demo", "hrem-f30k", "hrem-coco"} <= set(names)
    for name in names:
        assert isinstance(load_card(name), HREMCard)


def test_paper_settings():
    f30k, coco = load_card("hrem-f30k"), load_card("hrem-coco")
    for card in (f30k, coco):
        assert card.embed_size == 1024 and card.image.feature_dim == 2048 and card.head.heads == 16
        assert card.head.residual_weight == 0.8 and card.loss.base == card.loss.gnn == "trip"
        assert card.train.warmup_iters == 8000 and card.instance_relation.reg_weight == 10
    assert (f30k.instance_relation.mask_weight, f30k.loss.cutoff, f30k.train.batch_size) == (1.0, 1.7, 128)
    assert (coco.instance_relation.mask_weight, coco.loss.cutoff, coco.train.batch_size) == (1.5, 1.9, 256)


def test_unknown_name_lists_known_cards():
    with pytest.raises(ValueError, match=r"unknown model card 'nope'.*hrem-f30k"):
        load_card("nope")


def test_overrides_and_their_errors(tmp_path):
    card = load_card("hrem-f30k", overrides={"text.backbone": str(tmp_path), "head.heads": 8})
    assert card.text.backbone == str(tmp_path) and card.head.heads == 8
    with pytest.raises(ConfigError, match="unknown field.*'headz'"):
        load_card("tiny", overrides={"head.headz": 3})
    with pytest.raises(ConfigError, match="divisible"):
        load_card("tiny", overrides={"head.heads": 5})
    with pytest.raises(ConfigError, match="image.backbone"):
        load_card("tiny", overrides={"image.backbone": {"freeze": True}})


def test_card_file_errors_name_the_file(tmp_path):
    path = tmp_path / "mine.json"
    data = json.loads(json.dumps({"name": "mine", "kind": "hrem", "embed_size": 32,
                                  "image": {"kind": "regions", "feature_dim": 0}}))
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"mine.json.*feature_dim"):
        load_card(path)
    path.write_text(json.dumps({**data, "kind": "clip"}))
    with pytest.raises(ConfigError, match=r"mine.json.kind: expected one of"):
        load_card(path)


def test_missing_text_backbone_directory_is_explained():
    card = load_card("hrem-f30k")           # 'bert-base-uncased' is a hub name, not a local directory
    with pytest.raises(FileNotFoundError, match="does not download"):
        create_model(card)


def test_weights_mismatch_lists_keys_and_shapes():
    card = load_card("tiny-regions")
    model = create_model(card)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.pop("img_enc.fc.fc.bias")
    state["img_enc.extra"] = torch.zeros(1)
    state["txt_enc.linear.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as err:
        load_weights(model, card, state)
    message = str(err.value)
    assert "missing keys" in message and "img_enc.fc.fc.bias" in message
    assert "unexpected keys" in message and "img_enc.extra" in message
    assert "txt_enc.linear.weight: file (3, 3) vs model (32, 32)" in message


def test_tokenizer_and_preprocessor():
    card = load_card("tiny")
    batch = create_tokenizer(card)(["a red circle", "a"])
    assert batch.input_ids.shape == batch.attention_mask.shape and batch.lengths.tolist()[1] == 3
    pixels = create_image_preprocessor(card)(torch.zeros(10, 12, 3, dtype=torch.uint8).numpy())
    assert pixels.shape == (3, 64, 64)
    with pytest.raises(ValueError, match="no image preprocessor"):
        create_image_preprocessor(load_card("tiny-regions"))


def test_grid_backbone_from_a_local_directory(tmp_path):
    import transformers

    from hrem.data.batch import ImageBatch

    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1],
                                       layer_type="basic", out_features=["stage3"])
    torch.manual_seed(0)
    transformers.ResNetBackbone(config).save_pretrained(tmp_path / "resnet")
    card = load_card("tiny", overrides={"image.backbone": {"path": str(tmp_path / "resnet"), "out_feature": "stage3",
                                                           "freeze": True}})
    model = create_model(card).eval()
    saved = transformers.ResNetBackbone.from_pretrained(str(tmp_path / "resnet"))
    torch.testing.assert_close(model.img_enc.backbone.state_dict()["embedder.embedder.convolution.weight"],
                               saved.state_dict()["embedder.embedder.convolution.weight"])
    assert not any(p.requires_grad for p in model.img_enc.backbone.parameters())
    with torch.no_grad():
        assert model.encode_image(ImageBatch.from_pixels(torch.randn(1, 3, 64, 64))).shape == (1, 32)
