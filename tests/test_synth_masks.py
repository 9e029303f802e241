"""Mask -> COCO conversions: pycocotools rasterises our polygons and RLE back to exactly the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from silc.data.synth.masks import mask_bbox, mask_rle, mask_to_polygons
from silc.data.synth.render import object_mask
from silc.data.synth.world import SHAPES


def _decode_polygons(polygons: list[list[float]], h: int, w: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def _random_masks(count: int):
    rng = np.random.default_rng(0)
    for _ in range(count):
        mask = np.zeros((48, 40), bool)
        for _ in range(int(rng.integers(1, 4))):
            shape = int(rng.integers(len(SHAPES)))
            mask |= object_mask(
                shape, *rng.uniform(6, 40, size=2), rng.uniform(2, 16), rng.uniform(-1, 1), 48
            )[:, :40]
        if rng.random() < 0.4:  # speckle: many holes and diagonal-only contacts
            mask &= rng.random(mask.shape) > 0.25
        if mask.any():
            yield mask


@pytest.mark.parametrize("name", ["ring", "crescent", "star", "cross"])
def test_single_shapes_round_trip(name: str):
    mask = object_mask(SHAPES.index(name), 20.3, 18.7, 14.0, 0.3, 40)
    polygons = mask_to_polygons(mask)
    assert (_decode_polygons(polygons, 40, 40) == mask).all()
    if name == "ring":  # one polygon: the hole is joined to the outline by a zero-width vertical slit
        assert len(polygons) == 1


def test_random_masks_round_trip_exactly():
    for mask in _random_masks(60):
        h, w = mask.shape
        assert (_decode_polygons(mask_to_polygons(mask), h, w) == mask).all()
        rle = mask_rle(mask)
        assert (mask_utils.decode(mask_utils.frPyObjects(rle, h, w)).astype(bool) == mask).all()
        x, y, bw, bh = mask_bbox(mask)
        assert mask[int(y) : int(y + bh), int(x) : int(x + bw)].sum() == mask.sum()
        assert mask[int(y), int(x) : int(x + bw)].any() and mask[int(y + bh - 1), int(x) : int(x + bw)].any()
        assert mask[int(y) : int(y + bh), int(x)].any() and mask[int(y) : int(y + bh), int(x + bw - 1)].any()


def test_checkerboard_touching_corners():
    mask = np.zeros((6, 6), bool)
    mask[1::2, 1::2] = True
    mask[2::2, 2::2] = True
    assert (_decode_polygons(mask_to_polygons(mask), 6, 6) == mask).all()
