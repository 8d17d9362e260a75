"""One ShapesRef image from (seed, imgid): layout, masks, scene graph, captions, expressions, pixels.

Everything is drawn from a random stream keyed by (seed, imgid) alone, so an image does not depend on the
split sizes, the chunking or the number of worker processes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hrem.data.shapes.captions import make_captions
from hrem.data.shapes.captions_v2 import caption_rng, make_captions_v2
from hrem.data.shapes.expressions import referring_expressions
from hrem.data.shapes.layout import sample_layout
from hrem.data.shapes.relations import Box
from hrem.data.shapes.render import draw_background, render_image, render_masks
from hrem.data.shapes.scene import Scene, SceneObject
from hrem.data.shapes.vocab import BACKGROUNDS

MAX_REDRAWS = 50


@dataclass
class RenderedScene:
    scene: Scene
    image: Image.Image         # RGB, side x side
    masks: list[Image.Image]   # one L-mode 0/255 mask per object


def scene_rng(seed: int, imgid: int) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, identically in every process and Python run.
    return random.Random(f"shapesref/{seed}/{imgid}")


def mask_box(mask: Image.Image | np.ndarray) -> Box:
    """The tight pixel box [x0, x1) x [y0, y1) of a non-empty mask."""
    mask = np.asarray(mask) > 0
    cols, rows = mask.any(axis=0), mask.any(axis=1)
    if not cols.any():
        raise ValueError("empty object mask: the object was drawn outside the image")
    x0, x1 = int(cols.argmax()), len(cols) - int(cols[::-1].argmax())
    y0, y1 = int(rows.argmax()), len(rows) - int(rows[::-1].argmax())
    return Box(x0, y0, x1, y1)


def _annotate(rng: random.Random, scene: Scene) -> bool:
    """Fill in captions and expressions; False when some object cannot be referred to uniquely."""
    expressions = []
    for obj in scene.objects:
        found = referring_expressions(rng, scene, obj)
        if not found:
            return False
        expressions.extend(found)
    captions = make_captions(rng, scene)
    if captions is None:
        return False
    scene.captions, scene.expressions = captions, expressions
    return True


def build_scene(seed: int, imgid: int, side: int, caption_version: int = 2) -> RenderedScene:
    """`caption_version` 1 keeps the first captions; 2 replaces them with version-2 captions drawn from
    their own stream after everything else (the pixels do not depend on the version)."""
    rng = scene_rng(seed, imgid)
    for _ in range(MAX_REDRAWS):
        placements = sample_layout(rng, side)
        masks = render_masks(placements, side)
        objects = [SceneObject(i, p.shape, p.colour, p.size, (p.cx, p.cy), p.radius, mask_box(m))
                   for i, (p, m) in enumerate(zip(placements, masks))]
        scene = Scene(imgid=imgid, side=side, background=rng.choice(BACKGROUNDS), objects=objects)
        if _annotate(rng, scene):
            boxes = [(o.box.x0, o.box.y0, o.box.x1, o.box.y1) for o in objects]
            image = render_image(draw_background(rng, side, scene.background), placements, masks, boxes)
            if caption_version == 2:
                scene.captions = make_captions_v2(caption_rng(seed, imgid), scene)
            return RenderedScene(scene, image, masks)
    raise RuntimeError(f"image {imgid} (seed {seed}): no scene with unique referring expressions after "
                       f"{MAX_REDRAWS} draws")
