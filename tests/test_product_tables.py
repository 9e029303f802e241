"""Tables from hand-made result records: known numbers in, exact tables out; conflicts named or refused."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.records import ResultRecord, write_record
from benchmarks.table_render import render
from benchmarks.table_rows import load_results
from benchmarks.tables import build_table
from silc.errors import UserError
from silc_bench.cli import main


def make_record(model, benchmark, protocol_name, protocol, metrics, root="/data/imagenet", extra=None):
    return ResultRecord(
        model=model,
        spec=f"runs/{model}.pt",
        fingerprint=model * 4,
        benchmark=benchmark,
        protocol_name=protocol_name,
        protocol=protocol,
        dataset_root=root,
        split="val",
        num_samples=10,
        metrics=metrics,
        wall_time_s=1.0,
        images_per_s=10.0,
        extra=extra or {},
        versions={},
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    zs = {"templates": "t80"}
    write_record(
        d, make_record("clip", "zeroshot-cls", "default", zs, {"acc1": 0.5, "acc5": 0.9, "top2": 0.7})
    )
    write_record(
        d, make_record("silc", "zeroshot-cls", "default", zs, {"acc1": 0.625, "acc5": 0.95, "top2": 0.8})
    )
    seg = {"crop": 448, "dense_mode": "naive"}
    write_record(d, make_record("clip", "seg-ade20k", "ade-448", seg, {"mIoU": 10.0, "aAcc": 50.0}, "/d/ADE"))
    write_record(d, make_record("silc", "seg-ade20k", "ade-448", seg, {"mIoU": 15.5, "aAcc": None}, "/d/ADE"))
    return d


def table(results: Path, layout: str, fmt: str = "md", baseline: str | None = "clip") -> str:
    return render(build_table(load_results(results), layout, baseline), fmt, layout)


def test_main_layout_exact(results: Path) -> None:
    assert table(results, "main") == (
        "| benchmark    | dataset   | metric   |   silc |   clip (baseline) |    gain |\n"
        "|:-------------|:----------|:---------|-------:|------------------:|--------:|\n"
        "| zeroshot-cls | imagenet  | acc1     | 0.6250 |            0.5000 | +0.1250 |\n"
        "| zeroshot-cls | imagenet  | acc5     | 0.9500 |            0.9000 | +0.0500 |\n"
        "| seg-ade20k   | ADE       | mIoU     |  15.50 |             10.00 |   +5.50 |\n"
        "| seg-ade20k   | ADE       | aAcc     |    n/a |             50.00 |     n/a |\n"
    )


def test_main_layout_csv_keeps_precision(results: Path) -> None:
    df = pd.read_csv(io.StringIO(table(results, "main", "csv")))
    assert list(df.columns) == ["benchmark", "dataset", "metric", "silc", "clip (baseline)", "gain"]
    assert df["gain"].tolist()[:3] == [0.125, 0.05, 5.5]
    assert pd.isna(df["gain"].iloc[3])


def test_ablation_layout_exact(results: Path) -> None:
    assert table(results, "ablation") == (
        "| configuration   |   zeroshot-cls acc1 |   zeroshot-cls acc5 |   seg-ade20k mIoU |   seg-ade20k aAcc |\n"
        "|:----------------|--------------------:|--------------------:|------------------:|------------------:|\n"
        "| clip            |              0.5000 |              0.9000 |             10.00 |             50.00 |\n"
        "| silc            |              0.6250 |              0.9500 |             15.50 |               n/a |\n"
    )


def test_full_layout_has_every_metric_and_protocol(results: Path) -> None:
    df = build_table(load_results(results), "full", "clip")
    assert sorted(zip(df["benchmark"], df["metric"], strict=True)) == sorted(
        [
            ("zeroshot-cls", "acc1"),
            ("zeroshot-cls", "acc5"),
            ("zeroshot-cls", "top2"),
            ("seg-ade20k", "mIoU"),
            ("seg-ade20k", "aAcc"),
        ]
    )
    assert set(df["protocol"]) == {"default", "ade-448"}
    assert df.loc[df["metric"] == "top2", "silc"].item() == 0.8


def test_different_protocol_names_get_their_own_rows(results: Path) -> None:
    write_record(
        results,
        make_record(
            "silc", "seg-ade20k", "ade-336", {"crop": 224, "dense_mode": "naive"}, {"mIoU": 12.0}, "/d/ADE"
        ),
    )
    df = build_table(load_results(results), "main", "clip")
    seg = df[df["metric"] == "mIoU"].set_index("benchmark")
    assert seg.loc["seg-ade20k (ade-448)", "gain"] == 5.5
    assert seg.loc["seg-ade20k (ade-336)", "silc"] == 12.0
    assert pd.isna(seg.loc["seg-ade20k (ade-336)", "clip (baseline)"])
    assert pd.isna(seg.loc["seg-ade20k (ade-336)", "gain"])


def test_same_protocol_name_different_knobs_names_the_knobs(results: Path) -> None:
    knobs = {"crop": 448, "dense_mode": "maskclip"}
    write_record(results, make_record("silc", "seg-ade20k", "ade-448", knobs, {"mIoU": 20.0}, "/d/ADE"))
    df = build_table(load_results(results), "main", "clip")
    labels = set(df.loc[df["metric"] == "mIoU", "benchmark"])
    assert labels == {"seg-ade20k (ade-448: dense_mode=naive)", "seg-ade20k (ade-448: dense_mode=maskclip)"}


def test_long_knob_values_are_labelled_by_hash(results: Path) -> None:
    long = {"crop": 448, "dense_mode": "naive", "transform": "Compose(" + "x" * 40 + ")"}
    write_record(results, make_record("silc", "seg-ade20k", "ade-448", long, {"mIoU": 20.0}, "/d/ADE"))
    df = build_table(load_results(results), "main", "clip")
    labels = set(df.loc[df["metric"] == "mIoU", "benchmark"])
    digest = hashlib.sha256(long["transform"].encode()).hexdigest()[:8]
    assert labels == {"seg-ade20k (ade-448: transform=None)", f"seg-ade20k (ade-448: transform=#{digest})"}


def test_two_records_for_one_cell_are_refused(results: Path, capsys) -> None:
    seg = {"crop": 448, "dense_mode": "naive"}
    write_record(
        results / "other-run", make_record("silc", "seg-ade20k", "ade-448", seg, {"mIoU": 1.0}, "/x/ADE")
    )
    with pytest.raises(UserError, match="conflicting records for model 'silc', benchmark 'seg-ade20k'"):
        build_table(load_results(results), "main", "clip")
    assert main(["table", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "conflicting records" in err and "/x/ADE" in err


def test_latex_is_a_tabular(results: Path) -> None:
    tex = table(results, "main", "latex")
    lines = tex.strip().splitlines()
    assert lines[0] == r"\begin{tabular}{lllrrr}" and lines[-1] == r"\end{tabular}"
    assert lines[1] == r"\toprule" and lines[3] == r"\midrule" and lines[-2] == r"\bottomrule"
    body = lines[4:-2]
    assert len(body) == 4
    for row in [lines[2], *body]:
        assert row.endswith(r"\\") and row.count("&") == 5
    assert lines[2] == r"benchmark & dataset & metric & silc & clip (baseline) & gain \\"
    assert body[2] == r"seg-ade20k & ADE & mIoU & 15.50 & 10.00 & +5.50 \\"


def test_cli_table_writes_file(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.tex"
    assert (
        main(
            [
                "table",
                "--results",
                str(results),
                "--format",
                "latex",
                "--layout",
                "ablation",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_text().startswith(r"\begin{tabular}{lrrrr}")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--baseline", "nope"], "--baseline 'nope': no records for that model"),
        (["--results", "/nonexistent/results"], "results folder does not exist"),
        (["--bootstrap", "1"], "--bootstrap must be 0 (no intervals) or >= 2"),
        (["--group", r"silc-s\d"], "needs a capturing group for the recipe name"),
        (["--group", "(unclosed"], "not a regular expression"),
    ],
)
def test_cli_table_bad_inputs(results: Path, capsys, args, needle) -> None:
    assert main(["table", "--results", str(results), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_cli_table_corrupt_record(results: Path, capsys) -> None:
    bad = results / "silc" / "broken.json"
    bad.write_text('{"model": "silc", ')
    assert main(["table", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.json: not a readable result record" in err


def test_a_plugin_harness_sets_its_rows_order_key_metrics_and_decimals(results: Path, monkeypatch) -> None:
    from benchmarks.registry import _REGISTRY, Harness

    class PluginHarness(Harness):
        name = "plugin-bench"
        description = "a third-party harness"
        protocols = {"p": {}}
        default_protocol = "p"
        key_metrics = ("score",)
        table_order = 1  # before every built-in benchmark
        metric_scale = "percent"

        def evaluate(self, *args):
            raise NotImplementedError

    monkeypatch.setitem(_REGISTRY, "plugin-bench", PluginHarness())
    for model, score in (("clip", 0.5), ("silc", 0.75)):
        record = make_record(model, "plugin-bench", "p", {}, {"score": score, "debug": 3.0}, "/d/plug")
        write_record(results, record)
    lines = table(results, "main").splitlines()
    # first row, only its key metric, two decimals as percentages although the values lie below 1
    assert lines[2] == "| plugin-bench | plug      | score    |   0.75 |              0.50 |   +0.25 |"
    assert not any("debug" in line for line in lines) and lines[3].startswith("| zeroshot-cls ")
