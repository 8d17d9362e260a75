"""Official HREM / VSE-infinity checkpoints written in their format, converted, and checked against an
independent forward pass on the raw state dicts (plain torch ops; BERT through transformers directly)."""
import argparse
import json
import math
import shutil

import pytest
import torch
import transformers

from hrem.checkpoint import load_run
from hrem.checkpoint.convert import convert_checkpoint
from hrem.cli import convert as convert_cli
from hrem.data.batch import ImageBatch
from hrem.data.tokenize import TextTokenizer
from hrem.utils.paths import packaged_minilm_dir

EMBED, IMG_DIM, HEADS = 32, 16, 2
CAPTIONS = ["a red circle above a blue square", "two shapes", "a small green triangle on the left"]


class NotATensor:  # pickled by reference; a safe loader must refuse it
    pass


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """A tiny BERT architecture with the packaged MiniLM tokenizer (config.json + tokenizer files)."""
    out = tmp_path_factory.mktemp("tiny-bert")
    src = packaged_minilm_dir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, out / name)
    config = json.loads((src / "config.json").read_text())
    config.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    (out / "config.json").write_text(json.dumps(config))
    return out


def _rand(*shape, g):
    return torch.randn(*shape, generator=g) * 0.2


def _layer_state(prefix, d, g):
    s = {"self_attn.in_proj_weight": _rand(3 * d, d, g=g), "self_attn.in_proj_bias": _rand(3 * d, g=g),
         "self_attn.out_proj.weight": _rand(d, d, g=g), "self_attn.out_proj.bias": _rand(d, g=g),
         "linear1.weight": _rand(d, d, g=g), "linear1.bias": _rand(d, g=g),
         "linear2.weight": _rand(d, d, g=g), "linear2.bias": _rand(d, g=g),
         "norm1.weight": 1 + _rand(d, g=g), "norm1.bias": _rand(d, g=g),
         "norm2.weight": 1 + _rand(d, g=g), "norm2.bias": _rand(d, g=g)}
    return {f"{prefix}{k}": v for k, v in s.items()}


def _bn_state(prefix, n, g):
    return {f"{prefix}weight": 1 + _rand(n, g=g), f"{prefix}bias": _rand(n, g=g),
            f"{prefix}running_mean": _rand(n, g=g), f"{prefix}running_var": 1 + _rand(n, g=g).abs(),
            f"{prefix}num_batches_tracked": torch.tensor(7)}


def _image_state(g, vse=False):
    fc = "fc." if vse else "fc.fc."
    mlp = "mlp." if vse else "fc.mlp."
    s = {f"{fc}weight": _rand(EMBED, IMG_DIM, g=g), f"{fc}bias": _rand(EMBED, g=g),
         f"{mlp}layers.0.weight": _rand(EMBED // 2, IMG_DIM, g=g), f"{mlp}layers.0.bias": _rand(EMBED // 2, g=g),
         f"{mlp}layers.1.weight": _rand(EMBED, EMBED // 2, g=g), f"{mlp}layers.1.bias": _rand(EMBED, g=g),
         **_bn_state(f"{mlp}bns.0.", EMBED // 2, g), **_bn_state(f"{mlp}bns.1.", EMBED, g)}
    return {**s, **(_gpo_state(g) if vse else _layer_state("aggr.layers.0.", EMBED, g))}


def _gpo_state(g):
    s = {}
    for suffix in ("", "_reverse"):
        s.update({f"gpool.gru.weight_ih_l0{suffix}": _rand(96, 32, g=g), f"gpool.gru.weight_hh_l0{suffix}": _rand(96, 32, g=g),
                  f"gpool.gru.bias_ih_l0{suffix}": _rand(96, g=g), f"gpool.gru.bias_hh_l0{suffix}": _rand(96, g=g)})
    s["gpool.linear.weight"] = _rand(1, 32, g=g)
    return s


def _text_state(text_dir, g, vse=False):
    torch.manual_seed(int(torch.randint(0, 1000, (1,), generator=g)))
    bert = transformers.BertModel(transformers.BertConfig.from_pretrained(text_dir))   # with the pooler
    s = {f"bert.{k}": v.clone() for k, v in bert.state_dict().items()}
    s["bert.embeddings.position_ids"] = torch.arange(512)[None]      # saved by transformers < 4.31
    s.update({"linear.weight": _rand(EMBED, 32, g=g), "linear.bias": _rand(EMBED, g=g)})
    return {**s, **(_gpo_state(g) if vse else _layer_state("aggr.layers.0.", EMBED, g))}


def _write_official(path, img, txt, vse=False, **extra):
    if vse:
        opt = argparse.Namespace(embed_size=EMBED, img_dim=IMG_DIM, data_name="f30k_precomp", margin=0.2,
                                 precomp_enc_type="basic")
        img = {f"module.{k}": v for k, v in img.items()}
        txt = {f"module.{k}": v for k, v in txt.items()}
    else:
        opt = argparse.Namespace(embed_size=EMBED, img_dim=IMG_DIM, nhead=HEADS, dropout=0.1, residual_weight=0.8,
                                 dataset="coco", mask_weight=1.5, threshold=0.5, topk=10, reg_loss_weight=10,
                                 num_layers_enc=1, base_loss="trip", gnn_loss="trip", warmup=8000, batch_size=256)
    torch.save({"model": [img, txt], "opt": opt, "epoch": 3, "best_rsum": 512.5, "Eiters": 1234, **extra}, path)


# ---- the independent forward pass --------------------------------------------------------------------

def _ln(x, w, b):
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def _transformer_layer(x, n_valid, s, p):
    """Post-LN encoder layer on ONE item's valid tokens [n, d] (no padding at all)."""
    x = x[:n_valid]
    d = x.shape[1]
    q, k, v = (x @ s[p + "self_attn.in_proj_weight"].t() + s[p + "self_attn.in_proj_bias"]).split(d, dim=1)
    dh = d // HEADS
    heads = []
    for h in range(HEADS):
        sl = slice(h * dh, (h + 1) * dh)
        att = torch.softmax(q[:, sl] @ k[:, sl].t() / math.sqrt(dh), dim=1)
        heads.append(att @ v[:, sl])
    attn = torch.cat(heads, 1) @ s[p + "self_attn.out_proj.weight"].t() + s[p + "self_attn.out_proj.bias"]
    x = _ln(x + attn, s[p + "norm1.weight"], s[p + "norm1.bias"])
    ff = torch.relu(x @ s[p + "linear1.weight"].t() + s[p + "linear1.bias"]) @ s[p + "linear2.weight"].t() + s[p + "linear2.bias"]
    return _ln(x + ff, s[p + "norm2.weight"], s[p + "norm2.bias"])


def _gpo(tokens, s):
    n = tokens.shape[0]
    pe = torch.zeros(n, 32)
    for pos in range(n):
        for i in range(0, 32, 2):
            pe[pos, i], pe[pos, i + 1] = math.sin(pos / 10000 ** (i / 32)), math.cos(pos / 10000 ** (i / 32))
    gru = torch.nn.GRU(32, 32, batch_first=True, bidirectional=True)
    gru.load_state_dict({k[len("gpool.gru."):]: v for k, v in s.items() if k.startswith("gpool.gru.")})
    out, _ = gru(pe[None])
    w = torch.softmax(((out[0, :, :32] + out[0, :, 32:]) / 2 @ s["gpool.linear.weight"].t())[:, 0] / 0.1, 0)
    return (tokens.sort(dim=0, descending=True).values * w[:, None]).sum(0)


def _pool(tokens, n, s, vse):
    tokens = tokens[:n]
    if vse:
        return _gpo(tokens, s)
    top2 = tokens.topk(min(2, n), dim=0).values.mean(0)
    related = _transformer_layer(tokens, n, s, "aggr.layers.0.")
    return 0.8 * top2 + 0.2 * related.mean(0)


def _reference_image(s, regions, vse):
    fc, mlp = ("fc.", "mlp.") if vse else ("fc.fc.", "fc.mlp.")
    h = regions @ s[mlp + "layers.0.weight"].t() + s[mlp + "layers.0.bias"]
    h = (h - s[mlp + "bns.0.running_mean"]) / torch.sqrt(s[mlp + "bns.0.running_var"] + 1e-5)
    h = torch.relu(h * s[mlp + "bns.0.weight"] + s[mlp + "bns.0.bias"])
    tokens = regions @ s[fc + "weight"].t() + s[fc + "bias"] + h @ s[mlp + "layers.1.weight"].t() + s[mlp + "layers.1.bias"]
    embs = torch.stack([_pool(tokens[i], tokens.shape[1], s, vse) for i in range(len(tokens))])
    return embs / (embs.norm(dim=1, keepdim=True) + 1e-8)


def _reference_text(s, text_dir, batch, vse):
    bert = transformers.BertModel(transformers.BertConfig.from_pretrained(text_dir), add_pooling_layer=False).eval()
    bert.load_state_dict({k[5:]: v for k, v in s.items() if k.startswith("bert.") and "pooler" not in k
                          and "position_ids" not in k})
    hidden = bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    tokens = hidden @ s["linear.weight"].t() + s["linear.bias"]
    embs = torch.stack([_pool(tokens[i], int(n), s, vse) for i, n in enumerate(batch.lengths)])
    return embs / (embs.norm(dim=1, keepdim=True) + 1e-8)


@pytest.mark.parametrize("vse", [False, True], ids=["hrem", "vse_infty"])
def test_converted_checkpoint_matches_independent_forward(tmp_path, text_dir, vse):
    g = torch.Generator().manual_seed(3)
    img, txt = _image_state(g, vse), _text_state(text_dir, g, vse)
    _write_official(tmp_path / "model_best.pth", img, txt, vse)
    convert_checkpoint(tmp_path / "model_best.pth", tmp_path / "run", str(text_dir))
    model, card, _ = load_run(tmp_path / "run")
    info = json.loads((tmp_path / "run" / "conversion.json").read_text())
    assert info["format"] == ("vse_infty" if vse else "hrem") and info["Eiters"] == 1234
    assert "bert.embeddings.position_ids" in info["dropped_keys"] and "bert.pooler.dense.weight" in info["dropped_keys"]
    if not vse:
        assert (card.instance_relation.mask_weight, card.loss.cutoff, card.train.batch_size) == (1.5, 1.9, 256)
    regions = torch.randn(3, 36, IMG_DIM, generator=g).abs()
    batch = TextTokenizer(text_dir)(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(ImageBatch.from_regions(regions)),
                                   _reference_image(img, regions, vse), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.encode_text(batch), _reference_text(txt, text_dir, batch, vse),
                                   atol=1e-5, rtol=1e-4)


def test_unexpected_keys_and_foreign_objects_are_refused(tmp_path, text_dir):
    g = torch.Generator().manual_seed(0)
    img, txt = _image_state(g), _text_state(text_dir, g)
    _write_official(tmp_path / "extra.pth", {**img, "fc.extra.weight": torch.zeros(2)}, txt)
    with pytest.raises(ValueError, match=r"unexpected keys: \['img_enc.fc.extra.weight'\]"):
        convert_checkpoint(tmp_path / "extra.pth", tmp_path / "run", str(text_dir))
    _write_official(tmp_path / "evil.pth", img, txt, payload=NotATensor())
    with pytest.raises(ValueError, match="refusing to unpickle"):
        convert_checkpoint(tmp_path / "evil.pth", tmp_path / "run", str(text_dir))
    assert not (tmp_path / "run").exists()


def test_cli_converts_and_checks_the_text_width(tmp_path, text_dir):
    g = torch.Generator().manual_seed(1)
    img, txt = _image_state(g), _text_state(text_dir, g)
    _write_official(tmp_path / "m.pth", img, txt)
    parser = argparse.ArgumentParser()
    convert_cli.register(parser.add_subparsers())
    args = parser.parse_args(["convert-checkpoint", str(tmp_path / "m.pth"), "--out", str(tmp_path / "run"),
                              "--text-model", str(text_dir), "--card-name", "hrem-f30k-official"])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["name"] == "hrem-f30k-official"
    wide = {**txt, "linear.weight": torch.zeros(EMBED, 48)}
    _write_official(tmp_path / "wide.pth", img, wide)
    with pytest.raises(ValueError, match="hidden_size 32 does not match"):
        convert_checkpoint(tmp_path / "wide.pth", tmp_path / "run2", str(text_dir))
