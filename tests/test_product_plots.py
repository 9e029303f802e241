"""Plots from hand-made records: the gains chart and per-class IoU deltas are written as PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from benchmarks.plots import plot_class_iou_deltas
from benchmarks.records import write_record
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
