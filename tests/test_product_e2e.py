"""End to end through the real CLI: fresh world -> train tiny CLIP and SiLC -> run (killed, resumed) -> table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESSES = ("zeroshot-cls", "retrieval", "fewshot", "seg-ade20k", "det-ovcoco")
TRAIN_SET = ["train.steps=3", "train.batch_size=8", "train.progress=false", "data.num_workers=0"]


def cli(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "silc_bench", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    if check:
        assert proc.returncode == 0, f"silc-bench {' '.join(args)}: {proc.stderr[-3000:]}"
    return proc


def table_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("|")]


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))]


@pytest.mark.slow
@pytest.mark.mm
def test_world_train_run_kill_resume_table(tmp_path: Path) -> None:
    env = {**os.environ, "SILC_BENCH_CACHE": str(tmp_path / "features"), "OMP_NUM_THREADS": "1"}
    world = tmp_path / "world"
    cli("data", "synth", "--out", str(world), "--preset", "tiny", env=env)
    for name in ("clip", "silc"):
        sets = [x for s in [*TRAIN_SET, f"data.path={world}"] for x in ("--set", s)]
        cli("train", "--config", f"configs/synth/{name}.yaml", "--out", str(tmp_path / name), *sets, env=env)

    results = tmp_path / "results"
    run = ["run", "--model", f"clip={tmp_path / 'clip'}", "--model", f"silc={tmp_path / 'silc'}"]
    run += ["--data-root", str(world), "--results", str(results), "--device", "cpu"]
    # killed mid-way (SIGKILL: no cleanup at all) once the first record is on disk
    proc = subprocess.Popen([sys.executable, "-m", "silc_bench", *run], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while not list(results.rglob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = records(results)
    assert 1 <= len(partial) < 2 * len(HARNESSES)

    done = cli(*run, env=env)
    final = records(results)
    keys = [(r["model"], r["benchmark"], r["protocol_name"]) for r in final]
    assert len(keys) == len(set(keys)) == 2 * len(HARNESSES)
    assert {(m, b) for m, b, _ in keys} == {(m, b) for m in ("clip", "silc") for b in HARNESSES}
    assert f"({2 * len(HARNESSES) - len(partial)} computed here" in done.stderr
    for r in partial:  # records written before the kill were kept, not recomputed
        assert r in final

    again = cli(*run, env=env)
    assert "(0 computed here" in again.stderr
    assert records(results) == final
    assert table_lines(again.stdout) == table_lines(done.stdout)  # the same comparison table

    table = cli("table", "--results", str(results), env=env).stdout
    for bench in HARNESSES:
        assert f"| {bench} " in table
    assert "clip (baseline)" in table and "gain" in table
