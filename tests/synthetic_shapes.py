"""A synthetic captioning task where generalisation is possible, for training tests and benchmarks.

Each image holds one to three coloured shapes in cells of a 3x3 grid; its caption names them in
reading order from a small grammar ("a red circle at the top left and a blue square in the
center."). Held-out images are new combinations of the same words, so a model can only score
well on them by reading the image. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
QUESTION = "Describe the shapes in this picture."
IMAGE_SIZE = 112  # the demo model's input size: no resampling blur


@dataclass(frozen=True)
class Sample:
    image: object  # PIL.Image.Image
    caption: str


def draw(rng: random.Random, size: int = IMAGE_SIZE) -> Sample:
    from PIL import Image, ImageDraw

    cells = sorted(rng.sample(range(9), rng.randint(1, 3)))
    image = Image.new("RGB", (size, size), (245, 245, 245))
    pen = ImageDraw.Draw(image)
    cell, parts = size / 3, []
    for index in cells:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        row, col = divmod(index, 3)
        cx, cy, half = (col + 0.5) * cell, (row + 0.5) * cell, cell * 0.38
        box = [cx - half, cy - half, cx + half, cy + half]
        if shape == "circle":
            pen.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            pen.rectangle(box, fill=COLOURS[colour])
        else:
            pen.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=COLOURS[colour])
        where = "in the center" if POSITIONS[index] == "center" else f"at the {POSITIONS[index]}"
        parts.append(f"a {colour} {shape} {where}")
    return Sample(image, " and ".join(parts) + ".")


def samples(count: int, seed: int = 0) -> list[Sample]:
    """`count` distinct images (no two captions+images alike, so no duplicate in the queue)."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < count:
        sample = draw(rng)
        key = sample.image.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(sample)
    return out


def wrong_caption(rng: random.Random) -> str:
    """A plausible but wrong model draft (what reviewers correct)."""
    return draw(rng).caption
