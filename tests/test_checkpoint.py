"""Run directories: round trip, fingerprints, clear errors, frozen backbones referenced by hash."""
import json

import pytest
import torch

from hrem.checkpoint import load_run, run_fingerprint, save_run
from hrem.data.batch import ImageBatch
from hrem.factory import create_model, create_tokenizer, load_card


def _encode(model, tok):
    regions = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.encode_image(ImageBatch.from_regions(regions)), model.encode_text(tok(["a red circle", "two"]))


def test_round_trip_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    card = load_card("tiny-regions")
    model = create_model(card).eval()
    fingerprint = save_run(tmp_path / "run", model, card, extra_files={"note.json": {"a": 1}})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "model.safetensors", "note.json"]
    loaded, loaded_card, loaded_fp = load_run(tmp_path / "run")
    assert loaded_card == card and loaded_fp == fingerprint == run_fingerprint(tmp_path / "run")
    assert not loaded.training
    tok = create_tokenizer(card)
    for a, b in zip(_encode(model, tok), _encode(loaded, tok)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_fingerprint_follows_weights_and_card(tmp_path):
    torch.manual_seed(0)
    card = load_card("tiny-regions")
    model = create_model(card)
    first = save_run(tmp_path / "a", model, card)
    with torch.no_grad():
        model.txt_enc.linear.bias.add_(1.0)
    assert save_run(tmp_path / "b", model, card) != first
    other_card = load_card("tiny-regions", overrides={"description": "changed"})
    assert save_run(tmp_path / "c", create_model(card), other_card) != save_run(tmp_path / "d", create_model(card), card)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_run(tmp_path)
    card = load_card("tiny-regions")
    save_run(tmp_path / "run", create_model(card), card)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["embed_size"] = 64
    config["head"]["heads"] = 2
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model.safetensors: weights do not match.*shape mismatches"):
        load_run(tmp_path / "run")


def test_frozen_pretrained_backbone_is_referenced_by_hash(tmp_path):
    card = load_card("tiny-regions", overrides={"text.pretrained": True, "text.config_overrides": {},
                                                "text.freeze": True})
    model = create_model(card).eval()
    assert not any(p.requires_grad for p in model.txt_enc.bert.parameters())
    model.train()
    assert not model.txt_enc.bert.training and model.txt_enc.linear.training
    model.eval()
    save_run(tmp_path / "run", model, card)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(saved["text"]["backbone_sha256"]) == 64
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("txt_enc.bert.") for k in f.keys())
    loaded, _, _ = load_run(tmp_path / "run")
    tok = create_tokenizer(card)
    for a, b in zip(_encode(model, tok), _encode(loaded, tok)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    saved["text"]["backbone_sha256"] = "0" * 64
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="text backbone SHA-256"):
        load_run(tmp_path / "run")
