"""Plots from hand-made records: the gains chart and per-class IoU deltas are written as PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import uncertainty
from benchmarks.plots import class_delta_intervals, plot_all, plot_class_iou_deltas
from benchmarks.records import artefacts_dir, record_path, write_record
from benchmarks.registry import harnesses
from benchmarks.uncertainty import Outcomes
from silc.errors import UserError
from silc_bench.cli import main
from tests.test_product_tables import make_record

SEG = {"crop": 64, "dense_mode": "naive"}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    for model, acc, ious in (
        ("clip", 0.5, {"sky": 40.0, "grass": 10.0}),
        ("silc", 0.6, {"sky": 50.0, "grass": 5.0}),
    ):
        write_record(d, make_record(model, "zeroshot-cls", "default", {}, {"acc1": acc}))
        extra = {"per_class_iou": ious}
        write_record(
            d, make_record(model, "seg-ade20k", "synth", SEG, {"mIoU": sum(ious.values()) / 2}, "/d", extra)
        )
    return d


def test_plot_writes_gains_and_class_deltas(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plots"
    assert main(["plot", "--results", str(results), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "gains.png" and len(names) == 2 and names[1].startswith("seg-classes-silc-synth-")
    for name in names:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    assert capsys.readouterr().err.count("wrote ") == 2


def test_class_deltas_need_shared_classes() -> None:
    a = make_record("silc", "seg-ade20k", "synth", SEG, {}, extra={"per_class_iou": {"sky": 1.0}})
    b = make_record("clip", "seg-ade20k", "synth", SEG, {}, extra={"per_class_iou": {"sand": 1.0}})
    with pytest.raises(UserError, match="no class has an IoU in both"):
        plot_class_iou_deltas(a, b, Path("unused.png"))


def test_plot_without_baseline_is_an_error(results: Path, tmp_path: Path, capsys) -> None:
    assert main(["plot", "--results", str(results), "--out", str(tmp_path / "p"), "--baseline", "nope"]) == 2
    assert "--baseline 'nope': no records for that model" in capsys.readouterr().err


def _seg_with_outcomes(results: Path, model: str, intersect: np.ndarray, union: np.ndarray) -> Path:
    """A segmentation record (the real harness's metrics and per-class IoU) with its per-image outcomes."""
    harness = harnesses()["seg-ade20k"]
    classes = ["sky", "grass"]
    arrays = {
        "intersect": intersect,
        "union": union,
        "pred_label": union - 1,
        "label": union - 2,
        "classes": np.asarray(classes),
        "nan_to_num": np.asarray(np.nan),
    }
    outcomes = Outcomes("image", [f"img{i}.png" for i in range(len(union))], arrays)
    point, ci = uncertainty.bootstrap(harness.metrics_from_counts, outcomes, 200)
    ious = harness.per_class_from_counts(arrays, np.ones((1, len(union)), np.int64))[0]
    extra = {"per_class_iou": dict(zip(classes, map(float, ious), strict=True))}
    record = make_record(model, "seg-ade20k", "synth", SEG, point, "/d", extra)
    path = record_path(results, model, record.benchmark, record.protocol_name, record.protocol)
    _, sha = outcomes.save(artefacts_dir(path))
    record.metrics_ci = ci
    record.uncertainty = uncertainty.describe(outcomes, 200, 0, 0.01, sha)
    return write_record(results, record)


def test_plots_with_paired_intervals(tmp_path: Path) -> None:
    from benchmarks.table_gains import PairedGains
    from benchmarks.table_rows import load_results

    rng = np.random.default_rng(0)
    union = rng.integers(50, 100, (16, 2))
    base_i = union // 4
    # silc: sky far better on every image (an interval above 0), grass the same as clip (an interval [0, 0])
    silc_i = np.stack([union[:, 0] * 3 // 4, base_i[:, 1]], axis=1)
    d = tmp_path / "results"
    base = _seg_with_outcomes(d, "clip", base_i, union)
    model = _seg_with_outcomes(d, "silc", silc_i, union)
    loaded = {lr.path: lr for lr in load_results(d)}
    pairing = PairedGains(list(loaded.values()))
    intervals = class_delta_intervals(loaded[model], loaded[base], pairing, ["sky", "grass"])
    assert intervals is not None and intervals["sky"][0] > 40 and intervals["grass"] == (0.0, 0.0)
    out = tmp_path / "plots"
    written = plot_all(list(loaded.values()), "clip", out)
    assert [p.name for p in written] == [
        "gains.png",
        f"seg-classes-silc-synth-{model.stem.split('.')[-1]}.png",
    ]
    for p in written:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 200
