"""Per-sample outcomes and ``metrics_from_counts`` of retrieval, fewshot and det-ovcoco (boxcls and fvlm): drawing
every unit once gives the record's metric exactly (the runner checks it on every record), a hand-made resample
gives hand-computed values, and records carry intervals around their point estimates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.detection.cocoeval import evaluate_boxes_with_outcomes
from benchmarks.detection.harness import DetOVCocoHarness
from benchmarks.ov_coco import load_coco, load_split, restrict
from benchmarks.registry import get_harness
from benchmarks.runner import run_harness
from benchmarks.uncertainty import Outcomes
from tests.det_helpers import OracleEncoder, noisy_detections, write_coco
from tests.global_fixtures import PrototypeEncoder, write_imagefolder, write_karpathy

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]
ROW = np.array([[2, 0, 1]])  # a resample of three units: the first twice, the second not, the third once


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))


def _check_intervals(record, metrics: list[str], num_units: int) -> None:
    """Every listed metric has an interval around its point estimate; the units are counted right."""
    assert record.uncertainty["num_units"] == num_units
    for key in metrics:
        ci, value = record.metrics_ci[key], record.metrics[key]
        assert ci["low"] is not None and ci["low"] <= value <= ci["high"], (key, value, ci)


def _reloaded(path: Path) -> dict[str, np.ndarray]:
    """The outcomes stored beside a record, read back without pickles."""
    folder = path.with_name(path.name.removesuffix(".json"))
    return Outcomes.load(folder / "outcomes.npz").arrays


def _ones(harness, arrays: dict[str, np.ndarray], n: int) -> dict[str, float]:
    return {k: float(v[0]) for k, v in harness.metrics_from_counts(arrays, np.ones((1, n), np.int64)).items()}


def _same(a: float | None, b: float) -> bool:
    return (a is None and math.isnan(b)) or a == b


# --- retrieval ---------------------------------------------------------------------------------------------


def test_retrieval_record_exact_with_intervals(tmp_path: Path) -> None:
    ann = write_karpathy(tmp_path / "flickr", NAMES, {"test": 30})
    harness = get_harness("retrieval")
    record, path, _ = run_harness(
        harness, PrototypeEncoder(NAMES, seed=1), ann.parent, "karpathy-test",
        harness.resolve_protocol(None), tmp_path / "res", options={"workers": 0},
    )  # fmt: skip
    arrays = _reloaded(path)
    assert arrays["caption_hits"].dtype == bool and arrays["caption_image"].dtype == np.int32
    assert arrays["caption_hits"].shape == (record.extra["num_captions"], 3)
    assert arrays["image_hits"].shape == (30, 3)
    point = _ones(harness, arrays, 30)
    assert set(point) == set(record.metrics)
    assert all(point[k] == record.metrics[k] for k in point)  # bit-equal (the runner checked it too)
    assert 0.05 < record.metrics["image_retrieval_recall@1"] < 1.0
    _check_intervals(record, list(harness.key_metrics), 30)


def test_retrieval_metrics_from_counts_by_hand() -> None:
    # image 0: two captions (one hit at 1), image 1: one caption (miss), image 2: two captions (both miss)
    arrays = {
        "recall_k": np.array([1, 5], np.int32),
        "caption_image": np.array([0, 0, 1, 2, 2], np.int32),
        "caption_hits": np.array([[1, 1], [0, 1], [0, 1], [0, 1], [0, 0]], bool),
        "image_hits": np.array([[1, 1], [0, 0], [0, 1]], bool),
    }
    out = get_harness("retrieval").metrics_from_counts(arrays, np.array([[2, 0, 1], [1, 1, 1]]))
    f32 = lambda x: float(np.float32(x))  # noqa: E731 - the metric is a float32 mean
    # [2, 0, 1]: captions 2*2 + 2 = 6, hits at 1: 2*1 = 2, at 5: 2*2 + 1 = 5; images 3, hits 2 and 2 + 1
    assert out["image_retrieval_recall@1"].tolist() == [f32(2 / 6), f32(1 / 5)]
    assert out["image_retrieval_recall@5"].tolist() == [f32(5 / 6), f32(4 / 5)]
    assert out["text_retrieval_recall@1"].tolist() == [f32(2 / 3), f32(1 / 3)]
    assert out["text_retrieval_recall@5"].tolist() == [1.0, f32(2 / 3)]


# --- fewshot -----------------------------------------------------------------------------------------------


def test_fewshot_record_exact_with_intervals(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "ds", NAMES, {"train": 6, "val": 5})
    harness = get_harness("fewshot")
    protocol = harness.resolve_protocol(None, {"shots": [1, 4], "seeds": [0, 1, 2]})
    record, path, _ = run_harness(
        harness, PrototypeEncoder(NAMES), root, "linear-probe", protocol, tmp_path / "res",
        options={"workers": 0},
    )  # fmt: skip
    arrays = _reloaded(path)
    assert arrays["correct"].shape == (30, 6) and arrays["correct"].dtype == bool
    point = _ones(harness, arrays, 30)
    assert set(point) == set(record.metrics)  # the std too
    assert all(point[k] == record.metrics[k] for k in point)
    _check_intervals(record, ["acc1_1shot_mean", "acc1_4shot_mean"], 30)


def test_fewshot_metrics_from_counts_by_hand() -> None:
    # runs: (k=1, seed 0), (k=1, seed 1), (k=2, seed 0), (k=2, seed 1)
    arrays = {
        "correct": np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]], bool),
        "shots": np.array([1, 2], np.int32),
        "seeds": np.array([0, 1], np.int32),
    }
    out = get_harness("fewshot").metrics_from_counts(arrays, ROW)
    # [2, 0, 1]: run accuracies (2 + 1) / 3, 1 / 3, 2 / 3, (2 + 1) / 3
    assert out["acc1_1shot_mean"][0] == pytest.approx((1 + 1 / 3) / 2)
    assert out["acc1_1shot_std"][0] == pytest.approx((2 / 3) / math.sqrt(2))
    assert out["acc1_2shot_mean"][0] == pytest.approx((2 / 3 + 1) / 2)
    assert out["acc1_2shot_std"][0] == pytest.approx((1 / 3) / math.sqrt(2))


# --- det-ovcoco boxcls -------------------------------------------------------------------------------------


def test_boxcls_record_exact_with_intervals(synth_root: Path, tiny_encoder, tmp_path: Path) -> None:
    harness = DetOVCocoHarness()
    protocol = harness.resolve_protocol("boxcls", {"input_size": 64, "templates": "photo"})
    record, path, _ = run_harness(
        harness,
        tiny_encoder,
        synth_root / "coco",
        "boxcls",
        protocol,
        tmp_path / "res",
        options={"workers": 0},
    )
    arrays = _reloaded(path)
    n_images = record.extra["images"]
    assert len(arrays["box_class"]) == record.num_samples == record.extra["boxes"]
    assert arrays["dense_top1"].dtype == bool and arrays["box_image"].max() == n_images - 1
    point = _ones(harness, arrays, n_images)
    assert set(point) == set(record.metrics)
    assert all(_same(record.metrics[k], point[k]) for k in point)
    assert 0 < record.metrics["crop_top5_all"] < 100  # a non-trivial mean of per-class accuracies
    _check_intervals(record, [k for k in harness.key_metrics if record.metrics.get(k) is not None], n_images)


def test_boxcls_oracle_world_exact(tmp_path: Path) -> None:
    """The colour world with a shuffled text order (wrong labels) and the all vocabulary (a class in neither
    split): exact point estimates through the runner, an image per unit."""
    world = write_coco(tmp_path / "world")
    harness = DetOVCocoHarness()
    protocol = harness.resolve_protocol(
        "boxcls", {"input_size": 64, "templates": "photo", "vocabulary": "all"}
    )
    record, _, _ = run_harness(harness, OracleEncoder(permute_text=True), world, "boxcls", protocol, tmp_path)
    assert record.uncertainty["num_units"] == 3  # v3 has no box
    assert record.uncertainty["unit"] == "image with its boxes"


def test_boxcls_metrics_from_counts_by_hand() -> None:
    # class 0 base, classes 1 and 2 novel; boxes: image 0 (class 0 hit, class 1 miss), image 1 (class 0 miss),
    # image 2 (class 1 hit, class 2 hit)
    arrays = {
        "box_image": np.array([0, 0, 1, 2, 2], np.int32),
        "box_class": np.array([0, 1, 0, 1, 2], np.int32),
        "dense_top1": np.array([1, 0, 0, 1, 1], bool),
        "dense_top5": np.ones(5, bool),
        "crop_top1": np.zeros(5, bool),
        "crop_top5": np.array([1, 1, 1, 0, 0], bool),
        "class_base": np.array([1, 0, 0], bool),
        "class_novel": np.array([0, 1, 1], bool),
    }
    out = DetOVCocoHarness().metrics_from_counts(arrays, np.array([[2, 0, 1], [0, 1, 0]]))
    # [2, 0, 1]: class 0: 2 of 2, class 1: 1 of 3, class 2: 1 of 1
    assert out["dense_top1_base"].tolist()[0] == 100.0
    assert out["dense_top1_novel"][0] == pytest.approx((100 / 3 + 100) / 2)
    assert out["dense_top1_all"][0] == pytest.approx((100 + 100 / 3 + 100) / 3)
    assert out["crop_top5_novel"][0] == pytest.approx((200 / 3 + 0) / 2)
    assert out["crop_top1_all"][0] == 0.0 and out["dense_top5_all"][0] == 100.0
    # [0, 1, 0]: only image 1 (class 0 missed): novel classes undrawn, so undefined
    assert out["dense_top1_base"][1] == 0.0 and out["dense_top1_all"][1] == 0.0
    assert math.isnan(out["dense_top1_novel"][1])


# --- det-ovcoco fvlm (AP) ----------------------------------------------------------------------------------


def test_ap_point_estimate_exact_from_stored_matches(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "world")
    split = load_split(root / "annotations" / "ov_split.json")
    gt = restrict(load_coco(root / "annotations" / "instances_val2017.json"), split.names)
    ids = {c["name"]: c["id"] for c in gt["categories"]}
    base, novel = [ids[n] for n in split.base], [ids[n] for n in split.novel]
    harness = DetOVCocoHarness()
    for seed in range(3):
        metrics, _, arrays = evaluate_boxes_with_outcomes(
            gt, noisy_detections(gt, seed, fp_score_decimals=1), base, novel
        )
        units = [str(i) for i in range(int(arrays["num_images"]))]
        Outcomes("image", units, arrays).save(tmp_path)
        stored = Outcomes.load(tmp_path / "outcomes.npz").arrays  # plain arrays, no pickles
        point = _ones(harness, stored, len(units))
        assert set(point) == set(metrics)
        assert all(_same(metrics[k], point[k]) for k in point), (metrics, point)
        assert 0 < metrics["AP50"] < 100
        assert harness.max_resamples(stored) == 200 and harness.max_resamples({"box_class": 0}) is None
    counts = np.array([[2, 0, 1, 1], [0, 0, 2, 2]])  # a resample equals COCOeval on the duplicated images
    out = harness.metrics_from_counts(stored, counts)
    assert all(np.isfinite(out["AP50"])) and out["AP50"][0] != out["AP50"][1]


def _one_class_world() -> tuple[dict, list[dict]]:
    """Three images, one 20 x 20 box each (category 1, base; category 2, novel, has none): image 0 detected
    (score 0.9), image 1 only a false positive (0.8), image 2 detected (0.7)."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(3)]
    anns = [{"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
            for i in range(3)]  # fmt: skip
    cats = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
    dets = [
        {"image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [40, 40, 20, 20], "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.7},
    ]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def test_ap_metrics_from_counts_by_hand() -> None:
    gt, dets = _one_class_world()
    metrics, _, arrays = evaluate_boxes_with_outcomes(gt, dets, [1], [2])
    out = DetOVCocoHarness().metrics_from_counts(
        arrays, np.array([[2, 0, 1], [1, 1, 0], [0, 2, 1], [1, 1, 1]])
    )
    # [2, 0, 1]: three hits, no false positive: AP 100 at every IoU threshold
    # [1, 1, 0]: hit (0.9), false positive (0.8), 2 GT: precision 1 up to recall 0.5 -> 51 of 101 recall points
    # [0, 2, 1]: two false positives (0.8) then a hit (0.7), 3 GT: precision 1/3 up to recall 1/3 -> 34 points
    assert out["AP"][0] == 100.0 and out["AP50"][0] == 100.0
    assert out["AP50"][1] == pytest.approx(100 * 51 / 101) and out["AP"][1] == pytest.approx(100 * 51 / 101)
    assert out["AP50"][2] == pytest.approx(100 * 34 / 101 / 3)
    assert out["AP50_base"].tolist() == out["AP50"].tolist() and out["APs"].tolist() == out["AP"].tolist()
    assert np.isnan(out["AP50_novel"]).all() and np.isnan(out["APl"]).all()  # no GT there: undefined
    # [1, 1, 1]: hit, false positive, hit, 3 GT: precision 1 to recall 1/3 (34 points), 2/3 to 2/3 (33 more)
    assert out["AP50"][3] == metrics["AP50"] == pytest.approx(100 * (34 + 33 * 2 / 3) / 101)


@pytest.mark.mm
@pytest.mark.slow
def test_fvlm_record_exact_with_capped_resamples(tmp_path: Path) -> None:
    import torch

    root = write_coco(tmp_path / "world")
    harness = DetOVCocoHarness()
    protocol = harness.resolve_protocol("fvlm", {"max_iters": 2, "templates": "photo"})
    torch.manual_seed(0)
    record, path, _ = run_harness(harness, OracleEncoder(), root, "fvlm", protocol, tmp_path / "results",
                                  options={"work_dir": str(tmp_path / "work")})  # fmt: skip
    assert record.uncertainty["resamples"] == 200 and record.uncertainty["resamples_requested"] == 1000
    assert record.uncertainty["num_units"] == 4  # every val image, those without boxes too
    arrays = _reloaded(path)
    point = _ones(harness, arrays, 4)
    assert all(_same(record.metrics[k], point[k]) for k in point)
    assert set(json.loads(json.dumps(record.metrics_ci))) == set(point)
