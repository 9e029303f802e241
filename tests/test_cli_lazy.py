"""The CLI is lazy: help imports no heavy stack, and training loads no evaluation stack (checked on sys.modules)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_fixtures import tiny_config, write_config, write_pairs_csv

REPO = Path(__file__).resolve().parents[1]
EVALUATION_STACK = ("benchmarks", "adapters", "clip_benchmark", "mmseg", "mmdet", "mmengine", "mmcv")
HEAVY = (
    "torch",
    "torchvision",
    "open_clip",
    "clip_benchmark",
    "mmseg",
    "mmdet",
    "mmengine",
    "mmcv",
    "sklearn",
    "pandas",
)

# Runs ``silc-bench ARGV`` in a fresh interpreter and prints the top-level packages it imported, as JSON.
PROBE = """
import json, sys
from silc_bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("MODULES=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
sys.exit(code or 0)
"""


def imported_packages(*argv: str, cwd: Path = REPO) -> set[str]:
    """Top-level packages imported by one ``silc-bench`` invocation (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


@pytest.mark.parametrize(
    "argv", [("--help",), ("train", "--help"), ("run", "--help"), ("eval", "--help"), ("table", "--help")]
)
def test_help_imports_no_heavy_package(argv: tuple[str, ...]) -> None:
    loaded = imported_packages(*argv)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    if argv[0] != "eval":  # only eval's help needs the harness registry (its typed options)
        assert not loaded & {"benchmarks", "adapters"}


def test_eval_help_of_one_benchmark_lists_its_typed_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "silc_bench", "eval", "seg-ade20k", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--dense-mode", "--bg-threshold", "--save-predictions", "--batch-size", "--no-cache"):
        assert flag in done.stdout
    assert "(protocol knob)" in done.stdout


def test_train_loads_no_evaluation_stack(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(write_pairs_csv(tmp_path / "data", n=8)))
    loaded = imported_packages(
        "train", "--config", str(config), "--out", str(tmp_path / "run"), "--set", "train.steps=1"
    )
    assert "torch" in loaded and "open_clip" in loaded  # it did train
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()
    assert not loaded & set(EVALUATION_STACK), sorted(loaded & set(EVALUATION_STACK))
