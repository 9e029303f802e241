"""The README's first command, ``.venv/bin/silc-bench run`` with no arguments, prints the committed table
(tests/expected/default_run_table.md) with every record computed by that run; the check of it fails when a metric
changes and when an earlier run's records were reused. Regenerate the expected file with
``.venv/bin/python -m tests.default_run update``."""

from __future__ import annotations

from pathlib import Path

import pytest

from silc_bench.app.world_cache import world_dir
from tests.default_run import EXPECTED, cell, problems, run_readme_command

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = "10 record(s) in results/default (10 computed here, 15.6 s)\n"


@pytest.mark.slow
@pytest.mark.mm  # the default suite segments with mmseg
def test_readme_first_command_prints_the_expected_table(tmp_path: Path, synth_root: Path) -> None:
    # a world cache holding this session's tiny world (seed 0, this generator): what the command would generate
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / world_dir("tiny", 0).name).symlink_to(synth_root)
    proc = run_readme_command(tmp_path, tmp_path / "cache", tmp_path / "world")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert problems(proc.stdout, proc.stderr, EXPECTED.read_text()) == []
    assert len(list((tmp_path / "results" / "default").glob("*/*.json"))) == 10  # 2 models x 5 entries


def test_check_passes_the_expected_output() -> None:
    assert problems(EXPECTED.read_text(), SUMMARY, EXPECTED.read_text()) == []


def test_check_fails_on_a_changed_metric() -> None:
    expected = EXPECTED.read_text()
    lines = expected.splitlines()
    value = cell(expected, "zeroshot-cls", "acc1", "silc")
    i = next(i for i, line in enumerate(lines) if line.startswith("| zeroshot-cls") and " acc1 " in line)
    changed = lines[i].replace(f" {value} ", f" {float(value) + 1e-4:.4f} ", 1)
    assert changed != lines[i]
    printed = "\n".join([*lines[:i], changed, *lines[i + 1 :]]) + "\n"
    assert problems(printed, SUMMARY, expected) == [
        f"--- {EXPECTED.name}",
        "+++ printed",
        f"@@ -{i + 1} +{i + 1} @@",
        f"-{lines[i]}",
        f"+{changed}",
    ]


def test_check_fails_when_records_were_reused() -> None:
    expected = EXPECTED.read_text()
    assert problems(expected, "10 record(s) in results/default (3 computed here, 2.0 s)\n", expected) == [
        "7 of 10 records were reused from results/default (an earlier run), not computed by this one: run from "
        "a fresh clone, or move results/default away"
    ]
    assert problems(expected, "Traceback (most recent call last):\n", expected) == [
        "stderr has no 'N record(s) in DIR (M computed here, ...)' line: did the command finish?"
    ]


def test_readme_shows_the_expected_table() -> None:
    """The table under "Running benchmarks" in the README is the one the command prints."""
    readme = (ROOT / "README.md").read_text().splitlines()
    table = [line for line in EXPECTED.read_text().splitlines() if line.startswith("|")]
    start = readme.index(table[0])
    assert readme[start : start + len(table)] == table
