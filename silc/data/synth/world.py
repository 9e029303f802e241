"""The synthetic world's vocabulary (shapes, colours, sizes, stuff) and seeded scene sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Object categories: image classes, COCO categories and segmentation classes all come from this list.
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "heart",
    "ring",
    "diamond",
    "hexagon",
    "pentagon",
    "arrow",
    "crescent",
    "trapezoid",
    "semicircle",
    "chevron",
    "rectangle",
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 15),
    "yellow": (245, 220, 30),
    "green": (30, 165, 55),
    "blue": (35, 70, 215),
    "purple": (135, 50, 190),
    "pink": (250, 120, 190),
    "black": (25, 25, 25),
}

# Size name -> object radius as a fraction of the image side (min, max).
SIZES: dict[str, tuple[float, float]] = {
    "small": (0.065, 0.085),
    "medium": (0.11, 0.14),
    "large": (0.18, 0.23),
}

_SIZE_NAMES = tuple(SIZES)
_SIZE_CDF = np.cumsum([0.35, 0.4])  # small 35 %, medium 40 %, large 25 %
_COLOUR_NAMES = tuple(COLOURS)

# "Stuff" backgrounds (segmentation classes). Ground stuff fills the lower part, upper stuff the top part.
STUFF: tuple[str, ...] = ("grass", "water", "sand", "snow", "sky", "brick wall")
GROUND_STUFF: tuple[int, ...] = (0, 1, 2, 3)
UPPER_STUFF: tuple[int, ...] = (4, 5)

# Segmentation label values: 0 = other (unlabelled clutter), 1..len(STUFF) stuff, then the shapes.
SEG_CLASSES: tuple[str, ...] = STUFF + SHAPES
OBJECT_LABEL_OFFSET = 1 + len(STUFF)


@dataclass
class Obj:
    """One object: category, colour, size class, centre/radius in pixels and rotation in radians."""

    shape: int
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    angle: float


@dataclass
class Scene:
    """A background layout (one or two stuff classes, optional clutter) plus objects in draw order."""

    size: int
    upper: int | None  # stuff index above the horizon, None for a single-stuff scene
    ground: int
    horizon: float  # fraction of the height where the ground starts
    wave: tuple[float, float, float]  # horizon wiggle: amplitude (fraction), frequency, phase
    objects: list[Obj] = field(default_factory=list)
    clutter: tuple[float, float, float, float] | None = None  # ellipse cx, cy, rx, ry in pixels
    crowd: list[int] = field(default_factory=list)  # indices of objects forming one iscrowd group
    texture_seed: int = 0
    object_centric: bool = False  # one dominant large object first (classification-style photo)


def _sample_object(
    rng: np.random.Generator, size: int, shape: int | None = None, size_name: str | None = None
) -> Obj:
    size_name = size_name or _SIZE_NAMES[int(np.searchsorted(_SIZE_CDF, rng.random(), side="right"))]
    lo, hi = SIZES[size_name]
    radius = float(rng.uniform(lo, hi)) * size
    shape = int(rng.integers(len(SHAPES))) if shape is None else shape
    colour = _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
    angle = float(rng.uniform(-0.45, 0.45))
    if SHAPES[shape] == "arrow":
        angle += float(rng.integers(4)) * np.pi / 2
    margin = radius * 0.9
    cx = float(rng.uniform(margin, size - margin))
    cy = float(rng.uniform(margin, size - margin))
    return Obj(shape, colour, size_name, cx, cy, radius, angle)


def _fits(obj: Obj, placed: list[Obj], min_gap: float) -> bool:
    """Partial overlap allowed: centres at least ``min_gap`` x the sum of radii apart."""
    return all(np.hypot(obj.cx - o.cx, obj.cy - o.cy) >= min_gap * (obj.radius + o.radius) for o in placed)


def _background(rng: np.random.Generator, size: int) -> Scene:
    ground = GROUND_STUFF[int(rng.integers(len(GROUND_STUFF)))]
    if rng.random() < 0.7:
        upper = UPPER_STUFF[int(rng.integers(len(UPPER_STUFF)))]
        horizon = float(rng.uniform(0.25, 0.6))
    else:
        upper, horizon = None, 0.0
    wave = (float(rng.uniform(0.0, 0.05)), float(rng.uniform(1.0, 3.0)), float(rng.uniform(0, 2 * np.pi)))
    return Scene(size, upper, ground, horizon, wave, texture_seed=int(rng.integers(2**31)))


def sample_scene(
    rng: np.random.Generator,
    size: int,
    n_objects: tuple[int, int] = (1, 4),
    *,
    dominant: int | None = None,
    clutter_p: float = 0.0,
    crowd_p: float = 0.0,
) -> Scene:
    """A random scene with ``n_objects`` (inclusive range) objects; ``dominant`` forces one large object first."""
    scene = _background(rng, size)
    if clutter_p and rng.random() < clutter_p:
        scene.clutter = (
            float(rng.uniform(0.15, 0.85) * size),
            float(rng.uniform(0.3, 0.9) * size),
            float(rng.uniform(0.08, 0.16) * size),
            float(rng.uniform(0.05, 0.1) * size),
        )
    placed: list[Obj] = []
    scene.object_centric = dominant is not None
    if dominant is not None:
        big = _sample_object(rng, size, shape=dominant, size_name="large")
        big.radius = float(rng.uniform(0.26, 0.33)) * size
        big.cx = float(rng.uniform(0.4, 0.6) * size)
        big.cy = float(rng.uniform(0.4, 0.6) * size)
        placed.append(big)
    target = int(rng.integers(n_objects[0], n_objects[1] + 1))
    for _ in range(target * 8):
        if len(placed) >= target + (dominant is not None):
            break
        obj = _sample_object(rng, size, size_name="small" if dominant is not None else None)
        if dominant is not None and obj.shape == dominant:
            continue
        if _fits(obj, placed, 0.75):
            placed.append(obj)
    if crowd_p and dominant is None and rng.random() < crowd_p:
        scene.crowd = _add_crowd(rng, size, placed)
    # Draw order: larger objects first, so small ones stay visible on top of big ones.
    order = sorted(range(len(placed)), key=lambda i: -placed[i].radius)
    scene.objects = [placed[i] for i in order]
    scene.crowd = [k for k, i in enumerate(order) if i in set(scene.crowd)]
    return scene


def _add_crowd(rng: np.random.Generator, size: int, placed: list[Obj]) -> list[int]:
    """A tight group of 4-6 small same-kind objects (annotated as one iscrowd region); [] if under 3 fit."""
    shape, colour = int(rng.integers(len(SHAPES))), _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
    r = 0.06 * size
    cx, cy = rng.uniform(0.25 * size, 0.75 * size, size=2)
    target = int(rng.integers(4, 7))
    members: list[Obj] = []
    for _ in range(4 * target):
        if len(members) == target:
            break
        dx, dy = rng.uniform(-2.2 * r, 2.2 * r, size=2)
        obj = Obj(shape, colour, "small", float(cx + dx), float(cy + dy), r, float(rng.uniform(-0.4, 0.4)))
        if _fits(obj, members, 0.8):
            members.append(obj)
    if len(members) < 3:
        return []
    placed.extend(members)
    return list(range(len(placed) - len(members), len(placed)))
