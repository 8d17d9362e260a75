"""Split names, in one place. hrem's API calls the validation split "dev" and accepts "val"; each on-disk
format has its own spelling, which only this module knows:

    Karpathy JSON      "val" (COCO's "restval" images belong to "train": the 113,287-image train set)
    RefCOCO-style      "val" (some preprocessings write "dev": both are tried)
    SCAN *_precomp     "dev" ({split}_ims.npy, {split}_caps.txt)
"""
from __future__ import annotations

DEV_NAMES = ("dev", "val")


def canonical_split(split: str) -> str:
    """hrem's name: 'val' -> 'dev', everything else unchanged."""
    return "dev" if split in DEV_NAMES else split


def karpathy_splits(split: str) -> tuple[str, ...]:
    """The `split` values of Karpathy JSON images that make up `split`."""
    split = canonical_split(split)
    return {"dev": ("val",), "train": ("train", "restval")}.get(split, (split,))


def refs_splits(split: str) -> tuple[str, ...]:
    """The keys of a RefCOCO-style {split: [...]} file that may hold `split`, in order of preference."""
    return ("val", "dev") if canonical_split(split) == "dev" else (split,)


def refs_file_split(split: str) -> str:
    """The file name stem ShapesRef uses for `split` under refs/ and scenes/ (train | val | test)."""
    return "val" if canonical_split(split) == "dev" else split


def precomp_split(split: str) -> str:
    """The file prefix of a precomp folder: {precomp_split(split)}_ims.npy."""
    return canonical_split(split)
