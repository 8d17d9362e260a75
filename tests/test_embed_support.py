"""Helpers shared by the embed / search / failure / Ray tests (no tests here): a tiny random run directory,
a listing of small PNGs with captions and metadata, a precomp folder, and directory snapshots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hrem.utils.files import sha256_file

COLORS = ("red", "green", "blue", "yellow")


def make_run(run_dir: Path, card: str = "tiny", seed: int = 0) -> Path:
    import torch

    from hrem.checkpoint import save_run
    from hrem.factory import create_model, load_card

    torch.manual_seed(seed)
    card_obj = load_card(card)
    save_run(run_dir, create_model(card_obj), card_obj)
    return run_dir


def make_listing(root: Path, n: int, seed: int = 0, fmt: str = "csv") -> Path:
    """n PNGs (random sizes/colours) + a listing with image, caption, id (1000 + i) and a colour column."""
    rng = np.random.default_rng(seed)
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        h, w = rng.integers(20, 48, size=2)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "imgs" / f"{i:04d}.png")
        words = " ".join(rng.choice(["a", "red", "blue", "circle", "square", "left", "of", "two"],
                                    size=rng.integers(2, 12)))
        rows.append({"image": f"imgs/{i:04d}.png", "caption": words, "id": 1000 + i, "color": COLORS[i % 4]})
    path = root / f"listing.{fmt}"
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    return path


def make_precomp(folder: Path, images: int, regions: int = 6, feature_dim: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "test_ims.npy", rng.standard_normal((images, regions, feature_dim)).astype(np.float32))
    caps = [f"caption {j} of image {j // 5}" for j in range(5 * images)]
    (folder / "test_caps.txt").write_text("\n".join(caps) + "\n")
    return folder


def snapshot(emb_dir: Path) -> dict:
    """File names + checksums, and the manifest without timings: what must equal across runs/engines."""
    files = {str(p.relative_to(emb_dir)): sha256_file(p) for p in sorted(emb_dir.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    manifest = json.loads((emb_dir / "manifest.json").read_text())
    for records in manifest["shards"].values():
        for record in records:
            record.pop("timings")
    manifest["extra"].pop("model_dir", None)
    return {"files": files, "manifest": manifest}
