"""The JSON records of one scene: its scene-graph entry, its Karpathy image entry and its RefCOCO entries."""
from __future__ import annotations

import re

from hrem.data.shapes.scene import Scene
from hrem.data.shapes.vocab import REF_STRIDE, cat_id

CAPTIONS_PER_IMAGE = 5


def image_name(imgid: int) -> str:
    return f"{imgid:06d}.png"


def ref_id(imgid: int, index: int) -> int:
    return imgid * REF_STRIDE + index


def mask_name(ref: int) -> str:
    return f"masks/{ref:07d}.png"


def tokens(text: str) -> list[str]:
    """Karpathy-style tokens: lower-case words, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", text.lower())


def scene_record(scene: Scene, split: str) -> dict:
    """The scene graph as written to scenes/{split}.json."""
    objects = [scene.object_json(o, ref_id(scene.imgid, o.index), mask_name(ref_id(scene.imgid, o.index)))
               for o in scene.objects]
    relations = [[a, r, b] for r, pairs in scene.relation_table.items() for a, b in sorted(pairs)]
    return {"imgid": scene.imgid, "filename": image_name(scene.imgid), "split": split,
            "background": scene.background, "objects": objects, "relations": relations,
            "captions": scene.captions, "expressions": scene.expressions}


def karpathy_entry(record: dict) -> dict:
    imgid = record["imgid"]
    sentids = [imgid * CAPTIONS_PER_IMAGE + k for k in range(len(record["captions"]))]
    sentences = [{"raw": c["text"], "tokens": tokens(c["text"]), "imgid": imgid, "sentid": s}
                 for c, s in zip(record["captions"], sentids)]
    return {"imgid": imgid, "filename": record["filename"], "filepath": "images", "split": record["split"],
            "sentids": sentids, "sentences": sentences}


def ref_entries(record: dict) -> list[dict]:
    """One RefCOCO-style (SimREC layout) entry per referred object, all of its expressions together."""
    entries = []
    for obj in record["objects"]:
        refs = [e["text"] for e in record["expressions"] if e["object"] == obj["index"]]
        entries.append({"iid": record["imgid"], "file_name": record["filename"], "bbox": obj["bbox"],
                        "cat_id": cat_id(obj["shape"]), "category": obj["shape"], "refs": refs,
                        "mask_id": obj["ref_id"], "mask": obj["mask"]})
    return entries
