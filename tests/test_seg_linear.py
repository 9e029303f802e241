"""Dense linear probing on seg-ade20k: an oracle encoder (dense features = one-hot ground truth) reaches mIoU 100
with both probes (mmseg's ``linear-synth`` and the plain-torch ``linear-fast``); the fast probe's areas and metrics
equal mmseg IoUMetric's on the same predictions; a seed fixes the record; a dataset without a training split is
one line and exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.runner import run_harness  # noqa: E402
from benchmarks.seg_areas import AREA_KEYS, image_areas, metrics_from_areas  # noqa: E402
from benchmarks.uncertainty import Outcomes  # noqa: E402
from silc_bench.cli import main  # noqa: E402
from tests.conftest import TINY_MODEL_CONFIG  # noqa: E402
from tests.seg_fixtures import ColourOracle, colourise_ade  # noqa: E402


def _probe(encoder, root: Path, protocol_name: str, results: Path, **overrides):
    harness = get_harness("seg-ade20k")
    protocol = harness.resolve_protocol(protocol_name, overrides)
    options = {"workers": 0, "no_cache": True}
    record, path, _ = run_harness(harness, encoder, root, protocol_name, protocol, results, options=options)
    return record, path


@pytest.fixture(scope="module")
def oracle_world(synth_root, tmp_path_factory) -> tuple[Path, ColourOracle]:
    """The synthetic world's training and validation annotations painted in oracle colours, and the oracle
    (patch 1: its features are the one-hot ground truth of every pixel)."""
    world = tmp_path_factory.mktemp("oracle-world")
    for split in ("training", "validation"):
        colours = colourise_ade(synth_root, world, split)
    names = [n for n in (synth_root / "ADEChallengeData2016" / "classnames.txt").read_text().split("\n") if n]
    oracle = ColourOracle([[n] for n in names], [colours[c + 1] for c in range(len(names))], patch_size=1)
    return world, oracle


def test_fast_probe_on_oracle_features_is_perfect(oracle_world, tmp_path):
    world, oracle = oracle_world
    record, _ = _probe(oracle, world, "linear-fast", tmp_path)
    assert record.metrics["mIoU"] == 100.0 and record.metrics["aAcc"] == 100.0
    assert record.num_samples == 40 and record.protocol["names_count"] == 22
    assert record.metrics_ci["mIoU"]["low"] == 100.0  # outcomes saved, intervals from them


def test_mmseg_linear_probe_on_oracle_features_is_perfect(oracle_world, tmp_path):
    """Through mmseg's Runner: training pipeline (random resize, crop, flip; no photometric distortion, which
    changes the oracle's colours), BNHead, slide inference, IoUMetric."""
    world, oracle = oracle_world
    record, _ = _probe(
        oracle, world, "linear-synth", tmp_path, iters=120, warmup_iters=10, photometric=False, lr=0.05
    )
    assert record.metrics["mIoU"] == 100.0 and record.metrics["aAcc"] == 100.0
    assert record.extra["mmseg_config"]["train_cfg"]["max_iters"] == 120
    assert record.extra["mmseg_config"]["model"]["decode_head"]["type"] == "BNHead"
    assert len(record.extra["per_class_iou"]) == 22


def test_fast_probe_metrics_equal_mmseg_iou_metric_on_the_same_predictions():
    """Per-image areas of :func:`image_areas` equal IoUMetric's, and the metrics from them equal IoUMetric's
    unrounded mIoU/aAcc/mAcc (to 1e-9) and its rounded ones."""
    import benchmarks.seg_mmseg  # noqa: F401  (registers the metric)
    from benchmarks.seg_mmseg import PerClassIoUMetric

    rng = np.random.default_rng(0)
    classes = 7
    metric = PerClassIoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": [f"c{i}" for i in range(classes)]}
    mine, samples = [], []
    for i in range(5):
        shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
        label = torch.from_numpy(rng.integers(0, classes - 1, shape))  # the last class is never labelled
        label[torch.from_numpy(rng.random(shape) < 0.1)] = 255
        pred = torch.from_numpy(rng.integers(0, classes, shape))
        mine.append(image_areas(pred, label, classes))
        samples.append(
            {
                "pred_sem_seg": {"data": pred[None]},
                "gt_sem_seg": {"data": label[None]},
                "img_path": f"{i}.jpg",
            }
        )
    metric.process({}, samples)
    rounded = metric.compute_metrics(metric.results)
    areas = {key: np.stack([a[key] for a in mine]) for key in AREA_KEYS}
    for key in AREA_KEYS:
        np.testing.assert_array_equal(areas[key], metric.per_image[key])
    arrays = {**areas, "nan_to_num": np.asarray(np.nan)}
    ours = {k: float(v[0]) for k, v in metrics_from_areas(arrays, np.ones((1, 5), np.int64)).items()}
    for key in ("mIoU", "aAcc", "mAcc"):
        assert abs(ours[key] - metric.unrounded[key]) <= 1e-9
        assert round(ours[key], 2) == pytest.approx(rounded[key])


def test_same_seed_same_record_other_seed_other_record(synth_root, tiny_encoder, tmp_path):
    first, path = _probe(tiny_encoder, synth_root, "linear-fast", tmp_path / "a")
    again, again_path = _probe(tiny_encoder, synth_root, "linear-fast", tmp_path / "b")
    other, _ = _probe(tiny_encoder, synth_root, "linear-fast", tmp_path / "c", seed=1)
    assert first.metrics == again.metrics and first.extra["per_class_iou"] == again.extra["per_class_iou"]
    a, b = (Outcomes.load(p.with_suffix("") / "outcomes.npz") for p in (path, again_path))
    assert a.units == b.units and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in AREA_KEYS)
    assert other.metrics != first.metrics and other.protocol["seed"] == 1
    assert 0 < first.metrics["mIoU"] < 100


@pytest.mark.slow
def test_mmseg_linear_probe_same_seed_same_record(synth_root, tiny_encoder, tmp_path):
    runs = [
        _probe(tiny_encoder, synth_root, "linear-synth", tmp_path / d, iters=60, warmup_iters=6)[0]
        for d in "ab"
    ]
    assert (
        runs[0].metrics == runs[1].metrics
        and runs[0].extra["per_class_iou"] == runs[1].extra["per_class_iou"]
    )


@pytest.mark.parametrize("protocol", ["linear-fast", "linear-synth"])
def test_dataset_without_training_split_is_one_line(synth_root, tmp_path, capsys, protocol):
    world = tmp_path / "world"
    shutil.copytree(synth_root / "ADEChallengeData2016", world / "ADEChallengeData2016")
    shutil.rmtree(world / "ADEChallengeData2016" / "images" / "training")
    capsys.readouterr()
    code = main(["eval", "seg-ade20k", "--model", f"tiny=openclip:{TINY_MODEL_CONFIG}", "--data", str(world),
                 "--results", str(tmp_path / "results"), "--workers", "0", "--protocol", protocol,
                 "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("silc-bench: error: ") and "no 'training' split" in err, (
        err
    )
    assert not list((tmp_path / "results").rglob("*.json"))
