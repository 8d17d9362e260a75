"""Golden embeddings of the `tiny` (grid) and `tiny-regions` cards at a fixed seed and fixed inputs.

They catch silent drift (pooling, masking, normalisation, init order, dtype). After an intended change,
regenerate with `python tests/test_golden.py --regenerate` and say why in the commit message.
"""
import sys
from pathlib import Path

import numpy as np
import torch

from hrem.data.batch import ImageBatch
from hrem.factory import create_model, create_tokenizer, load_card

GOLDEN = Path(__file__).parent / "golden" / "tiny_embeddings.npz"
CAPTIONS = ["a red circle", "two blue squares left of a green triangle", "a small yellow star at the bottom right"]


def compute() -> dict[str, np.ndarray]:
    out = {}
    for name in ("tiny", "tiny-regions"):
        card = load_card(name)
        torch.manual_seed(0)
        model = create_model(card).eval()
        g = torch.Generator().manual_seed(1)
        if card.image.kind == "grid":
            images = ImageBatch.from_pixels(torch.randn(3, 3, card.image.image_size, card.image.image_size, generator=g))
        else:
            images = ImageBatch.from_regions(torch.randn(3, 6, card.image.feature_dim, generator=g).abs(),
                                             torch.tensor([6, 2, 4]))
        with torch.no_grad():
            out[f"{name}/image"] = model.encode_image(images).numpy()
            out[f"{name}/text"] = model.encode_text(create_tokenizer(card)(CAPTIONS)).numpy()
    return out


def test_tiny_embeddings_match_golden():
    golden = np.load(GOLDEN)
    got = compute()
    assert sorted(golden.files) == sorted(got)
    for key, value in got.items():
        np.testing.assert_allclose(value, golden[key], atol=1e-5, rtol=0, err_msg=key)


if __name__ == "__main__" and "--regenerate" in sys.argv:
    np.savez(GOLDEN, **compute())
    print(f"wrote {GOLDEN}")
