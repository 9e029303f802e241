"""Box AP: ground truth as detections scores 100; our numbers equal pycocotools' COCOeval run directly."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.detection.cocoeval import evaluate_boxes
from benchmarks.ov_coco import load_coco, load_split, restrict
from tests.det_helpers import noisy_detections, write_coco


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[int], list[int]]:
    root = write_coco(tmp_path_factory.mktemp("det-world"))
    split = load_split(root / "annotations" / "ov_split.json")
    gt = restrict(load_coco(root / "annotations" / "instances_val2017.json"), split.names)
    path = root / "annotations" / "instances_val2017_ov.json"
    path.write_text(json.dumps(gt))
    ids = {c["name"]: c["id"] for c in gt["categories"]}
    return path, gt, [ids[n] for n in split.base], [ids[n] for n in split.novel]


def _as_detections(gt: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]


def _direct(ann_file: Path, dets_file: Path, cat_ids: list[int] | None) -> COCOeval:
    """pycocotools on the files, as a user would run it."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(str(dets_file)), "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_ground_truth_as_detections_gives_ap_100(val) -> None:
    _, gt, base, novel = val
    metrics, detail = evaluate_boxes(gt, _as_detections(gt), base, novel)
    for key in ("AP", "AP50", "AP75", "AP_base", "AP50_base", "AP_novel", "AP50_novel"):
        assert metrics[key] == pytest.approx(100.0), key
    assert detail["per_category"]["alpha"]["AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_equals_cocoeval_run_directly(val, tmp_path: Path, seed: int) -> None:
    ann_file, gt, base, novel = val
    dets = noisy_detections(gt, seed)
    dets_file = tmp_path / "dets.json"
    dets_file.write_text(json.dumps(dets))
    metrics, _ = evaluate_boxes(gt, json.loads(dets_file.read_text()), base, novel)
    overall = _direct(ann_file, dets_file, None)
    assert 0 < metrics["AP"] < 100
    for i, key in enumerate(("AP", "AP50", "AP75")):
        assert metrics[key] == pytest.approx(overall.stats[i] * 100, abs=1e-6)
    for subset, ids in (("base", base), ("novel", novel)):
        direct = _direct(ann_file, dets_file, ids)
        assert metrics[f"AP_{subset}"] == pytest.approx(direct.stats[0] * 100, abs=1e-6)
        assert metrics[f"AP50_{subset}"] == pytest.approx(direct.stats[1] * 100, abs=1e-6)


def test_no_detections_gives_zero_where_there_is_ground_truth(val) -> None:
    _, gt, base, novel = val
    metrics, detail = evaluate_boxes(gt, [], base, novel)
    assert metrics["AP"] == 0.0 and metrics["AP50_novel"] == 0.0
    assert evaluate_boxes(gt, [], base, [])[0]["AP_novel"] is None


def test_crowd_boxes_are_ignored_not_missed(val) -> None:
    """A detection on a crowd region is neither a hit nor a false positive (COCO's iscrowd rule)."""
    _, gt, base, novel = val
    crowd = next(a for a in gt["annotations"] if a["iscrowd"])
    extra = {
        "image_id": crowd["image_id"],
        "category_id": crowd["category_id"],
        "bbox": crowd["bbox"],
        "score": 1.0,
    }
    metrics, _ = evaluate_boxes(gt, _as_detections(gt) + [extra], base, novel)
    assert metrics["AP"] == pytest.approx(100.0)
