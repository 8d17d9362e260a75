"""R@K through a FAISS index, side by side with exact search, so the cost of approximation is visible.

t2i: each caption searches the images index for its k nearest ids; the rank is the position of the
caption's image among them, or k when it is not found (ranks are capped at k: R@K is exact for K <= k,
medr/meanr are not reported). i2t: each image searches the captions index; the rank is the first position
holding one of the image's captions (caption -> image from the captions' `image_id` column).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hrem.index import VectorSearcher
from hrem.index.info import INDEX_JSON, read_info
from hrem.store import read_metadata

RECALL_KS = (1, 5, 10)


def index_dirs(index_dir: str | Path) -> dict[str, Path]:
    """{modality: index directory} for a single index directory or a folder of images/ + captions/."""
    index_dir = Path(index_dir)
    if (index_dir / INDEX_JSON).is_file():
        return {read_info(index_dir).modality: index_dir}
    found = {m: index_dir / m for m in ("images", "captions") if (index_dir / m / INDEX_JSON).is_file()}
    if not found:
        raise FileNotFoundError(f"{index_dir}: expected an index directory ({INDEX_JSON} + index.faiss) or a "
                                f"folder with images/ and/or captions/ index directories, found neither")
    return found


def capped_ranks(found_ids: np.ndarray, wanted: np.ndarray, k: int) -> np.ndarray:
    """Position of wanted[q] in found_ids[q] (first hit), or k when absent. found_ids: [Q, k'] (-1 padded)."""
    hits = found_ids == np.asarray(wanted)[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), k)
    return first.astype(np.int64)


def recall_table(ranks: np.ndarray) -> dict[str, float]:
    return {f"r{k}": round(100.0 * float(np.mean(ranks < k)), 2) for k in RECALL_KS}


def ann_t2i(images: VectorSearcher, cap_emb: np.ndarray, gt_image_ids: np.ndarray, k: int) -> np.ndarray:
    _, ids = images.search(cap_emb, k)
    return capped_ranks(ids, gt_image_ids, k)


def ann_i2t(captions: VectorSearcher, img_emb: np.ndarray, image_ids: np.ndarray, k: int) -> np.ndarray:
    _, ids = captions.search(img_emb, k)
    unique = np.unique(ids[ids >= 0])
    owner = read_metadata(captions.emb_dir, "captions", unique, columns=["image_id"]).column("image_id")
    lookup = dict(zip(unique.tolist(), owner.to_pylist()))
    owners = np.vectorize(lambda i: lookup.get(int(i), -1), otypes=[np.int64])(ids) if ids.size else ids
    return capped_ranks(owners, image_ids, k)


def evaluate_with_index(index_dirs: dict[str, Path], img_emb: np.ndarray, cap_emb: np.ndarray,
                        image_ids: np.ndarray, caption_image: np.ndarray, k: int = 100) -> dict:
    """{"t2i": {r1, r5, r10}, "i2t": {...} (when a captions index exists), "rsum", "seconds", "index": ...}."""
    out: dict = {"k": k, "index": {}}
    started = time.perf_counter()
    if "images" in index_dirs:
        images = VectorSearcher(index_dirs["images"])
        _check_count(images, len(image_ids), index_dirs["images"])
        out["t2i"] = recall_table(ann_t2i(images, cap_emb, image_ids[caption_image], k))
        out["index"]["images"] = {"factory": images.info.factory, "params": images.info.search_params}
    if "captions" in index_dirs:
        captions = VectorSearcher(index_dirs["captions"])
        _check_count(captions, len(caption_image), index_dirs["captions"])
        out["i2t"] = recall_table(ann_i2t(captions, img_emb, image_ids, k))
        out["index"]["captions"] = {"factory": captions.info.factory, "params": captions.info.search_params}
    if "t2i" in out and "i2t" in out:
        out["rsum"] = round(sum(out["t2i"].values()) + sum(out["i2t"].values()), 2)
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _check_count(searcher: VectorSearcher, expected: int, where: Path) -> None:
    if searcher.info.ntotal != expected:
        raise ValueError(f"{where}/index.json: the index holds {searcher.info.ntotal} {searcher.modality}, the "
                         f"evaluated split has {expected}; index the embeddings of this split")


def side_by_side(exact: dict, ann: dict) -> list[str]:
    """Markdown rows: exact vs ANN R@K (exact = an hrem.eval summary)."""
    header = "| search | i2t R@1 | R@5 | R@10 | t2i R@1 | R@5 | R@10 | rsum |"
    rows = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows.append("| exact | " + " | ".join(f"{exact[f'{d}_r{k}']:.2f}" for d in ("i2t", "t2i") for k in RECALL_KS)
                + f" | {exact['rsum']:.2f} |")
    cells = [f"{ann[d][f'r{k}']:.2f}" if d in ann else "-" for d in ("i2t", "t2i") for k in RECALL_KS]
    factory = ", ".join(f"{m}: {v['factory']} {v['params'] or ''}".strip() for m, v in ann["index"].items())
    rows.append(f"| ANN ({factory}; k={ann['k']}) | " + " | ".join(cells) + f" | {ann.get('rsum', '-')} |")
    return rows


def index_report(index_dir: str | Path, img_emb: np.ndarray, cap_emb: np.ndarray, image_ids: np.ndarray,
                 caption_image: np.ndarray, model_fingerprint: str, k: int = 100) -> dict:
    """`hrem evaluate --index`: ANN R@K of the evaluated model's embeddings through the index."""
    dirs = index_dirs(index_dir)
    for path in dirs.values():
        recorded = read_info(path).embeddings.model_fingerprint
        if recorded != model_fingerprint:
            raise ValueError(f"{path / INDEX_JSON}: built from model {recorded}, but the evaluated model is "
                             f"{model_fingerprint}; evaluate with the model that made the index")
    return evaluate_with_index(dirs, img_emb, cap_emb, np.asarray(image_ids, np.int64),
                               np.asarray(caption_image, np.int64), k)
