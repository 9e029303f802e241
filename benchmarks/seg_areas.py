"""Per-image, per-class pixel areas of a segmentation run and the metrics computed from them as mmseg's
``IoUMetric`` computes them: the record's per-sample outcomes (intersection, union, predicted and label areas per
image) and per-class values, the same areas computed without mmseg (:func:`image_areas`, for the plain-torch
probe), and mIoU, aAcc, mAcc and per-class values of any resample of the images (bootstrap intervals), bit for bit
IoUMetric's on the full set.

Without any mmseg import, so that the harness, the probes, the mmseg metric (``benchmarks/seg_mmseg.py``) and the
intervals share one definition of the areas and their sums.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from benchmarks.uncertainty import Outcomes


def per_class_extra(names: list[str], per_class: dict[str, list]) -> dict[str, dict[str, Any]]:
    """The record's per-class values by class name: IoU and Acc (percent, None where undefined) and label pixels
    (``per_class``: lists ``IoU``, ``Acc``, ``pixels`` in class order, as ``PerClassIoUMetric.per_class``)."""
    return {
        f"per_class_{key.lower()}": dict(zip(names, per_class[key], strict=True))
        for key in ("IoU", "Acc", "pixels")
    }


def seg_outcomes(metric, root: Path, classes: list[str]) -> Outcomes:
    """The per-sample outcomes of a run: per image (units: image paths relative to the dataset root, in dataset
    order), per class, the pixel counts mmseg's IoUMetric summed (``intersect``, ``union``, ``pred_label``,
    ``label``: integer ``[n_images, C]``), the class names, and the metric's ``nan_to_num`` (NaN: none)."""
    units = [os.path.relpath(os.path.abspath(p), os.path.abspath(root)) for p in metric.image_paths]
    return area_outcomes(units, metric.per_image, classes, metric.nan_to_num)


def area_outcomes(
    units: list[str], areas: dict[str, np.ndarray], classes: list[str], nan_to_num: float | None = None
) -> Outcomes:
    """Per-image outcomes from the per-image areas (:data:`AREA_KEYS`: integer
    ``[n_images, C]``) of the images ``units``, with the class names and the metric's ``nan_to_num``."""
    import numpy as np

    from benchmarks.uncertainty import Outcomes

    arrays = dict(areas)
    arrays["classes"] = np.asarray(classes, dtype=str)
    arrays["nan_to_num"] = np.asarray(np.nan if nan_to_num is None else nan_to_num, np.float64)
    return Outcomes("image", units, arrays)


AREA_KEYS = ("intersect", "union", "pred_label", "label")  # the order of IoUMetric.intersect_and_union


def image_areas(pred, label, num_classes: int, ignore_index: int = 255) -> dict[str, np.ndarray]:
    """One image's per-class pixel counts as mmseg's ``IoUMetric.intersect_and_union`` computes them (pixels whose
    label is ``ignore_index`` left out; union = predicted + labelled - intersection), as int64 ``[C]`` arrays
    named by ``AREA_KEYS``, from integer tensors ``pred`` and ``label`` of one shape: the same outcomes without
    mmseg (the parity test holds them equal)."""
    import torch

    keep = label != ignore_index
    pred, label = pred[keep].long(), label[keep].long()
    intersect = torch.bincount(pred[pred == label], minlength=num_classes)
    area_pred = torch.bincount(pred, minlength=num_classes)
    area_label = torch.bincount(label, minlength=num_classes)
    counts = (intersect, area_pred + area_label - intersect, area_pred, area_label)
    return {key: value[:num_classes].numpy() for key, value in zip(AREA_KEYS, counts, strict=True)}


# The totals of float32 areas that mmseg adds up stay exact while they are at most 2**24.
_FLOAT32_EXACT = 2**24


def summed_areas(areas: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[B, C]`` float32: for each resample, the areas ``[n, C]`` of its images summed as IoUMetric sums them
    (``sum()`` of float32 tensors, one image after another in dataset order, an image drawn k times added k
    times). Exact integer sums where they are at most 2**24 (float32 adds integers exactly up to there); the
    classes and resamples beyond that are added up in float32 in that order, so that the rounding is mmseg's."""
    import numpy as np

    exact = counts.astype(np.float64) @ areas.astype(np.float64)  # integers < 2**53: exact in any order
    out = exact.astype(np.float32)
    over = exact > _FLOAT32_EXACT
    if over.any():
        rows, cols = np.flatnonzero(over.any(axis=1)), np.flatnonzero(over.any(axis=0))
        drawn, values = counts[rows], areas[:, cols].astype(np.float32)
        total = np.zeros((len(rows), len(cols)), np.float32)
        for i in range(areas.shape[0]):
            for k in range(int(drawn[:, i].max(initial=0))):
                total = np.where((drawn[:, i] > k)[:, None], total + values[i], total)
        out[np.ix_(rows, cols)] = total
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray, nan_to_num: float) -> np.ndarray:
    """float32 ``numerator / denominator`` (0/0 is NaN), as torch divides the float32 totals."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = numerator / denominator
    return ratio if np.isnan(nan_to_num) else np.nan_to_num(ratio, nan=nan_to_num)


def per_class_from_areas(
    arrays: dict[str, np.ndarray], counts: np.ndarray, metric: str = "IoU"
) -> np.ndarray:
    """Per-class ``IoU`` (intersection / union) or ``Acc`` (intersection / label area) of the summed areas of
    each resample, in percent (float32 ratio times 100 in float64, as the record's per-class values), unrounded:
    ``[B, C]``, NaN where the denominator is 0 (unless the metric had a ``nan_to_num``)."""
    import numpy as np

    if metric not in ("IoU", "Acc"):
        raise ValueError(f"per-class metric {metric!r}: expected IoU or Acc")
    denominator = arrays["union"] if metric == "IoU" else arrays["label"]
    ratio = _ratio(
        summed_areas(arrays["intersect"], counts),
        summed_areas(denominator, counts),
        float(arrays["nan_to_num"]),
    )
    return ratio.astype(np.float64) * 100


def metrics_from_areas(arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
    """mIoU, aAcc, mAcc ``[B]`` of each resample, computed as mmseg's ``IoUMetric.compute_metrics`` and
    ``total_area_to_metrics`` compute them from the summed areas: per-class IoU = ΣI / ΣU and Acc = ΣI / Σlabel
    and aAcc = ΣI / Σlabel over all classes (float32, as torch), means = ``np.nanmean`` over the classes (NaN for
    a 0 denominator), times 100 in float32 — IoUMetric's value before its ``np.round(..., 2)``, which is left out
    (the record keeps full precision; tables round). The reductions over classes run per resample on fresh 1-D
    arrays, as mmseg's do, so that with all counts 1 the result is the record's metric bit for bit."""
    import warnings

    import numpy as np
    import torch

    nan_to_num = float(arrays["nan_to_num"])
    intersect = summed_areas(arrays["intersect"], counts)
    union = summed_areas(arrays["union"], counts)
    label = summed_areas(arrays["label"], counts)
    iou, acc = _ratio(intersect, union, nan_to_num), _ratio(intersect, label, nan_to_num)
    out = {key: np.full(len(counts), np.nan) for key in ("mIoU", "aAcc", "mAcc")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with every class undefined: NaN
        for b in range(len(counts)):
            # torch's float32 sum over the classes, on a fresh tensor as mmseg's totals are
            all_acc = (torch.tensor(intersect[b]).sum() / torch.tensor(label[b]).sum()).numpy()
            if not np.isnan(nan_to_num):
                all_acc = np.nan_to_num(all_acc, nan=nan_to_num)
            for key, value in (("aAcc", all_acc), ("mIoU", iou[b].copy()), ("mAcc", acc[b].copy())):
                out[key][b] = np.nanmean(value) * 100
    return out
