"""Helpers shared by the serve / browser tests (no tests here): a tiny index built through the real CLI
(tiny random model -> `hrem embed` on a small ShapesRef -> `hrem index`), a real grounding callable (a
random `mcn-tiny` grounding run and a reference grounder straight through hrem.grounding), and a uvicorn server on a free loopback port in a thread."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from test_embed_support import make_run

_CORPORA: dict[Path, dict[str, Path]] = {}


def build_corpus(root: Path) -> dict[str, Path]:
    """ShapesRef (test split, 24 images of 64 px) embedded by a tiny random model, images + captions indices.

    Memoised per root so the serve and browser tests share one build within a session."""
    if root in _CORPORA:
        return _CORPORA[root]
    from hrem.cli import main
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(root / "shapes", train=8, dev=4, test=24, size=64)
    run = make_run(root / "run")
    emb, index = root / "emb", root / "index"
    code = main(["embed", "--data", str(data), "--model", str(run), "--out", str(emb), "--workers", "0",
                 "--device", "cpu", "--no-progress"])
    if code != 0:
        raise RuntimeError(f"hrem embed failed with exit code {code}")
    for modality in ("images", "captions"):
        if main(["index", "--emb", str(emb), "--out", str(index / modality), "--modality", modality]) != 0:
            raise RuntimeError(f"hrem index --modality {modality} failed")
    grounding = make_grounding_run(root / "grounding")
    _CORPORA[root] = {"data": data, "run": run, "emb": emb, "index": index, "grounding": grounding}
    return _CORPORA[root]


def make_grounding_run(run_dir: Path, seed: int = 0) -> Path:
    """A random mcn-tiny MCN saved as a grounding run directory (what `hrem serve --grounding` loads)."""
    if (run_dir / "model.safetensors").is_file():
        return run_dir
    import torch

    from hrem.checkpoint import save_run
    from hrem.factory import create_model, load_card

    torch.manual_seed(seed)
    card = load_card("mcn-tiny")
    save_run(run_dir, create_model(card), card)
    return run_dir


def reference_grounder(run_dir: Path):
    """(image_path, query) -> {"box", "score", "mask"} straight through hrem.grounding: the run's weights,
    letterbox, GroundingModel.ground, COCO RLE -- the reference the served /api/ground is compared with."""
    import torch
    from PIL import Image

    from hrem.eval import rle_encode
    from hrem.factory import create_model, load_card
    from hrem.grounding import build_mcn_tokenizer, letterbox_image

    card = load_card(run_dir / "config.json")
    model = create_model(card, weights=run_dir / "model.safetensors").eval()
    tokenizer = build_mcn_tokenizer(card)

    def ground(image_path: Path, query: str) -> dict[str, Any]:
        with Image.open(image_path) as image:
            pixels, meta = letterbox_image(image.convert("RGB"), card.input_size)
        prediction = model.ground(torch.from_numpy(pixels)[None], tokenizer([query]), [meta])[0]
        return {"box": [float(v) for v in prediction.box_xyxy], "score": prediction.score,
                "mask": rle_encode(prediction.mask)}
    return ground


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a daemon thread; `stop()` shuts it down."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 20.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
