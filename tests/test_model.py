"""HREMModel: shapes, masks, normalisation, batch invariance, and inference independent of the criterion."""
import pytest
import torch

from hrem.data.batch import ImageBatch
from hrem.factory import create_criterion, create_model, create_tokenizer, load_card

CAPTIONS = ["a red circle", "two blue squares left of a small green triangle near the top", "shapes"]


@pytest.fixture(scope="module")
def region_model():
    torch.manual_seed(0)
    card = load_card("tiny-regions")
    return create_model(card).eval(), create_tokenizer(card)


@pytest.fixture(scope="module")
def grid_model():
    torch.manual_seed(0)
    card = load_card("tiny")
    return create_model(card).eval()


def _regions(b=3, n=7, f=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, f, generator=g).abs(), torch.tensor([7, 3, 5][:b])


def test_embeddings_are_normalised_with_the_right_shape(region_model, grid_model):
    model, tok = region_model
    regions, lengths = _regions()
    with torch.no_grad():
        img = model.encode_image(ImageBatch.from_regions(regions, lengths))
        cap = model.encode_text(tok(CAPTIONS))
        raw = model.encode_image(ImageBatch.from_regions(regions, lengths), normalize=False)
        grid = grid_model.encode_image(ImageBatch.from_pixels(torch.randn(2, 3, 64, 64)))
    assert img.shape == cap.shape == (3, 32) and grid.shape == (2, 32)
    for emb in (img, cap, grid):
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(emb)), atol=1e-5, rtol=0)
    torch.testing.assert_close(img, raw / raw.norm(dim=1, keepdim=True), atol=1e-6, rtol=0)


def test_image_embeddings_are_batch_invariant_and_ignore_padding(region_model):
    model, _ = region_model
    regions, lengths = _regions()
    with torch.no_grad():
        batch = model.encode_image(ImageBatch.from_regions(regions, lengths))
        for i in range(3):
            alone = model.encode_image(ImageBatch.from_regions(regions[i:i + 1, :lengths[i]]))
            torch.testing.assert_close(batch[i], alone[0], atol=1e-5, rtol=0)
        noisy = regions.clone()
        noisy[1, 3:] = 9.0                                 # padding content must not matter
        torch.testing.assert_close(model.encode_image(ImageBatch.from_regions(noisy, lengths)), batch)


def test_text_embeddings_are_batch_invariant(region_model):
    model, tok = region_model
    with torch.no_grad():
        batch = model.encode_text(tok(CAPTIONS))
        for i, text in enumerate(CAPTIONS):
            torch.testing.assert_close(batch[i], model.encode_text(tok([text]))[0], atol=1e-5, rtol=0)


def test_grid_embeddings_are_batch_invariant(grid_model):
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batch = grid_model.encode_image(ImageBatch.from_pixels(pixels))
        torch.testing.assert_close(batch[2], grid_model.encode_image(ImageBatch.from_pixels(pixels[2:]))[0],
                                   atol=1e-5, rtol=0)


def test_forward_train_exposes_prepool_tokens_and_masks(region_model):
    model, tok = region_model
    regions, lengths = _regions()
    texts = tok(CAPTIONS)
    out = model.forward_train(ImageBatch.from_regions(regions, lengths), texts)
    assert out.img_tokens.shape == (3, 7, 32) and out.cap_tokens.shape == (3, texts.input_ids.shape[1], 32)
    assert torch.equal(out.img_mask.sum(1), lengths) and torch.equal(out.cap_mask.sum(1), texts.lengths)
    torch.testing.assert_close(out.img_emb.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)


def test_instance_relation_changes_only_the_training_loss(region_model):
    model, tok = region_model
    card = model.card
    regions, lengths = _regions()
    images, texts = ImageBatch.from_regions(regions, lengths), tok(CAPTIONS)
    with torch.no_grad():
        before_img, before_cap = model.encode_image(images), model.encode_text(texts)
    criterion = create_criterion(card)
    # eval mode so BatchNorm statistics stay put: what is tested is that the criterion never writes to the model
    out = model.forward_train(images, texts)
    losses = criterion(out, torch.arange(3), iteration=card.train.warmup_iters)
    assert losses["gnn"].item() > 0
    losses["loss"].backward()
    assert model.img_enc.fc.fc.weight.grad is not None             # the graph loss trains the encoders
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), before_img)
        torch.testing.assert_close(model.encode_text(texts), before_cap)
    assert not set(criterion.state_dict()) & set(model.state_dict())


def test_wrong_inputs_are_reported(region_model, grid_model):
    model, _ = region_model
    with pytest.raises(ValueError, match="regions and .lengths are required"):
        model.encode_image(ImageBatch.from_pixels(torch.zeros(1, 3, 64, 64)))
    with pytest.raises(ValueError, match=r"expected \[B, N, 16\]"):
        model.encode_image(ImageBatch.from_regions(torch.zeros(1, 4, 8)))
    with pytest.raises(ValueError, match="pixels is required"):
        grid_model.encode_image(ImageBatch.from_regions(torch.zeros(1, 4, 16)))


def test_ablation_cards_build_their_heads():
    card = load_card("tiny-regions", overrides={"head.pooling": "mean", "head.fragment_relation": False})
    mean_model = create_model(card).eval()
    assert mean_model.img_enc.aggr is None and mean_model.img_enc.gpool is None
    regions, lengths = _regions()
    with torch.no_grad():
        tokens = mean_model.image_fragments(ImageBatch.from_regions(regions, lengths))
        want = torch.stack([tokens.tokens[i, :n].mean(0) for i, n in enumerate(lengths.tolist())])
        got = mean_model.encode_image(ImageBatch.from_regions(regions, lengths), normalize=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    gpo = create_model(load_card("tiny-regions", overrides={"head.pooling": "gpo"}))
    assert any(k.startswith("img_enc.gpool.gru.") for k in gpo.state_dict())


def test_bf16_autocast_training_step_runs(region_model):
    model, tok = region_model
    criterion = create_criterion(model.card)
    regions, lengths = _regions()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_train(ImageBatch.from_regions(regions, lengths), tok(CAPTIONS))
        losses = criterion(out, torch.tensor([0, 1, 1]), iteration=10**6)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    model.zero_grad(set_to_none=True)
