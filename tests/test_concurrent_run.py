"""Concurrent ``silc-bench run`` on one results folder: each record is computed once (per-record claims), a record
claimed by another process is taken up after its model's other records, and a claim left by a killed process blocks
nothing; an unwritable results folder is one line, a file system without ``flock`` runs without claims."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import adapters.loading
from benchmarks import claims
from benchmarks.claims import Claim, ClaimedElsewhere, claim_path, clear_stale
from benchmarks.records import read_records
from silc_bench.app.references import reference_specs
from silc_bench.app.suite_run import WorkItem, requeue
from silc_bench.cli import main
from tests.product_harness import CALLS_ENV

ROOT = Path(__file__).resolve().parents[1]
SUITE = """\
name: orchestration
benchmarks:
  - {benchmark: test-embed, data: set-a}
  - {benchmark: test-embed, protocol: long, data: set-b}
"""
# Holds the claim on argv[1] until the calls file argv[2] has argv[3] lines (exit 3 if not within 60 s), then
# copies argv[4] (if given) onto the record, as a concurrent run that computed it would, and releases; argv[3] = -1:
# hold until killed.
HOLDER = """\
import shutil, sys, time
from pathlib import Path
from benchmarks.claims import Claim
record, calls, lines, source = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
with Claim(record, wait=False):
    print("claimed", flush=True)
    deadline = time.monotonic() + 60
    while lines < 0 or len(calls.read_text().splitlines()) < lines:
        if time.monotonic() > deadline:
            sys.exit(3)  # the other records were not computed meanwhile
        time.sleep(0.05)
    if source:
        shutil.copyfile(source[0], record)
"""


def hold(record: Path, calls: Path, lines: int, source: Path | None = None) -> subprocess.Popen:
    """A process holding the claim on ``record`` (returns once it is held)."""
    argv = [
        sys.executable,
        "-c",
        HOLDER,
        str(record),
        str(calls),
        str(lines),
        *([str(source)] if source else []),
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def leftovers(*folders: Path) -> list[Path]:
    """Temporaries and claim files under ``folders``."""
    return [p for f in folders for p in f.rglob("*") if p.name.endswith((".tmp", ".claim"))]


@pytest.fixture
def orchestration(tmp_path: Path, monkeypatch) -> dict:
    """The two-entry test-embed suite on two folders of four PNGs, run on the bundled models."""
    rng = np.random.default_rng(0)
    for name in ("set-a", "set-b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "data" / name / f"{i}.png"
            )
    (tmp_path / "suite.yaml").write_text(SUITE)
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    monkeypatch.setenv(CALLS_ENV, str(calls))
    args = ["run", "--suite", str(tmp_path / "suite.yaml"), "--data-root", str(tmp_path / "data")]
    for spec in reference_specs():
        args += ["--model", spec]
    return {"args": args, "calls": calls, "tmp": tmp_path}


def first_record(orchestration: dict, capsys) -> tuple[Path, Path]:
    """Run once into a scratch folder; returns (that folder, the first work item's record: clip, short)."""
    scratch = orchestration["tmp"] / "scratch"
    assert main([*orchestration["args"], "--results", str(scratch)]) == 0
    capsys.readouterr()
    orchestration["calls"].write_text("")
    (record,) = [p for p in scratch.rglob("*.json") if p.parent.name == "clip" and ".short." in p.name]
    return scratch, record.relative_to(scratch)


def test_a_claim_is_exclusive_and_dies_with_its_owner(tmp_path: Path) -> None:
    record = tmp_path / "clip" / "r.json"
    holder = hold(record, tmp_path / "never", -1)
    with pytest.raises(ClaimedElsewhere) as err:
        Claim(record, wait=False)
    assert str(err.value) == f"{record}: being computed by pid {holder.pid}"
    holder.kill()
    holder.wait()
    assert claim_path(record).exists()  # the killed owner could not remove it
    with Claim(record, wait=False):  # the kernel dropped its lock
        assert claim_path(record).read_text() == f"{os.getpid()}\n"
    assert not claim_path(record).exists()
    holder = hold(record, tmp_path / "never", -1)
    holder.kill()
    holder.wait()
    clear_stale(record)
    assert list(tmp_path.rglob("*")) == [tmp_path / "clip"]


# Takes the claim on argv[1], forks a child that outlives it (a DataLoader worker stuck at exit) and prints the
# child's pid once the child runs, then waits to be killed.
FORKING_HOLDER = """\
import os, sys, time
from pathlib import Path
from benchmarks.claims import Claim
claim = Claim(Path(sys.argv[1]), wait=False)
ready, started = os.pipe()
child = os.fork()
if child == 0:
    os.write(started, b"1")  # the fork hooks have run by now
    time.sleep(120)
    os._exit(0)
os.read(ready, 1)
print(child, flush=True)
time.sleep(120)
"""


def test_a_forked_child_that_outlives_its_killed_owner_does_not_keep_the_claim(tmp_path: Path) -> None:
    record = tmp_path / "clip" / "r.json"
    owner = subprocess.Popen(
        [sys.executable, "-c", FORKING_HOLDER, str(record)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    child = int(owner.stdout.readline())
    try:
        with pytest.raises(ClaimedElsewhere):
            Claim(record, wait=False)
        owner.kill()
        owner.wait()
        os.kill(child, 0)  # the orphan lives on
        with Claim(record, wait=False):  # and does not hold the dead owner's claim
            pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_a_deferred_item_goes_after_the_queued_items_of_its_model() -> None:
    queue = [WorkItem(0, 2), WorkItem(1, 0), WorkItem(1, 1)]
    requeue(queue, WorkItem(0, 0))
    assert queue == [WorkItem(0, 2), WorkItem(0, 0), WorkItem(1, 0), WorkItem(1, 1)]
    queue = [WorkItem(2, 0)]
    requeue(queue, WorkItem(1, 1))  # none of its model left: next, while its model is loaded
    assert queue == [WorkItem(1, 1), WorkItem(2, 0)]


def test_a_claimed_record_is_deferred_then_reused(orchestration: dict, capsys, monkeypatch) -> None:
    scratch, rel = first_record(orchestration, capsys)
    results = orchestration["tmp"] / "results"
    loads, load = [], adapters.loading.load_encoder

    def counted(spec: str, **kwargs):
        loads.append(spec)
        return load(spec, **kwargs)

    monkeypatch.setattr(adapters.loading, "load_encoder", counted)
    holder = hold(results / rel, orchestration["calls"], 1, scratch / rel)  # a concurrent run computing it
    assert main([*orchestration["args"], "--results", str(results)]) == 0
    assert holder.wait(timeout=60) == 0
    assert f"4 record(s) in {results} (3 computed here" in capsys.readouterr().err
    calls = [json.loads(line) for line in orchestration["calls"].read_text().splitlines()]
    assert [(c["model"], c["prompt"]) for c in calls] == [
        ("clip", "a drawing"),
        ("silc", "a photo"),
        ("silc", "a drawing"),
    ]
    assert loads == reference_specs()  # the deferred record came back before the next model: no reload
    assert (results / rel).read_bytes() == (
        scratch / rel
    ).read_bytes()  # reused as the other process wrote it
    assert len(read_records(results)) == 4 and leftovers(results) == []


def test_a_claim_left_by_a_killed_run_does_not_block(orchestration: dict, capsys) -> None:
    _, rel = first_record(orchestration, capsys)
    results = orchestration["tmp"] / "results"
    holder = hold(results / rel, orchestration["calls"], -1)
    holder.kill()
    holder.wait()
    assert claim_path(results / rel).exists()
    assert main([*orchestration["args"], "--results", str(results)]) == 0
    assert f"4 record(s) in {results} (4 computed here" in capsys.readouterr().err
    assert len(read_records(results)) == 4 and leftovers(results) == []


@pytest.mark.slow
@pytest.mark.mm
def test_two_concurrent_runs_compute_each_record_once(tmp_path: Path, synth_root: Path, monkeypatch) -> None:
    from silc_bench.app.world_cache import world_dir

    monkeypatch.setenv("SILC_BENCH_WORLD_CACHE", str(tmp_path / "worlds"))
    world_dir("tiny", 0).parent.mkdir(parents=True)
    world_dir("tiny", 0).symlink_to(synth_root, target_is_directory=True)  # the default suite's world, cached
    results, cache = tmp_path / "results", tmp_path / "features"
    env = {**os.environ, "SILC_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "silc_bench", "run", "--results", str(results), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    summaries = [re.search(r"(\d+) record\(s\) in (\S+) \((\d+) computed here", err) for _, err in outs]
    assert [(s[1], s[2]) for s in summaries] == [("10", str(results))] * 2
    computed = [int(s[3]) for s in summaries]
    assert sum(computed) == 10 and min(computed) > 0  # each record once, and the work was shared
    tables = [[line for line in out.splitlines() if line.startswith("|")] for out, _ in outs]
    assert tables[0] == tables[1]
    assert {line.split("|")[1].strip() for line in tables[0][2:]} == {
        "zeroshot-cls", "retrieval", "fewshot", "seg-ade20k", "det-ovcoco"
    }  # fmt: skip
    assert len(read_records(results)) == 10 and leftovers(results, cache) == []


def test_an_unwritable_results_folder_is_one_line(orchestration: dict, capsys, monkeypatch) -> None:
    results, real_open = orchestration["tmp"] / "results", os.open

    def read_only(path, flags, *args, **kwargs):  # tests run as root too, where chmod protects nothing
        if str(path).endswith(".claim"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert main([*orchestration["args"], "--results", str(results)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"silc-bench: error: {results / 'clip'}: cannot create files in this results folder (Read-only file "
        "system); it must be writable"
    )
    assert orchestration["calls"].read_text() == ""


def test_a_file_system_without_flock_runs_without_claims(orchestration: dict, caplog, monkeypatch) -> None:
    results = orchestration["tmp"] / "results"

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(claims, "_WITHOUT_FLOCK", set())
    with caplog.at_level(logging.WARNING, logger="benchmarks.claims"):
        assert main([*orchestration["args"], "--results", str(results)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "benchmarks.claims"]
    assert warnings == [
        f"{results / 'clip'}: the file system does not support flock (No locks available); records are computed "
        "without claims, so concurrent runs into this folder may compute a record twice"
    ]  # once, though each of the 4 records tried
    assert len(read_records(results)) == 4 and leftovers(results) == []
