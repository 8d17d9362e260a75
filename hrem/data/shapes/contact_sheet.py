"""A contact sheet of a ShapesRef folder: scenes with their captions and referring expressions, the
referred objects' boxes and masks drawn on the scene. Read through the standard readers, so the sheet also
shows that what was written reads back correctly."""
from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hrem.data.readers import RefObject, read_karpathy, read_mask, read_refs
from hrem.data.splits import refs_file_split

SCALE = 3
TEXT_WIDTH = 430
MARK_COLOURS = ((255, 0, 255), (0, 255, 255), (255, 255, 0))   # boxes of the first referred objects
MAX_REFERRED = 3


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _mask_edge(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels (in the mask, with a 4-neighbour outside it)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _scene_panel(image_path: Path, refs: list[RefObject]) -> Image.Image:
    """The scene enlarged, each referred object's box drawn and its mask's outline traced inside it (the
    outline sits exactly on the painted shape's border when the mask is right)."""
    with Image.open(image_path) as source:
        scene = source.convert("RGB")
    scene = scene.resize((scene.width * SCALE, scene.height * SCALE), Image.NEAREST)
    draw = ImageDraw.Draw(scene)
    for ref, colour in zip(refs, MARK_COLOURS):
        if ref.mask_path is not None:
            edge = np.kron(_mask_edge(read_mask(ref.mask_path)), np.ones((SCALE, SCALE), dtype=bool))
            scene.paste(colour, (0, 0), Image.fromarray(edge.astype(np.uint8) * 255, mode="L"))
        x, y, w, h = (v * SCALE for v in ref.bbox_xywh)
        draw.rectangle([x - 3, y - 3, x + w + 2, y + h + 2], outline=colour, width=2)
    return scene


def _text_lines(captions: list[str], refs: list[RefObject], width_chars: int) -> list[tuple[str, tuple]]:
    lines: list[tuple[str, tuple]] = [("captions:", (200, 200, 200))]
    for caption in captions:
        lines += [(line, (255, 255, 255)) for line in textwrap.wrap(caption, width_chars, initial_indent="- ",
                                                                    subsequent_indent="  ")]
    lines.append(("referring expressions (box colour):", (200, 200, 200)))
    for ref, colour in zip(refs, MARK_COLOURS):
        for sentence in ref.sentences:
            lines += [(line, colour) for line in textwrap.wrap(sentence, width_chars, initial_indent="- ",
                                                               subsequent_indent="  ")]
    return lines


def _panel(image_path: Path, captions: list[str], refs: list[RefObject]) -> Image.Image:
    scene = _scene_panel(image_path, refs[:MAX_REFERRED])
    panel = Image.new("RGB", (scene.width + TEXT_WIDTH, max(scene.height, 10)), (30, 30, 34))
    panel.paste(scene, (0, 0))
    draw, font = ImageDraw.Draw(panel), _font(13)
    y = 6
    for text, colour in _text_lines(captions, refs[:MAX_REFERRED], width_chars=58):
        if y > panel.height - 16:
            break
        draw.text((scene.width + 10, y), text, fill=colour, font=font)
        y += 17
    draw.text((4, 2), image_path.name, fill=(255, 255, 255), font=font)
    return panel


def make_contact_sheet(data_dir: str | Path, out: str | Path, split: str = "test", n: int = 6,
                       columns: int = 2) -> Path:
    """Write a PNG grid of the first `n` images of `split` with captions and up to 3 referred objects."""
    data_dir, out = Path(data_dir), Path(out)
    captions = read_karpathy(data_dir / "dataset_shapesref.json", data_dir, split)
    refs_split = refs_file_split(split)
    by_image: dict[int, list[RefObject]] = defaultdict(list)
    for ref in read_refs(data_dir / "refs" / f"{refs_split}.json", split, data_dir / "images"):
        by_image[ref.image_id].append(ref)
    panels = []
    for row in range(min(n, len(captions.image_paths))):
        texts = [c for c, i in zip(captions.captions, captions.caption_image) if i == row]
        image_id = int(captions.image_ids[row])
        panels.append(_panel(captions.root / captions.image_paths[row], texts, by_image[image_id]))
    if not panels:
        raise ValueError(f"{data_dir}: split {split!r} has no images to show")
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    width, height = panels[0].size
    sheet = Image.new("RGB", (columns * width, rows * height), (0, 0, 0))
    for k, panel in enumerate(panels):
        sheet.paste(panel, ((k % columns) * width, (k // columns) * height))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out
