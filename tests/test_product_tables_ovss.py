"""``silc-bench table --layout ovss`` from hand-made records: one row per model and variant, the eight benchmarks'
mIoU in SCLIP / NACLIP's column order and their mean, exact; seeds as mean ± std; conflicts refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.records import write_record
from benchmarks.registry import get_harness
from benchmarks.table_render import render
from benchmarks.table_rows import load_results
from benchmarks.tables import build_table
from silc.errors import UserError
from silc_bench.cli import main
from tests.test_product_tables import make_record

PROTOCOLS = get_harness("seg-ade20k").protocols
ORDER = ["voc21", "context60", "coco-object", "voc20", "context59", "coco-stuff", "cityscapes", "ade-336"]
CLIP = [50.0, 30.0, 20.0, 70.0, 35.0, 15.0, 25.0, 12.5]  # mean 32.1875


def _write(d: Path, model: str, name: str, miou: float | None, **knobs) -> Path:
    protocol = {**PROTOCOLS[name], **knobs}
    record = make_record(model, "seg-ade20k", name, protocol, {"mIoU": miou, "aAcc": 90.0}, f"/d/{name}")
    return write_record(d, record)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    for name, miou in zip(ORDER, CLIP, strict=True):
        _write(d, "clip", name, miou)
        _write(d, "silc-s0", name, miou + 2)
        _write(d, "silc-s1", name, miou + (4 if name == "voc21" else 2))
        # the synthetic suite's sizes: another dataset knob per protocol, still one row
        _write(d, "tiny", name, 1.0, short_side=64)
    _write(d, "clip", "voc21", 55.0, dense_mode="sclip")  # a variant with two benchmarks: no mean
    _write(d, "clip", "context60", 33.0, dense_mode="sclip")
    _write(d, "clip", "ade-448", 99.0)  # not an ovss8 protocol: left out
    write_record(d, make_record("clip", "zeroshot-cls", "default", {"templates": "t"}, {"acc1": 0.5}))
    return d


def test_ovss_layout_exact(results: Path) -> None:
    # silc: seeds 0 and 1 average 34.1875 and 34.4375 over the eight: 34.3125 +- 0.25 / sqrt(2)
    assert render(build_table(load_results(results), "ovss"), "md", "ovss") == (
        "| model                   |        VOC21 |         PC60 |       Object |        VOC20 |         PC59 |"
        "        Stuff |         City |          ADE |         Avg. |\n"
        "|:------------------------|-------------:|-------------:|-------------:|-------------:|-------------:|"
        "-------------:|-------------:|-------------:|-------------:|\n"
        "| clip                    |        50.00 |        30.00 |        20.00 |        70.00 |        35.00 |"
        "        15.00 |        25.00 |        12.50 |        32.19 |\n"
        "| clip (dense_mode=sclip) |        55.00 |        33.00 |          n/a |          n/a |          n/a |"
        "          n/a |          n/a |          n/a |          n/a |\n"
        "| silc (n=2)              | 53.00 ± 1.41 | 32.00 ± 0.00 | 22.00 ± 0.00 | 72.00 ± 0.00 | 37.00 ± 0.00 |"
        " 17.00 ± 0.00 | 27.00 ± 0.00 | 14.50 ± 0.00 | 34.31 ± 0.18 |\n"
        "| tiny                    |         1.00 |         1.00 |         1.00 |         1.00 |         1.00 |"
        "         1.00 |         1.00 |         1.00 |         1.00 |\n"
    )


def test_ovss_layout_seeds_and_csv(results: Path) -> None:
    df = build_table(load_results(results), "ovss", group=None)  # no seed groups: each seed its own row
    assert list(df["model"]) == ["clip", "clip (dense_mode=sclip)", "silc-s0", "silc-s1", "tiny"]
    assert df.loc[2, "Avg."] == pytest.approx(32.1875 + 2) and df.loc[3, "Avg."] == pytest.approx(
        32.1875 + 2.25
    )
    grouped = build_table(load_results(results), "ovss")
    row = grouped[grouped["model"] == "silc (n=2)"].iloc[0]
    assert (row["VOC21"], row["VOC21_std"], row["PC60_std"]) == (53.0, pytest.approx(2**0.5), 0.0)
    assert row["Avg."] == pytest.approx(32.1875 + 2.125)
    csv = render(build_table(load_results(results), "ovss"), "csv", "ovss").splitlines()
    assert csv[0].startswith("model,VOC21,VOC21_std,PC60,PC60_std,")
    assert csv[1].startswith("clip,50.0,,30.0,,20.0,")


def test_ovss_layout_refuses_two_records_for_one_cell(tmp_path: Path) -> None:
    d = tmp_path / "results"
    first = _write(d, "clip", "voc21", 50.0)
    second = _write(d, "clip", "voc21", 51.0, short_side=448)
    with pytest.raises(UserError) as err:
        build_table(load_results(d), "ovss")
    paths = sorted([first, second])  # the order the records are loaded in
    assert str(err.value) == (
        f"conflicting records for model 'clip', VOC21 (protocol 'voc21'): {paths[0]}, {paths[1]}; keep one (or "
        "point --results at one run)"
    )


def test_ovss_layout_without_ovss_records_is_one_line(tmp_path: Path, capsys) -> None:
    d = tmp_path / "results"
    _write(d, "clip", "ade-448", 40.0)
    assert main(["table", "--results", str(d), "--layout", "ovss"]) == 2
    assert capsys.readouterr().err == (
        "silc-bench: error: table layout ovss: no seg-ade20k records of the protocols voc21, context60, "
        "coco-object, voc20, context59, coco-stuff, cityscapes, ade-336 (run the ovss8 suite)\n"
    )
