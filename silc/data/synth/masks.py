"""Binary masks to COCO annotations: exact pixel-edge polygons (holes joined by slits), tight boxes, RLE."""

from __future__ import annotations

import numpy as np

Point = tuple[int, int]
# Directions along pixel edges, y pointing down: east, south, west, north (a +1 step is a right turn).
_STEPS: tuple[Point, ...] = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _edges(mask: np.ndarray) -> list[tuple[Point, int]]:
    """Boundary edges of the mask as (start corner, direction), oriented with the inside on the right."""
    m = np.pad(mask, 1)
    inside = m[1:-1, 1:-1]
    out: list[tuple[Point, int]] = []
    # top edges run east from (c, r); right edges south from (c+1, r); bottom west from (c+1, r+1);
    # left north from (c, r+1).
    for direction, neighbour, (ox, oy) in (
        (0, m[:-2, 1:-1], (0, 0)),
        (1, m[1:-1, 2:], (1, 0)),
        (2, m[2:, 1:-1], (1, 1)),
        (3, m[1:-1, :-2], (0, 1)),
    ):
        rows, cols = np.nonzero(inside & ~neighbour)
        out.extend(((int(c) + ox, int(r) + oy), direction) for r, c in zip(rows, cols, strict=True))
    return out


def _loops(mask: np.ndarray) -> list[list[Point]]:
    """Closed boundary loops (corner vertices where the direction changes); diagonal touches split loops."""
    outgoing: dict[Point, list[int]] = {}
    for start, direction in _edges(mask):
        outgoing.setdefault(start, []).append(direction)
    loops: list[list[Point]] = []
    for start in sorted(outgoing):
        while outgoing[start]:
            first = outgoing[start].pop(0)
            point, direction, vertices = start, first, [start]
            while True:
                point = (point[0] + _STEPS[direction][0], point[1] + _STEPS[direction][1])
                options = outgoing[point]
                candidates = options + [first] if point == start else options
                # Prefer a right turn, then straight on: keeps diagonally touching pixels in separate loops.
                new = next(
                    d for d in ((direction + 1) % 4, direction, (direction + 3) % 4) if d in candidates
                )
                if point == start and new == first:
                    break
                options.remove(new)
                vertices.append(point)
                direction = new
            loops.append(_drop_collinear(vertices))
    return loops


def _drop_collinear(vertices: list[Point]) -> list[Point]:
    n = len(vertices)
    keep = []
    for i in range(n):
        (ax, ay), (bx, by), (cx, cy) = vertices[i - 1], vertices[i], vertices[(i + 1) % n]
        if (bx - ax) * (cy - by) - (by - ay) * (cx - bx) != 0:
            keep.append(vertices[i])
    return keep


def _signed_area(loop: list[Point]) -> float:
    """Shoelace area: positive for outer boundaries (clockwise on screen), negative for holes."""
    xs = np.array([p[0] for p in loop], np.int64)
    ys = np.array([p[1] for p in loop], np.int64)
    return float((xs * np.roll(ys, -1) - np.roll(xs, -1) * ys).sum()) / 2


def _join_holes(outers: list[list[Point]], holes: list[list[Point]]) -> list[list[Point]]:
    """Splice each hole into the loop just above it with a vertical slit (invisible to COCO's rasteriser)."""
    for hole in sorted(holes, key=lambda h: min((y, x) for x, y in h)):
        b = min(range(len(hole)), key=lambda i: (hole[i][1], hole[i][0]))
        bx, by = hole[b]
        best: tuple[int, int, int] | None = None  # (y, loop index, edge index)
        for li, loop in enumerate(outers):
            for i, (x0, y0) in enumerate(loop):
                x1, y1 = loop[(i + 1) % len(loop)]
                if y0 == y1 < by and x0 <= bx < x1 and (best is None or y0 > best[0]):
                    best = (y0, li, i)
        if best is None:  # the pixel above a hole's top edge is inside, so some boundary lies above it
            raise RuntimeError(f"hole at {hole[b]} has no enclosing boundary")
        y0, li, i = best
        loop = outers[li]
        bridge = [(bx, y0)] if loop[i] != (bx, y0) else []
        ring = hole[b:] + hole[:b]
        outers[li] = loop[: i + 1] + bridge + ring + [(bx, by)] + [(bx, y0)] + loop[i + 1 :]
    return outers


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons ([x0, y0, x1, y1, ...] on pixel corners) whose union is exactly the mask."""
    loops = _loops(mask)
    outers = [lp for lp in loops if _signed_area(lp) > 0]
    holes = [lp for lp in loops if _signed_area(lp) < 0]
    return [[float(v) for p in lp for v in p] for lp in _join_holes(outers, holes)]


def mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box [x, y, w, h] in pixel-edge coordinates."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def mask_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths starting with a background run), as used for crowds."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def coco_segmentation(mask: np.ndarray, crowd: bool) -> list[list[float]] | dict:
    """COCO ``segmentation``: polygons for single objects, uncompressed RLE for iscrowd regions."""
    return mask_rle(mask) if crowd else mask_to_polygons(mask)
