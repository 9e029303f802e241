"""Box AP with pycocotools' COCOeval, overall and for the base/novel category subsets (as mmdet's OVCocoMetric)."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_api(gt: dict[str, Any]) -> COCO:
    """A pycocotools COCO object over an in-memory annotation dict (without its progress prints)."""
    api = COCO()
    api.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def _subset_ap(precision: np.ndarray, indices: Sequence[int], iou_index: int | None) -> float | None:
    """Mean precision over the given category indices (area all, last maxDets), -1 entries skipped."""
    if not indices:
        return None
    p = (
        precision[:, :, list(indices), 0, -1]
        if iou_index is None
        else precision[iou_index, :, list(indices), 0, -1]
    )
    p = p[p > -1]
    return float(np.mean(p)) * 100 if p.size else None


def evaluate_boxes(
    gt: dict[str, Any], detections: list[dict[str, Any]], base_ids: Iterable[int], novel_ids: Iterable[int]
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """AP metrics (percent) of COCO-format ``detections`` against ``gt``; base/novel AP and AP50 are means over
    the precision of those categories, which equals COCOeval run with ``params.catIds`` set to the subset.

    Returns (metrics, per-category detail). Categories without ground truth give None (COCO's -1)."""
    api = coco_api(gt)
    base_ids, novel_ids = set(base_ids), set(novel_ids)
    cat_ids = sorted(api.getCatIds())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    if not detections:  # pycocotools cannot load an empty result list; every category with GT scores 0
        with_gt = {a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)}

        def zero(ids: Iterable[int]) -> float | None:
            return 0.0 if with_gt & set(ids) else None

        metrics = {k: zero(cat_ids) for k in _STAT_NAMES}
        for subset, ids in (("base", base_ids), ("novel", novel_ids)):
            metrics[f"AP_{subset}"] = metrics[f"AP50_{subset}"] = zero(ids)
        return metrics, {"per_category": {names[c]: {"AP": zero([c]), "AP50": zero([c])} for c in cat_ids}}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = api.loadRes(copy.deepcopy(detections))
        ev = COCOeval(api, dt, "bbox")
        ev.params.imgIds = sorted(api.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [iou thresholds, recall points, categories, area ranges, max dets]
    order = list(ev.params.catIds)
    metrics: dict[str, float | None] = {
        name: (float(v) * 100 if v > -1 else None) for name, v in zip(_STAT_NAMES, ev.stats[:6], strict=True)
    }
    for subset, ids in (("base", base_ids), ("novel", novel_ids)):
        idx = [i for i, c in enumerate(order) if c in ids]
        metrics[f"AP_{subset}"] = _subset_ap(precision, idx, None)
        metrics[f"AP50_{subset}"] = _subset_ap(precision, idx, 0)
    per_category = {
        names[c]: {"AP": _subset_ap(precision, [i], None), "AP50": _subset_ap(precision, [i], 0)}
        for i, c in enumerate(order)
    }
    return metrics, {"per_category": per_category}
