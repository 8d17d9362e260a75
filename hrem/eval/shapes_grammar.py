"""Reading ShapesRef captions and queries back into facts, from the text alone.

This parser is written from the grammar documented for version-2 captions (hrem.data.shapes.captions_v2)
and never imports the generator: its facts are checked against the generator's stored facts in the tests,
and it lets `hrem data ceiling` and the demo judge any text a user types, e.g. "a red circle left of a
blue square", "two green triangles", "three shapes on a striped background".

Facts (as stored next to every caption):
    {"kind": "exists", "desc": D}                          an object matching D
    {"kind": "count", "desc": D, "n": n}                   exactly n objects match D
    {"kind": "relation", "subject": D, "relation": R, "object": D}
    {"kind": "total", "n": n}                              the image holds n objects
    {"kind": "background", "background": B}
with D = {"shape", "colour", "size"} (None = not said).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
RELATION_WORDS = {
    "to the left of": "left_of", "left of": "left_of", "to the right of": "right_of", "right of": "right_of",
    "above": "above", "below": "below", "under": "below", "next to": "next_to", "beside": "next_to",
}
PREFIXES = ("a picture of ", "an image of ", "there is ", "there are ")


class CaptionParseError(ValueError):
    """The text is not in the ShapesRef caption grammar; the message names the text and the position."""


@dataclass(frozen=True)
class Vocabulary:
    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    backgrounds: tuple[str, ...]

    @classmethod
    def from_metadata(cls, meta: dict) -> Vocabulary:
        """From shapesref.json's "vocabulary" section."""
        vocab = meta["vocabulary"]
        return cls(tuple(vocab["shapes"]), tuple(vocab["colours"]), tuple(vocab["sizes"]), tuple(vocab["backgrounds"]))

    def plural(self, shape: str) -> str:
        return shape + ("es" if shape.endswith("s") else "s")


def _fail(text: str, part: str, why: str) -> CaptionParseError:
    position = max(text.lower().find(part), 0)
    return CaptionParseError(f"caption {text!r}: {why} at character {position} ({part!r})")


def _noun_phrase(words: list[str], vocab: Vocabulary, text: str, part: str) -> dict:
    """'a large red circle' / 'two red shapes' -> exists or count fact."""
    if len(words) < 2:
        raise _fail(text, part, "expected a noun phrase such as 'a red circle'")
    head, *rest = words
    desc: dict = {"shape": None, "colour": None, "size": None}
    if rest and rest[0] in vocab.sizes:
        desc["size"] = rest.pop(0)
    if rest and rest[0] in vocab.colours:
        desc["colour"] = rest.pop(0)
    if len(rest) != 1:
        known = set(vocab.sizes) | set(vocab.colours) | set(vocab.shapes) | {vocab.plural(x) for x in vocab.shapes}
        unknown = [w for w in words[1:] if w not in known | {"shape", "shapes", "object", "objects"}]
        why = (f"unknown word {unknown[0]!r} (sizes {list(vocab.sizes)}, colours {list(vocab.colours)}, shapes "
               f"{list(vocab.shapes)})" if unknown else f"expected [size] [colour] shape after {head!r}, found "
               f"{' '.join(words[1:])!r}")
        raise _fail(text, part, why)
    noun, plural = rest[0], head not in ("a", "an", "one")
    singular = {s: s for s in vocab.shapes} | {"shape": None, "object": None}
    plurals = {vocab.plural(s): s for s in vocab.shapes} | {"shapes": None, "objects": None}
    nouns = plurals if plural else singular
    if noun not in nouns:
        raise _fail(text, part, f"expected a {'plural ' if plural else ''}shape noun, found {noun!r}")
    desc["shape"] = nouns[noun]
    if head in ("a", "an"):
        return {"kind": "exists", "desc": desc}
    if head not in NUMBERS:
        raise _fail(text, part, f"expected 'a', 'an' or a number word, found {head!r}")
    if not any(desc.values()):          # "three shapes": how many objects the image holds
        return {"kind": "total", "n": NUMBERS.index(head)}
    return {"kind": "count", "desc": desc, "n": NUMBERS.index(head)}


def _item(item: str, vocab: Vocabulary, text: str) -> list[dict]:
    for phrase in sorted(RELATION_WORDS, key=len, reverse=True):
        marker = f" {phrase} "
        if marker in item:
            left, right = item.split(marker, 1)
            subject, obj = (_noun_phrase(side.split(), vocab, text, side) for side in (left, right))
            if subject["kind"] != "exists" or obj["kind"] != "exists":
                raise _fail(text, item, "a relation joins two singular noun phrases")
            return [{"kind": "relation", "subject": subject["desc"], "relation": RELATION_WORDS[phrase],
                     "object": obj["desc"]}]
    return [_noun_phrase(item.split(), vocab, text, item)]


def _total(number: str, text: str) -> dict:
    if number not in NUMBERS:
        raise _fail(text, number, "expected a number word")
    return {"kind": "total", "n": NUMBERS.index(number)}


def _frame(body: str, vocab: Vocabulary, text: str) -> tuple[str, list[dict]]:
    """Strip the sentence frame; the listed part and the frame's facts (total, background)."""
    backgrounds = "|".join(map(re.escape, vocab.backgrounds))
    number = r"(\w+) (?:shapes|objects)"
    patterns = [
        (rf"{number} on an? ({backgrounds}) background: (.+)", lambda m: (m[3], [_total(m[1], text), _bg(m[2])])),
        (rf"{number}: (.+)", lambda m: (m[2], [_total(m[1], text)])),
        (rf"(.+), {number} in all", lambda m: (m[1], [_total(m[2], text)])),
        (rf"(.+) on an? ({backgrounds}) background", lambda m: (m[1], [_bg(m[2])])),
    ]
    for pattern, take in patterns:
        match = re.fullmatch(pattern, body)
        if match:
            return take(match)
    for prefix in PREFIXES:
        if body.startswith(prefix):
            return body[len(prefix):], []
    return body, []


def _bg(name: str) -> dict:
    return {"kind": "background", "background": name}


def parse_caption(text: str, vocab: Vocabulary) -> list[dict]:
    """The facts a caption states, in reading order (frame facts last)."""
    body = text.strip().lower().rstrip(".").strip()
    if not body:
        raise CaptionParseError(f"caption {text!r}: empty")
    listed, frame_facts = _frame(body, vocab, text)
    facts = [fact for item in re.split(r", | and ", listed) for fact in _item(item.strip(), vocab, text)]
    return facts + frame_facts
