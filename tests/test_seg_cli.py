"""`silc-bench eval seg-ade20k` end to end on the synthetic world (every dense mode), its record against a direct
numpy confusion matrix, --visualize, and bad inputs as one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from adapters.encoder import DENSE_MODES  # noqa: E402
from benchmarks.records import read_record  # noqa: E402
from silc_bench.cli import main  # noqa: E402
from tests.conftest import TINY_MODEL_CONFIG  # noqa: E402
from tests.seg_fixtures import block_labels, confusion_metrics, write_ade  # noqa: E402

TINY = f"tiny=openclip:{TINY_MODEL_CONFIG}"


def _eval(data: Path, results: Path, *extra: str) -> int:
    return main(["eval", "seg-ade20k", "--model", TINY, "--data", str(data), "--results", str(results),
                 "--workers", "0", "--protocol", "synth", "--cache-dir", f"{results}-cache", *extra])  # fmt: skip


def _records(results: Path) -> list:
    return [read_record(p) for p in sorted(results.rglob("seg-ade20k.*.json"))]


def test_every_dense_mode_end_to_end_on_the_synthetic_world(synth_root, tmp_path, capsys):
    for mode in DENSE_MODES:
        assert _eval(synth_root, tmp_path, "--dense-mode", mode) == 0
    out, err = capsys.readouterr()
    assert "mIoU" in out and "mmengine" not in out + err  # no mmengine warning ("prefix is not set") at all
    records = {r.protocol["dense_mode"]: r for r in _records(tmp_path)}
    assert sorted(records) == sorted(DENSE_MODES)
    for record in records.values():
        assert record.num_samples == 40 and record.split == "validation"
        assert 0 <= record.metrics["mIoU"] <= 100 and 0 <= record.metrics["aAcc"] <= 100
        assert record.protocol["templates"] == "openai80" and record.protocol["templates_count"] == 80
        assert record.protocol["names_count"] == 22 and len(record.extra["per_class_iou"]) == 22
        assert record.versions.get("mmsegmentation") == "1.2.2"
    # The mode reaches the encoder: a random tiny ViT predicts differently in each mode.
    assert len({json.dumps(r.extra["per_class_iou"]) for r in records.values()}) == len(DENSE_MODES)


def test_record_equals_numpy_confusion_matrix_of_saved_predictions(synth_root, tmp_path):
    assert _eval(synth_root, tmp_path, "--dense-mode", "maskclip", "--save-predictions") == 0
    (record,) = _records(tmp_path)
    ade = synth_root / "ADEChallengeData2016"
    pairs = []
    for gt_path in sorted((ade / "annotations" / "validation").glob("*.png")):
        gt = np.asarray(Image.open(gt_path)).astype(np.int64)
        gt = np.where(gt == 0, 255, gt - 1)  # reduce_zero_label
        saved = np.asarray(Image.open(Path(record.extra["predictions_dir"]) / gt_path.name)).astype(np.int64)
        pairs.append((saved - 1, gt))  # IoUMetric saves prediction + 1 for reduce_zero_label datasets
    ours = confusion_metrics(pairs, 22)
    assert len(pairs) == record.num_samples == 40
    for key in ("mIoU", "aAcc", "mAcc"):
        assert abs(ours[key] - record.metrics[key]) <= 1e-4, key  # unrounded: float32 sums vs float64
    names = (ade / "classnames.txt").read_text().splitlines()
    recorded = np.array([np.nan if (v := record.extra["per_class_iou"][n]) is None else v for n in names])
    np.testing.assert_allclose(recorded, ours["IoU"], atol=1e-6, equal_nan=True)
    assert 0 < record.metrics["mIoU"] < 100  # a random encoder: a non-trivial check


def test_batching_images_and_windows_changes_no_prediction(tmp_path):
    """Images of different sizes padded into one batch, all their windows in one forward, equal one image and
    one window per forward."""
    rng = np.random.default_rng(3)
    sizes = [(64, 64), (48, 80), (80, 48), (64, 100)]
    maps = {f"ADE_val_{i:08d}": block_labels(rng, h, w, 16, range(6)) for i, (h, w) in enumerate(sizes, 1)}
    ade = write_ade(tmp_path / "world", maps, {v: v for v in range(6)})
    (ade / "classnames.txt").write_text("grass\nwater\nsky\ncircle\nsquare\n")
    predictions = []
    for batch in ("64", "1"):
        results = tmp_path / f"results-{batch}"
        assert (
            _eval(tmp_path / "world", results, "--batch-size", batch, "--save-predictions", "--crop", "48")
            == 0
        )
        (record,) = _records(results)
        predictions.append(
            {p.name: np.asarray(Image.open(p)) for p in Path(record.extra["predictions_dir"]).iterdir()}
        )
        images_per_batch = record.extra["mmseg_config"]["test_dataloader"]["batch_size"]
        assert (
            images_per_batch >= 4 if batch == "64" else images_per_batch == 1
        )  # all four in one batch, or one
    assert predictions[0].keys() == predictions[1].keys() and len(predictions[0]) == 4
    for name, pred in predictions[0].items():
        assert np.array_equal(pred, predictions[1][name]), name


def test_visualize_writes_panels(synth_root, tmp_path):
    assert _eval(synth_root, tmp_path, "--visualize", "2") == 0
    (record,) = _records(tmp_path)
    panels = [Path(p) for p in record.extra["visualizations"]]
    assert len(panels) == 2 and all(p.is_file() for p in panels)
    with Image.open(panels[0]) as im:
        assert im.size == (1200, 460)


def _small_world(root: Path) -> Path:
    """Four colour-coded 64-px images in the synthetic ADE layout with a 5-class classnames.txt."""
    rng = np.random.default_rng(0)
    maps = {f"ADE_val_{i:08d}": block_labels(rng, 64, 64, 16, range(6)) for i in range(1, 5)}
    ade = write_ade(root, maps, {v: v for v in range(6)})
    (ade / "classnames.txt").write_text("grass\nwater\nsky\ncircle\nsquare\n")
    return root


@pytest.mark.parametrize(
    "breakage,message",
    [
        ("missing annotation", "no label map for 1 of 4 images, e.g. ADE_val_00000002.png"),
        (
            "label out of range",
            "1 of 4 sampled label maps hold values other than 0..5 and 255 (5 classes, "
            "reduce_zero_label): ADE_val_00000003.png (values 9)",
        ),
        ("wrong layout", "expected ADEChallengeData2016/{images,annotations}/<split>/"),
        ("size mismatch", "ADE_val_00000004.png: label map is (64, 60) (H, W) but its image is (64, 64)"),
        ("unknown mode", "--dense-mode 'fancy': expected one of naive, maskclip, sclip, clearclip"),
        ("names count", "names.txt: 4 classes, but the dataset has 5"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, breakage, message):
    data = _small_world(tmp_path / "world")
    ade = data / "ADEChallengeData2016"
    extra = []
    if breakage == "missing annotation":
        (ade / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    elif breakage == "label out of range":
        labels = np.asarray(Image.open(ade / "annotations" / "validation" / "ADE_val_00000003.png")).copy()
        labels[:4, :4] = 9  # 9 - 1 = 8 >= 5 classes
        Image.fromarray(labels).save(ade / "annotations" / "validation" / "ADE_val_00000003.png")
    elif breakage == "size mismatch":
        path = ade / "annotations" / "validation" / "ADE_val_00000004.png"
        Image.fromarray(np.asarray(Image.open(path))[:, :60].copy()).save(path)
    elif breakage == "wrong layout":
        shutil.move(ade / "images", ade / "imgs")
    elif breakage == "names count":
        (tmp_path / "names.txt").write_text("grass, lawn\nwater\nsky\ncircle\n")
        extra = ["--names", str(tmp_path / "names.txt")]
    else:
        extra = ["--dense-mode", "fancy"]
    capsys.readouterr()
    assert _eval(data, tmp_path / "results", *extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("silc-bench: error: ") and message in err, err
    assert not list((tmp_path / "results").rglob("*.json"))
