"""Per-sample outcomes and intervals of ``seg-ade20k``: the per-image per-class areas mmseg's IoUMetric sums are
kept beside the record, and mIoU/aAcc/mAcc of a bootstrap resample are recomputed from their count-weighted sums
(not a mean of per-image IoUs), bit for bit as mmseg computes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

import torch  # noqa: E402
from mmseg.evaluation import IoUMetric  # noqa: E402

from benchmarks.records import artefacts_dir  # noqa: E402
from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.runner import run_harness  # noqa: E402
from benchmarks.seg_areas import metrics_from_areas, summed_areas  # noqa: E402
from benchmarks.seg_mmseg import PerClassIoUMetric  # noqa: E402
from benchmarks.uncertainty import OUTCOMES_FILE, Outcomes, resample_counts  # noqa: E402
from tests.seg_fixtures import ColourOracle, colour_of, save_jpeg, save_label  # noqa: E402

# Three 64 x 64 images, two classes (label value 1 -> class 0 "cat", 2 -> class 1 "dog", 0 ignored), as column
# ranges [start, stop) of vertical stripes: what the annotation says and what the image shows (the oracle predicts
# the class whose colour it sees, so the painted map is the prediction).
HAND = {
    "ADE_val_1": {"label": [(0, 32, 1), (32, 64, 2)], "pred": [(0, 48, 1), (48, 64, 2)]},
    "ADE_val_2": {"label": [(0, 64, 1)], "pred": [(0, 32, 1), (32, 64, 2)]},
    "ADE_val_3": {"label": [(0, 16, 0), (16, 32, 1), (32, 64, 2)], "pred": [(0, 16, 1), (16, 64, 2)]},
}
# By hand, per image [cat, dog] (ignored pixels count nowhere):
#   image 1: label [2048, 2048], pred [3072, 1024], intersection [2048, 1024], union [3072, 2048]
#   image 2: label [4096,    0], pred [2048, 2048], intersection [2048,    0], union [4096, 2048]
#   image 3: label [1024, 2048], pred [   0, 3072], intersection [   0, 2048], union [1024, 3072]
AREAS = {
    "intersect": [[2048, 1024], [2048, 0], [0, 2048]],
    "union": [[3072, 2048], [4096, 2048], [1024, 3072]],
    "pred_label": [[3072, 1024], [2048, 2048], [0, 3072]],
    "label": [[2048, 2048], [4096, 0], [1024, 2048]],
}
# All images once: IoU = ΣI/ΣU = [4096/8192, 3072/7168] = [0.5, 0.428571] -> mIoU 46.43; aAcc = 7168/11264 ->
# 63.64; Acc = [4096/7168, 3072/4096] = [0.571429, 0.75] -> mAcc 66.07.
# Counts [2, 0, 1] (image 1 twice, image 3 once): ΣI = [4096, 4096], ΣU = [7168, 7168], Σlabel = [5120, 6144]
# -> IoU [0.571429, 0.571429], mIoU 57.14; aAcc 8192/11264 -> 72.73; Acc [0.8, 0.666667] -> mAcc 73.33.
# The mean of per-image mIoUs would be (2 * (2/3 + 1/2) / 2 + (0 + 2/3) / 2) / 3 = 50.00 instead.
# Counts [0, 3, 0]: IoU [0.5, 0] -> mIoU 25.00; dog has no label pixels: Acc [0.5, NaN] -> mAcc 50.00; aAcc 50.00.
EXPECTED = {  # unrounded (the record's values; float32 like mmseg's, hence the 1e-5 tolerance below)
    (1, 1, 1): {"mIoU": (0.5 + 3 / 7) * 50, "aAcc": 7168 / 11264 * 100, "mAcc": (4 / 7 + 0.75) * 50},
    (2, 0, 1): {"mIoU": 400 / 7, "aAcc": 8192 / 11264 * 100, "mAcc": (0.8 + 2 / 3) * 50},
    (0, 3, 0): {"mIoU": 25.0, "aAcc": 50.0, "mAcc": 50.0},
}


def hand_arrays() -> dict[str, np.ndarray]:
    arrays = {key: np.asarray(value, dtype=np.int32) for key, value in AREAS.items()}
    arrays["nan_to_num"] = np.asarray(np.nan)
    return arrays


def _stripes(ranges: list[tuple[int, int, int]]) -> np.ndarray:
    labels = np.zeros((64, 64), dtype=np.uint8)
    for start, stop, value in ranges:
        labels[:, start:stop] = value
    return labels


def write_hand_world(root: Path) -> Path:
    """The three images in the synthetic world's ADE layout (SynthADE20KDataset: classnames.txt)."""
    ade = root / "ADEChallengeData2016"
    for stem, maps in HAND.items():
        save_jpeg(
            ade / "images" / "validation" / f"{stem}.jpg", colour_of(_stripes(maps["pred"]), {1: 1, 2: 2})
        )
        save_label(ade / "annotations" / "validation" / f"{stem}.png", _stripes(maps["label"]))
    (ade / "classnames.txt").write_text("cat\ndog\n")
    return root


def test_hand_areas_metrics_are_the_summed_areas_ratios_not_per_image_means():
    harness = get_harness("seg-ade20k")
    arrays = hand_arrays()
    counts = np.asarray(list(EXPECTED), dtype=np.int64)
    got = harness.metrics_from_counts(arrays, counts)
    for b, expected in enumerate(EXPECTED.values()):
        for key, value in expected.items():
            assert got[key][b] == pytest.approx(value, abs=1e-5), (b, key)
    # the mean of per-image mIoUs on the [2, 0, 1] resample is 50.00, not the 57.14 of the summed areas
    per_image = np.asarray(AREAS["intersect"]) / np.asarray(AREAS["union"])
    weighted = (np.asarray([2, 0, 1]) @ np.nanmean(per_image, axis=1)) / 3 * 100
    assert weighted == pytest.approx(50.0) and got["mIoU"][1] != pytest.approx(weighted, abs=1)
    per_class = harness.per_class_from_counts(arrays, counts)
    np.testing.assert_allclose(per_class, [[50, 300 / 7], [400 / 7, 400 / 7], [50, 0]], rtol=1e-6)
    acc = harness.per_class_from_counts(arrays, counts, "Acc")
    assert np.isnan(acc[2, 1]) and acc[1].tolist() == pytest.approx([80.0, 200 / 3])


def test_hand_world_through_the_runner_stores_the_areas_and_the_exact_point(tmp_path):
    """The oracle run on the three images: the record's metrics are the hand values, outcomes.npz holds the hand
    areas per image (ids: paths relative to the dataset root, in dataset order), and the intervals belong to it."""
    harness = get_harness("seg-ade20k")
    root = write_hand_world(tmp_path / "world")
    oracle = ColourOracle([["cat"], ["dog"]], [1, 2], patch_size=1)
    protocol = harness.resolve_protocol("synth", {"templates": "identity"})
    options = {"workers": 0, "no_cache": True, "bootstrap": 200}
    record, path, _ = run_harness(
        harness, oracle, root, "synth", protocol, tmp_path / "results", options=options
    )
    assert record.metrics == pytest.approx(EXPECTED[(1, 1, 1)], abs=1e-5)
    outcomes = Outcomes.load(artefacts_dir(path) / OUTCOMES_FILE)
    assert outcomes.units == [f"images/validation/{stem}.jpg" for stem in HAND]
    for key, value in AREAS.items():
        assert outcomes.arrays[key].dtype == np.int32
        np.testing.assert_array_equal(outcomes.arrays[key], value, err_msg=key)
    assert outcomes.arrays["classes"].tolist() == ["cat", "dog"]
    point = harness.metrics_from_counts(outcomes.arrays, np.ones((1, 3), np.int64))
    assert {k: float(v[0]) for k, v in point.items()} == record.metrics  # bit for bit
    per_class = harness.per_class_from_counts(outcomes.arrays, np.ones((1, 3), np.int64))[0]
    assert per_class.tolist() == list(record.extra["per_class_iou"].values())
    assert record.uncertainty["resamples"] == 200 and record.uncertainty["num_units"] == 3
    for key in ("mIoU", "aAcc", "mAcc"):
        ci = record.metrics_ci[key]
        assert ci["low"] <= record.metrics[key] <= ci["high"] and ci["se"] > 0


def test_synthetic_world_record_carries_intervals_from_its_outcomes(tmp_path, synth_root, tiny_encoder):
    harness = get_harness("seg-ade20k")
    protocol = harness.resolve_protocol("synth")
    options = {"workers": 0, "no_cache": True}
    record, path, _ = run_harness(
        harness, tiny_encoder, synth_root, "synth", protocol, tmp_path / "results", options=options
    )
    outcomes = Outcomes.load(artefacts_dir(path) / OUTCOMES_FILE)
    classes = len(record.extra["per_class_iou"])
    assert len(outcomes.units) == record.num_samples == record.uncertainty["num_units"]
    assert outcomes.units == sorted(outcomes.units) and outcomes.units[0].startswith("images/validation/")
    for key in ("intersect", "union", "pred_label", "label"):
        assert outcomes.arrays[key].shape == (record.num_samples, classes)
    np.testing.assert_array_equal(
        outcomes.arrays["label"].sum(axis=0), list(record.extra["per_class_pixels"].values())
    )
    point = harness.metrics_from_counts(outcomes.arrays, np.ones((1, record.num_samples), np.int64))
    assert {k: float(v[0]) for k, v in point.items()} == record.metrics
    assert record.uncertainty["resamples"] == 1000
    for key in ("mIoU", "aAcc", "mAcc"):
        ci = record.metrics_ci[key]
        assert ci["low"] <= record.metrics[key] <= ci["high"] and ci["low"] < ci["high"]


def _mmseg_metrics(results: list, classes: int, rounded: bool = True) -> dict[str, float]:
    """mmseg's own ``IoUMetric.compute_metrics`` on ``results``; ``rounded=False``: with its ``np.round(x, 2)``
    replaced by the identity (the values it rounds)."""
    metric = IoUMetric()
    metric.dataset_meta = {"classes": [f"c{i}" for i in range(classes)]}
    with pytest.MonkeyPatch.context() as mp:
        if not rounded:
            mp.setattr(np, "round", lambda value, decimals=0, out=None: value)
        return {k: float(v) for k, v in metric.compute_metrics(list(results)).items()}


def test_headline_metrics_are_iou_metric_values_before_its_rounding():
    """The record's mIoU/aAcc/mAcc are IoUMetric's values before its 2-decimal rounding (within 1e-9; they are
    the same float32 numbers), and rounding them as IoUMetric does gives its output exactly."""
    rng = np.random.default_rng(5)
    n, classes = 6, 7
    label = rng.integers(0, 5000, (n, classes))
    label[:, 2] = 0  # a class never in the ground truth: NaN IoU/Acc left out of the means
    intersect = (label * rng.uniform(0, 1, (n, classes))).astype(np.int64)
    pred = intersect + rng.integers(0, 3000, (n, classes))
    areas = {"intersect": intersect, "union": pred + label - intersect, "pred_label": pred, "label": label}
    results = [tuple(torch.tensor(areas[k][i], dtype=torch.float32) for k in areas) for i in range(n)]
    arrays = {k: v.astype(np.int32) for k, v in areas.items()} | {"nan_to_num": np.asarray(np.nan)}
    ours = {k: float(v[0]) for k, v in metrics_from_areas(arrays, np.ones((1, n), np.int64)).items()}
    unrounded, rounded = _mmseg_metrics(results, classes, rounded=False), _mmseg_metrics(results, classes)
    ours_metric = PerClassIoUMetric()
    ours_metric.dataset_meta = {"classes": [f"c{i}" for i in range(classes)]}
    # the results as process() keeps them: an image's areas, then its path
    ours_metric.compute_metrics([(*areas, f"img{i}.jpg") for i, areas in enumerate(results)])
    assert ours_metric.image_paths == [f"img{i}.jpg" for i in range(n)]
    for key in ("mIoU", "aAcc", "mAcc"):
        assert abs(ours[key] - unrounded[key]) <= 1e-9 and ours_metric.unrounded[key] == ours[key], key
        assert float(np.round(np.float32(ours[key]), 2)) == rounded[key], key
        assert ours[key] != round(ours[key], 2), key  # not already rounded: the test can tell


def test_resamples_equal_mmseg_on_the_resampled_image_list_including_float32_rounding():
    """Large areas (totals beyond 2**24, where mmseg's float32 sums round): each resample's metrics equal
    IoUMetric.compute_metrics on the resampled images in dataset order, bit for bit."""
    rng = np.random.default_rng(3)
    n, classes = 8, 5
    label = rng.integers(3_000_001, 8_000_000, (n, classes)) | 1  # odd: float32 sums above 2**24 round
    label[:, 4] = 0  # a class never in the ground truth
    intersect = (label * rng.uniform(0.1, 0.9, (n, classes))).astype(np.int64)
    pred = intersect + rng.integers(0, 900_001, (n, classes))
    pred[1:, 3] = 0  # a class predicted in one image only
    areas = {"intersect": intersect, "union": pred + label - intersect, "pred_label": pred, "label": label}
    results = [tuple(torch.tensor(areas[k][i], dtype=torch.float32) for k in areas) for i in range(n)]
    arrays = {k: v.astype(np.int32) for k, v in areas.items()} | {"nan_to_num": np.asarray(np.nan)}
    counts = np.vstack([np.ones(n, np.int64), resample_counts(n, 30, seed=1)])
    ours = metrics_from_areas(arrays, counts)
    rounded = 0
    for b, row in enumerate(counts):
        drawn = [results[i] for i in range(n) for _ in range(row[i])]
        exact = np.asarray(row, np.float64) @ label.astype(np.float64)
        rounded += int((summed_areas(label, row[None])[0] != exact).any())
        np.testing.assert_array_equal(summed_areas(label, row[None])[0], sum(r[3] for r in drawn).numpy())
        assert {k: float(v[b]) for k, v in ours.items()} == _mmseg_metrics(drawn, classes, rounded=False), b
    assert rounded > 0, rounded  # the float32 path was exercised
