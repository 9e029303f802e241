"""Rasterise a scene: procedural stuff textures, shape polygons, the RGB image and its label map."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from silc.data.synth.world import COLOURS, OBJECT_LABEL_OFFSET, SHAPES, STUFF, Scene

Polygon = np.ndarray  # [N, 2] unit-radius (x, y) vertices, y pointing down
TEXTURE_VARIANTS = 8  # per stuff class and image size; each scene crops a random window of one


def _ngon(
    n: int, radius: float = 1.0, start: float = -np.pi / 2, dx: float = 0.0, dy: float = 0.0
) -> Polygon:
    t = start + np.arange(n) * 2 * np.pi / n
    return np.stack([dx + radius * np.cos(t), dy + radius * np.sin(t)], axis=1)


def _star() -> Polygon:
    t = -np.pi / 2 + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart() -> Polygon:
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 16.5


def _semicircle() -> Polygon:
    t = np.linspace(np.pi, 2 * np.pi, 20)
    return np.stack([np.cos(t), 0.45 + np.sin(t)], axis=1)


def _poly(*xy: float) -> Polygon:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


@cache
def shape_ops(shape: int) -> tuple[tuple[Polygon, int], ...]:
    """The unit shape as fill operations: (polygon, 1) paints, (polygon, 0) cuts a hole."""
    name = SHAPES[shape]
    table: dict[str, tuple[tuple[Polygon, int], ...]] = {
        "circle": ((_ngon(32), 1),),
        "square": ((_poly(-0.78, -0.78, 0.78, -0.78, 0.78, 0.78, -0.78, 0.78), 1),),
        "triangle": ((_ngon(3, 1.0, -np.pi / 2, 0, 0.15), 1),),
        "star": ((_star(), 1),),
        "cross": (
            (
                _poly(
                    -0.3,
                    -1,
                    0.3,
                    -1,
                    0.3,
                    -0.3,
                    1,
                    -0.3,
                    1,
                    0.3,
                    0.3,
                    0.3,
                    0.3,
                    1,
                    -0.3,
                    1,
                    -0.3,
                    0.3,
                    -1,
                    0.3,
                    -1,
                    -0.3,
                    -0.3,
                    -0.3,
                ),
                1,
            ),
        ),
        "heart": ((_heart(), 1),),
        "ring": ((_ngon(32), 1), (_ngon(32, 0.55), 0)),
        "diamond": ((_poly(0, -1, 0.62, 0, 0, 1, -0.62, 0), 1),),
        "hexagon": ((_ngon(6, 1.0, 0.0), 1),),
        "pentagon": ((_ngon(5, 1.0, -np.pi / 2, 0, 0.08), 1),),
        "arrow": ((_poly(-1, -0.22, 0.15, -0.22, 0.15, -0.62, 1, 0, 0.15, 0.62, 0.15, 0.22, -1, 0.22), 1),),
        "crescent": ((_ngon(32), 1), (_ngon(32, 0.82, -np.pi / 2, 0.45, -0.18), 0)),
        "trapezoid": ((_poly(-0.5, -0.62, 0.5, -0.62, 1, 0.62, -1, 0.62), 1),),
        "semicircle": ((_semicircle(), 1),),
        "chevron": ((_poly(-1, -0.75, 0, 0.05, 1, -0.75, 1, -0.05, 0, 0.75, -1, -0.05), 1),),
        "rectangle": ((_poly(-1, -0.5, 1, -0.5, 1, 0.5, -1, 0.5), 1),),
    }
    return table[name]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Value noise in [0, 1]: a random coarse grid upsampled bilinearly to h x w."""
    grid = rng.random((cells_y + 1, cells_x + 1), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR))


def _texture(stuff: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural [h, w, 3] float texture for one stuff class (scale set by the height h)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / h
    fine = np.repeat(np.repeat(rng.random((h // 2 + 1, w // 2 + 1), dtype=np.float32), 2, 0), 2, 1)[:h, :w]
    low = _smooth_noise(rng, h, w, 4, 4 * w // h)
    if stuff == "grass":
        blades = _smooth_noise(rng, h, w, max(2, h // 16), w // 2)
        base = np.array([55, 140, 45], np.float32)
        return base * (0.75 + 0.35 * blades + 0.15 * low + 0.04 * fine)[..., None]
    if stuff == "water":
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(2 * np.pi * (yy * 9 + 0.35 * np.sin(2 * np.pi * xx * 2 + phase)) + phase)
        base = np.array([35, 90, 175], np.float32)
        return base * (0.85 + 0.1 * low)[..., None] + (22 * np.clip(waves, 0, 1) ** 3)[..., None]
    if stuff == "sand":
        base = np.array([215, 188, 130], np.float32)
        return base * (0.86 + 0.1 * low + 0.06 * fine)[..., None]
    if stuff == "snow":
        tint = np.array([-18, -10, 0], np.float32)
        return np.array([236, 240, 248], np.float32) + low[..., None] * tint - 4 * fine[..., None]
    if stuff == "sky":
        top, bottom = np.array([70, 135, 225], np.float32), np.array([165, 205, 245], np.float32)
        sky = top + (bottom - top) * yy[..., None]
        clouds = np.clip((_smooth_noise(rng, h, w, 3, 5 * w // h) - 0.55) * 3.0, 0, 1)[..., None]
        return sky * (1 - clouds) + 245 * clouds
    if stuff == "brick wall":
        rows = max(4, h // 8)
        bh = h / rows
        row = np.floor(yy * h / bh)
        shift = (row % 2) * bh
        col = np.floor((xx * h + shift) / (2 * bh))
        tone = 0.8 + 0.25 * ((row * 1009 + col) % 97) / 97.0
        mortar = ((yy * h) % bh < 1) | (((xx * h + shift) % (2 * bh)) < 1)
        base = np.array([165, 65, 45], np.float32) * (tone + 0.04 * fine)[..., None]
        return np.where(mortar[..., None], np.float32(190) + 5 * fine[..., None], base)
    raise KeyError(stuff)


@cache
def _rock(n: int, variant: int) -> np.ndarray:
    """The unlabelled clutter texture (label 0, "other")."""
    rng = np.random.default_rng([n, len(STUFF), variant])
    grey = 0.45 + 0.3 * _smooth_noise(rng, n, n, 6, 6) + 0.15 * rng.random((n, n), dtype=np.float32)
    return grey[..., None] * np.array([150, 145, 140], np.float32)


def object_mask(shape: int, cx: float, cy: float, radius: float, angle: float, n: int) -> np.ndarray:
    """The drawn pixels of one object (bool [n, n])."""
    canvas = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(canvas)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]]) * radius
    for poly, fill in shape_ops(shape):
        pts = poly @ rot + (cx, cy)
        draw.polygon([(float(x), float(y)) for x, y in pts], fill=fill)
    return np.asarray(canvas, dtype=bool)


@dataclass
class Rendered:
    """A rendered scene: the RGB image, its label map, which object shows where, and the stuff layout."""

    image: np.ndarray  # uint8 [n, n, 3]
    labels: np.ndarray  # uint8 [n, n]; 0 other, 1..len(STUFF) stuff, then objects
    owner: np.ndarray  # int16 [n, n]; index of the object drawn there, -1 for background
    stuff: np.ndarray  # int16 [n, n]; stuff index under everything
    full_area: list[int]  # per object, its pixel count before occlusion
    covers: list[list[int]]  # per object, the earlier objects it is drawn over


def stuff_map(scene: Scene) -> np.ndarray:
    """Stuff index per pixel: ground below the (wavy) horizon, the upper stuff above it."""
    n = scene.size
    if scene.upper is None:
        return np.full((n, n), scene.ground, np.int16)
    amp, freq, phase = scene.wave
    xs = np.arange(n, dtype=np.float32) / n
    horizon = (scene.horizon + amp * np.sin(2 * np.pi * freq * xs + phase)) * n
    ys = np.arange(n, dtype=np.float32)[:, None] + 0.5
    return np.where(ys >= horizon[None, :], scene.ground, scene.upper).astype(np.int16)


@cache
def _texture_bank(stuff: int, n: int, variant: int) -> np.ndarray:
    """A fixed stuff texture twice as wide as the image; scenes crop a window of it (cheap variety)."""
    rng = np.random.default_rng([n, stuff, variant])
    return _texture(STUFF[stuff], rng, n, 2 * n)


def _stuff_texture(stuff: int, n: int, rng: np.random.Generator) -> np.ndarray:
    tex = _texture_bank(stuff, n, int(rng.integers(TEXTURE_VARIANTS)))
    x0 = int(rng.integers(n))
    window = tex[:, x0 : x0 + n]
    return window[:, ::-1] if rng.random() < 0.5 else window


def render(scene: Scene) -> Rendered:
    """Draw the scene: stuff textures, optional clutter, then the objects in order (later ones on top)."""
    n = scene.size
    rng = np.random.default_rng(scene.texture_seed)
    stuff = stuff_map(scene)
    image = np.empty((n, n, 3), np.float32)
    for k in np.unique(stuff):
        sel = stuff == k
        image[sel] = _stuff_texture(int(k), n, rng)[sel]
    labels = (stuff + 1).astype(np.uint8)
    if scene.clutter is not None:
        cx, cy, rx, ry = scene.clutter
        yy, xx = np.mgrid[0:n, 0:n] + 0.5
        sel = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        image[sel] = _rock(n, int(rng.integers(TEXTURE_VARIANTS)))[sel]
        labels[sel] = 0
    owner = np.full((n, n), -1, np.int16)
    full_area: list[int] = []
    covers: list[list[int]] = []
    for k, obj in enumerate(scene.objects):
        mask = object_mask(obj.shape, obj.cx, obj.cy, obj.radius, obj.angle, n)
        ys, xs = np.nonzero(mask)
        full_area.append(len(ys))
        covers.append([int(j) for j in np.unique(owner[ys, xs]) if j >= 0])
        # Soft light from the top left.
        shade = 1.08 - 0.18 * np.clip(((xs - obj.cx) + (ys - obj.cy)) / (2 * obj.radius) + 0.5, 0, 1)
        colour = np.asarray(COLOURS[obj.colour], np.float32) + 12
        image[ys, xs] = colour * shade[:, None].astype(np.float32)
        labels[ys, xs] = OBJECT_LABEL_OFFSET + obj.shape
        owner[ys, xs] = k
    _outline(image, owner)
    return Rendered(np.clip(image, 0, 255).astype(np.uint8), labels, owner, stuff, full_area, covers)


def _outline(image: np.ndarray, owner: np.ndarray) -> None:
    """Darken object pixels whose 4-neighbour belongs to something else (a drawn contour)."""
    pad = np.pad(owner, 1, mode="edge")
    edge = (
        (pad[:-2, 1:-1] != owner)
        | (pad[2:, 1:-1] != owner)
        | (pad[1:-1, :-2] != owner)
        | (pad[1:-1, 2:] != owner)
    ) & (owner >= 0)
    image[edge] *= 0.55


def render_visible(scene: Scene, min_fraction: float = 0.35, min_pixels: int = 6) -> Rendered:
    """Render, first dropping objects that would end up mostly hidden (unfair to name or annotate)."""
    while True:
        rendered = render(scene)
        areas = np.bincount(rendered.owner[rendered.owner >= 0].ravel(), minlength=len(scene.objects))
        crowd = set(scene.crowd)
        keep = [
            k
            for k in range(len(scene.objects))
            if areas[k] >= max(3 if k in crowd else min_pixels, min_fraction * rendered.full_area[k])
        ]
        if len(keep) == len(scene.objects):
            return rendered
        scene.crowd = [i for i, k in enumerate(keep) if k in crowd]
        if len(scene.crowd) < 3:
            scene.crowd = []
        scene.objects = [scene.objects[k] for k in keep]
