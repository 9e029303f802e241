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
    metrics, detail, _ = evaluate_boxes_with_outcomes(gt, detections, base_ids, novel_ids)
    return metrics, detail


def evaluate_boxes_with_outcomes(
    gt: dict[str, Any], detections: list[dict[str, Any]], base_ids: Iterable[int], novel_ids: Iterable[int]
) -> tuple[dict[str, float | None], dict[str, Any], dict[str, np.ndarray] | None]:
    """:func:`evaluate_boxes` plus the per-image COCOeval matches the AP is accumulated from
    (:func:`match_arrays`; None without detections, where no COCOeval runs)."""
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
        detail = {"per_category": {names[c]: {"AP": zero([c]), "AP50": zero([c])} for c in cat_ids}}
        return metrics, detail, None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = api.loadRes(copy.deepcopy(detections))
        ev = COCOeval(api, dt, "bbox")
        ev.params.imgIds = sorted(api.getImgIds())
        ev.evaluate()
        ev.accumulate()
    metrics = _metrics(ev, base_ids, novel_ids)
    precision = ev.eval["precision"]  # [iou thresholds, recall points, categories, area ranges, max dets]
    per_category = {
        names[c]: {"AP": _subset_ap(precision, [i], None), "AP50": _subset_ap(precision, [i], 0)}
        for i, c in enumerate(ev.params.catIds)
    }
    return metrics, {"per_category": per_category}, match_arrays(ev, base_ids, novel_ids)


def _metrics(ev: COCOeval, base_ids: set[int], novel_ids: set[int]) -> dict[str, float | None]:
    """The metrics of an accumulated COCOeval: its summary stats, and base/novel means over the precision."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    precision = ev.eval["precision"]
    order = list(ev.params.catIds)
    metrics: dict[str, float | None] = {
        name: (float(v) * 100 if v > -1 else None) for name, v in zip(_STAT_NAMES, ev.stats[:6], strict=True)
    }
    for subset, ids in (("base", base_ids), ("novel", novel_ids)):
        idx = [i for i, c in enumerate(order) if c in ids]
        metrics[f"AP_{subset}"] = _subset_ap(precision, idx, None)
        metrics[f"AP50_{subset}"] = _subset_ap(precision, idx, 0)
    return metrics


# Resamples for AP: each re-accumulates COCOeval (about a second or more on real COCO, less on the tiny world).
MAX_RESAMPLES = 200


def match_arrays(ev: COCOeval, base_ids: set[int], novel_ids: set[int]) -> dict[str, np.ndarray]:
    """What ``COCOeval.accumulate`` reads from an evaluated COCOeval, as plain arrays (no pickles): per
    (category, area range, image) entry that has ground truth or detections, its indices, the number of its
    non-ignored ground-truth boxes and of its detections; per detection (score order within its entry) its
    score and, per IoU threshold, whether it matched and whether it is ignored; and the parameters."""
    p = ev.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    cat, area, image, npig, ndet = [], [], [], [], []
    scores, matched, ignored = [], [], []
    for j, e in enumerate(ev.evalImgs):
        if e is None:
            continue
        cat.append(j // (n_area * n_img))
        area.append(j // n_img % n_area)
        image.append(j % n_img)
        npig.append(int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)))
        ndet.append(len(e["dtScores"]))
        scores.extend(e["dtScores"])
        matched.append(np.asarray(e["dtMatches"]).T != 0)  # accumulate only asks whether a match exists
        ignored.append(np.asarray(e["dtIgnore"]).T != 0)
    n_thr = len(p.iouThrs)
    return {
        "cat_ids": np.asarray(p.catIds, dtype=np.int64),
        "cat_base": np.asarray([c in base_ids for c in p.catIds], dtype=bool),
        "cat_novel": np.asarray([c in novel_ids for c in p.catIds], dtype=bool),
        "iou_thrs": np.asarray(p.iouThrs, dtype=np.float64),
        "rec_thrs": np.asarray(p.recThrs, dtype=np.float64),
        "max_dets": np.asarray(p.maxDets, dtype=np.int64),
        "area_rng": np.asarray(p.areaRng, dtype=np.float64),
        "area_lbl": np.asarray(p.areaRngLbl, dtype=str),
        "num_images": np.asarray(n_img, dtype=np.int64),
        "entry_cat": np.asarray(cat, dtype=np.int32),
        "entry_area": np.asarray(area, dtype=np.int32),
        "entry_image": np.asarray(image, dtype=np.int32),
        "entry_npig": np.asarray(npig, dtype=np.int32),
        "entry_ndet": np.asarray(ndet, dtype=np.int32),
        "det_score": np.asarray(scores, dtype=np.float64),
        "det_matched": np.concatenate(matched) if matched else np.zeros((0, n_thr), dtype=bool),
        "det_ignored": np.concatenate(ignored) if ignored else np.zeros((0, n_thr), dtype=bool),
    }


def metrics_from_counts(arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
    """AP metrics for each resample of images: the stored per-image matches of the drawn images (an image drawn
    twice is two images, in image order) re-accumulated by ``COCOeval.accumulate`` and summarised as
    :func:`evaluate_boxes` does, so that drawing every image once gives its metrics exactly. Undefined: NaN."""
    from pycocotools.cocoeval import Params

    n_area = len(arrays["area_rng"])
    offsets = np.concatenate([[0], np.cumsum(arrays["entry_ndet"])])
    entries = []  # the evalImgs dicts, built once
    for j in range(len(arrays["entry_cat"])):
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        entries.append(
            {
                "dtScores": arrays["det_score"][lo:hi],
                "dtMatches": np.ascontiguousarray(arrays["det_matched"][lo:hi].T),
                "dtIgnore": np.ascontiguousarray(arrays["det_ignored"][lo:hi].T),
                "gtIgnore": np.zeros(int(arrays["entry_npig"][j]), dtype=np.uint8),
            }
        )
    cat_ids = arrays["cat_ids"].tolist()
    base = {c for c, b in zip(cat_ids, arrays["cat_base"].tolist(), strict=True) if b}
    novel = {c for c, b in zip(cat_ids, arrays["cat_novel"].tolist(), strict=True) if b}
    out: dict[str, list[float]] = {}
    for row in np.asarray(counts):
        n_drawn = int(row.sum())
        first = np.concatenate([[0], np.cumsum(row)[:-1]])  # where each image's copies start
        eval_imgs: list[dict | None] = [None] * (len(cat_ids) * n_area * n_drawn)
        for e, k, a, i in zip(
            entries, arrays["entry_cat"], arrays["entry_area"], arrays["entry_image"], strict=True
        ):
            base_index = (int(k) * n_area + int(a)) * n_drawn + int(first[i])
            for copy_ in range(int(row[i])):
                eval_imgs[base_index + copy_] = e
        ev = COCOeval(iouType="bbox")
        params = Params(iouType="bbox")
        params.catIds, params.imgIds = list(cat_ids), list(range(n_drawn))
        params.iouThrs, params.recThrs = arrays["iou_thrs"], arrays["rec_thrs"]
        params.maxDets = arrays["max_dets"].tolist()
        params.areaRng = arrays["area_rng"].tolist()
        params.areaRngLbl = arrays["area_lbl"].tolist()
        ev.params, ev._paramsEval = params, copy.deepcopy(params)
        ev.evalImgs = eval_imgs
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
        for key, value in _metrics(ev, base, novel).items():
            out.setdefault(key, []).append(np.nan if value is None else value)
    return {key: np.asarray(values, dtype=np.float64) for key, values in out.items()}
