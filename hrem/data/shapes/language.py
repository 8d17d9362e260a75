"""Turning descriptions and relations into English words."""
from __future__ import annotations

import random

from hrem.data.shapes.scene import Desc
from hrem.data.shapes.vocab import NUMBER_WORDS, SHAPE_PLURALS

RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left_of": ("left of", "to the left of"),
    "right_of": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
    "next_to": ("next to", "beside"),
}
ORDINAL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "leftmost": ("the leftmost {}", "the {} furthest to the left"),
    "rightmost": ("the rightmost {}", "the {} furthest to the right"),
    "topmost": ("the topmost {}", "the highest {}"),
    "bottommost": ("the bottommost {}", "the lowest {}"),
}
BACKGROUND_WORDS = {"gradient": "gradient", "textured": "textured", "striped": "striped"}


def noun_phrase(desc: Desc, plural: bool = False) -> str:
    """'large green triangle', 'green shape', 'small shapes' (no article)."""
    noun = desc.shape or "shape"
    if plural:
        noun = SHAPE_PLURALS.get(noun, noun + "s")
    return " ".join(w for w in (desc.size, desc.colour, noun) if w)


def indefinite(desc: Desc) -> str:
    phrase = noun_phrase(desc)
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def definite(desc: Desc) -> str:
    return "the " + noun_phrase(desc)


def counted(desc: Desc, n: int) -> str:
    """'two red shapes', 'one circle'."""
    return f"{NUMBER_WORDS[n]} {noun_phrase(desc, plural=n != 1)}"


def relation_phrase(rng: random.Random, relation: str) -> str:
    return rng.choice(RELATION_PHRASES[relation])


def sentence(text: str) -> str:
    """Karpathy-style raw caption: capitalised, ending with a full stop."""
    return text[0].upper() + text[1:] + "."
