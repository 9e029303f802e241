"""PNG overlays of boxes with their labels, base and novel categories in two colours (both det-ovcoco protocols)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from silc.io import atomic_write_bytes

BASE_COLOUR = (40, 200, 70)  # green
NOVEL_COLOUR = (250, 110, 20)  # orange
MIN_SIDE = 256  # small images are upscaled so the labels stay legible


def draw_boxes(
    image: Image.Image, boxes: Sequence[Sequence[float]], labels: Sequence[str], novel: Sequence[bool]
) -> Image.Image:
    """``image`` with each ``xyxy`` box outlined and labelled; novel boxes orange, base boxes green."""
    scale = max(1.0, MIN_SIDE / min(image.size))
    canvas = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)))
    draw = ImageDraw.Draw(canvas)
    for box, label, is_novel in zip(boxes, labels, novel, strict=True):
        colour = NOVEL_COLOUR if is_novel else BASE_COLOUR
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        left, top, right, bottom = draw.textbbox((x0 + 2, y0 + 1), label)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
        draw.text((x0 + 2, y0 + 1), label, fill=(0, 0, 0))
    return canvas


def save_png(image: Image.Image, path: Path) -> Path:
    """Write ``image`` as a PNG atomically."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
