"""The throughput benchmark end to end on the tiny world: its table, and its refusal of metrics that differ."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from silc_bench.perf import eval_throughput
from tests.conftest import TINY_MODEL_CONFIG

ROW = re.compile(
    r"\| tiny \| (?P<task>\w+) \| (?P<workers>\d) \| (?P<cb>[\d.]+) \| (?P<first>[\d.]+) \| \*\*(?P<ratio>[\d.]+)x\*\* "
    r"\| (?P<of_limit>[\d.]+) \| (?P<limit>[\d.]+) \| (?P<cached>\d+)x \| (?P<placement>[^|]+) \|"
)


def args(world: Path, *more: str) -> list[str]:
    return [
        "--world",
        str(world),
        "--models",
        f"tiny=openclip:{TINY_MODEL_CONFIG}",
        "--batch-size",
        "16",
        *more,
    ]


def test_the_table_has_a_row_per_task_and_workers_with_consistent_ratios(
    synth_root: Path, tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a budget of 2 threads, so that a loader process can be weighed against them
    try:
        check_table(synth_root, tmp_path)
    finally:
        torch.set_num_threads(threads)


def check_table(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    assert eval_throughput.main(args(synth_root, "--workers", "1", "--out", str(out))) == 0
    text = out.read_text()
    assert "preset tiny" in text and "metrics equal to clip_benchmark's within 1e-06" in text
    rows = [m.groupdict() for m in ROW.finditer(text)]
    assert [(r["task"], r["workers"]) for r in rows] == [("zeroshot", "1"), ("retrieval", "1")]
    for r in rows:
        assert float(r["ratio"]) == pytest.approx(
            float(r["first"]) / float(r["cb"]), abs=0.01 + 0.05 * float(r["ratio"])
        )
        assert float(r["of_limit"]) == pytest.approx(
            float(r["first"]) / float(r["limit"]), abs=0.01 + 0.05 * float(r["of_limit"])
        )
    # 128 val images (100 test images) in batches of 16: the first two batches measure, the costs choose a plan
    assert all(not r["placement"].strip().startswith("threads (nothing to choose") for r in rows)


def test_metrics_that_differ_from_clip_benchmark_stop_the_benchmark(synth_root: Path, monkeypatch) -> None:
    ours = eval_throughput._ours

    def off_by_one_image(*a, **k):
        ev = ours(*a, **k)
        ev.metrics["acc1"] += 1 / 128
        return ev

    monkeypatch.setattr(eval_throughput, "_ours", off_by_one_image)
    with pytest.raises(SystemExit) as stop:
        eval_throughput.main(args(synth_root, "--workers", "0", "--tasks", "zeroshot"))
    assert str(stop.value) == "zeroshot, workers 0, first: metrics differ from clip_benchmark's by 0.0078125"
