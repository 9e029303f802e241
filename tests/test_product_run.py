"""``silc-bench run`` orchestration: records per (model x entry), skipping, resuming, errors, torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from benchmarks.records import read_records
from silc_bench.cli import main
from tests.product_harness import CALLS_ENV, INTERRUPT_ENV

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "silc" / "model_configs" / "silc-tiny-vit.json"
SUITE = """\
name: orchestration
benchmarks:
  - {benchmark: test-embed, data: set-a}
  - {benchmark: test-embed, protocol: long, data: set-b}
"""


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two fixed tiny open_clip weight files (seeded), so fingerprints are stable across loads."""
    out = tmp_path_factory.mktemp("weights")
    cfg = json.loads(TINY.read_text())
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg)
        files.append(out / f"m{seed}.pt")
        torch.save(model.state_dict(), files[-1])
    return files[0], files[1]


@pytest.fixture
def env(tmp_path: Path, weights, monkeypatch) -> dict:
    rng = np.random.default_rng(0)
    for name in ("set-a", "set-b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv(CALLS_ENV, str(calls))
    models = [f"clip=openclip:{TINY}@{weights[0]}", f"silc=openclip:{TINY}@{weights[1]}"]
    args = [
        "run",
        "--suite",
        str(suite),
        "--data-root",
        str(tmp_path / "data"),
        "--results",
        str(tmp_path / "res"),
    ]
    for m in models:
        args += ["--model", m]
    return {"args": args, "calls": calls, "results": tmp_path / "res", "tmp": tmp_path}


def error_line(capsys) -> str:
    """The error the CLI printed: the last stderr line (progress bars may precede it), one line long."""
    line = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert line.startswith("silc-bench: error: ")
    return line


def n_calls(env) -> int:
    return len(env["calls"].read_text().splitlines()) if env["calls"].exists() else 0


def test_run_writes_one_record_per_model_and_entry_then_skips(env, capsys) -> None:
    assert main(env["args"]) == 0
    out = capsys.readouterr().out
    records = read_records(env["results"])
    assert sorted((r.model, r.protocol_name) for r in records) == [
        ("clip", "long"),
        ("clip", "short"),
        ("silc", "long"),
        ("silc", "short"),
    ]
    assert n_calls(env) == 4
    assert "| test-embed (long)" in out and "| test-embed (short)" in out and "clip (baseline)" in out
    before = {p: p.read_bytes() for p in env["results"].rglob("*.json")}
    assert main(env["args"]) == 0  # nothing new to compute
    assert n_calls(env) == 4
    assert {p: p.read_bytes() for p in env["results"].rglob("*.json")} == before
    assert main([*env["args"], "--rerun"]) == 0
    assert n_calls(env) == 8


def test_interrupted_run_resumes_without_duplicates(env, monkeypatch, capsys) -> None:
    monkeypatch.setenv(INTERRUPT_ENV, "1")  # Ctrl-C during the second evaluation
    assert main(env["args"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(read_records(env["results"])) == 1
    assert not [
        p for p in env["results"].rglob("*") if p.is_file() and p.suffix != ".json"
    ]  # no partial file
    monkeypatch.delenv(INTERRUPT_ENV)
    assert main(env["args"]) == 0
    records = read_records(env["results"])
    assert len(records) == 4 and len({(r.model, r.protocol_name) for r in records}) == 4
    assert n_calls(env) == 4  # the first record was not recomputed


def test_reused_record_from_other_weights_is_refused(env, weights, capsys) -> None:
    assert main(env["args"]) == 0
    args = list(env["args"])
    args[args.index(f"clip=openclip:{TINY}@{weights[0]}")] = f"clip=openclip:{TINY}@{weights[1]}"
    capsys.readouterr()
    assert main(args) == 2
    assert "computed from other weights" in error_line(capsys)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            ("--suite", "no-such-suite"),
            "unknown suite 'no-such-suite'; known: ablations, default, ovss8, ovss8_clearclip",
        ),
        (("--model", "x=/no/such/checkpoint.pt"), "/no/such/checkpoint.pt: no such file or directory"),
        (("--baseline", "nobody"), "--baseline 'nobody': no --model has that alias"),
        (("--bootstrap", "1"), "--bootstrap must be 0 (no intervals) or >= 2"),
    ],
)
def test_bad_inputs_are_one_line_errors(env, capsys, change, needle) -> None:
    args = list(env["args"])
    if change[0] == "--model":
        args = [*args[: args.index("--model")], *change]
    elif change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    assert main(args) == 2
    assert needle in error_line(capsys)
    assert n_calls(env) == 0


def test_missing_dataset_folder_is_listed_before_compute(env, capsys) -> None:
    args = list(env["args"])
    args[args.index("--data-root") + 1] = str(env["tmp"] / "nowhere")
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("silc-bench: suite 'orchestration' cannot run on")
    assert any("nowhere/set-a: folder does not exist" in x for x in lines)
    assert any("nowhere/set-b: folder does not exist" in x for x in lines)
    assert (
        lines[-1].startswith("silc-bench: error: ")
        and "2 problem(s) listed above; nothing was computed" in lines[-1]
    )
    assert n_calls(env) == 0


def test_corrupt_existing_record_is_an_error(env, capsys) -> None:
    assert main(env["args"]) == 0
    victim = sorted(env["results"].rglob("*.json"))[0]
    victim.write_text("{")
    capsys.readouterr()
    assert main(env["args"]) == 2
    assert f"{victim}: not a readable result record" in error_line(capsys)


def test_a_preflight_failure_stops_every_rank_with_exit_2(env) -> None:
    driver = env["tmp"] / "driver.py"
    driver.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport tests.product_harness  # noqa: F401\n"
        "from silc_bench.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    args = list(env["args"])
    args[args.index("--data-root") + 1] = str(env["tmp"] / "nowhere")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks = [
        subprocess.Popen(
            [sys.executable, str(driver), *args, "--device", "cpu"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "OMP_NUM_THREADS": "1",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            },
        )
        for rank in range(2)
    ]
    try:
        errs = [proc.communicate(timeout=120)[1] for proc in ranks]
    finally:
        for proc in ranks:
            proc.kill()
            proc.wait()
    assert [proc.returncode for proc in ranks] == [2, 2], errs[0][-2000:] + errs[1][-2000:]
    expected = f"silc-bench: error: {env['tmp'] / 'nowhere'}: 2 problem(s) listed above; nothing was computed"
    assert [err.strip().splitlines()[-1] for err in errs] == [expected, expected]
    assert [err.count("cannot run on") for err in errs] == [1, 0]  # the preflight ran on rank 0 only
    assert n_calls(env) == 0


def test_no_arguments_without_bundled_checkpoints_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("silc_bench.app.references.REFERENCE_DIR", tmp_path)
    assert main(["run"]) == 2
    assert f"{tmp_path / 'clip'}: bundled reference checkpoint missing" in error_line(capsys)
