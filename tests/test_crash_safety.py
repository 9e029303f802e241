"""Crash safety: a process SIGKILLed inside the atomic write of a result record, a feature-cache entry, a checkpoint
or the cached world (the test hook ``SILC_BENCH_TEST_KILL_IN_WRITE``) leaves the previous complete file or none,
and the next run completes with nothing lost, nothing corrupt and no stale temporaries."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from benchmarks.claims import claim_path
from benchmarks.features import FeatureCache
from benchmarks.records import read_record
from silc.checkpoint import load_checkpoint
from silc.config import config_from_dict
from silc.io import KILL_ENV, atomic_write_text, remove_stale_temporaries, temporary_prefix
from silc.train import train
from silc_bench.app.references import reference_specs
from silc_bench.cli import main
from tests.train_fixtures import tiny_config, write_config, write_pairs_csv

ROOT = Path(__file__).resolve().parents[1]
# Writes argv[1] (kind argv[3]: a "file" through atomic_write, a "folder" through temporary_dir) under temporaries
# named as if by pid argv[2] on this host; prints "writing" once the temporary exists, finishes on a line on stdin.
WRITER = """\
import sys
from pathlib import Path
import silc.io as io
target, pid, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
io.temporary_prefix = lambda path: f".{path.name}.{io._host()}.{pid}."
def wait():
    print("writing", flush=True)
    sys.stdin.readline()
if kind == "file":
    io.atomic_write(target, lambda f: (wait(), f.write(b"done")))
else:
    with io.temporary_dir(target) as tmp:
        wait()
        (tmp / "x").write_text("done")
        tmp.rename(target)
"""


def killed(argv: list[str], target: str) -> None:
    """Run ``argv`` (``-m silc_bench`` arguments, or ``-c CODE``) in a subprocess with the kill hook aimed at
    ``target``; it must die by SIGKILL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_ENV: target}
    cmd = [sys.executable, *argv] if argv[0] == "-c" else [sys.executable, "-m", "silc_bench", *argv]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def temporaries(*folders: Path) -> list[Path]:
    """Every temporary of an atomic write under ``folders``."""
    return sorted(p for folder in folders for p in folder.rglob("*.tmp"))


def test_stale_temporaries_of_dead_writers_go_those_of_live_ones_stay(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    try:
        target = atomic_write_text(tmp_path / "r.json", "old\n")
        host = temporary_prefix(target).split(".")[-3]  # .r.json.<host>.<pid>.
        names = {
            "live": f".r.json.{host}.{live.pid}.abc_1.tmp",
            "dead": f".r.json.{host}.{int(dead.stdout)}.abc_2.tmp",
            "other host": f".r.json.elsewhere.{int(dead.stdout)}.abc_3.tmp",
            "other file": f".other.json.{host}.{int(dead.stdout)}.abc_4.tmp",
            "not ours": ".r.json.abc_5.tmp",
            "this process": f".r.json.{host}.{os.getpid()}.abc_6.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_text("partial")
        remove_stale_temporaries(tmp_path)
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {"r.json"} | {names[k] for k in ("live", "other host", "not ours", "this process")}
    finally:
        live.kill()
        live.wait()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_live_writers_temporary_survives_cleanup_though_its_name_looks_dead(
    tmp_path: Path, kind: str
) -> None:
    target, pid = tmp_path / "r.json", dead_pid()
    argv = [sys.executable, "-c", WRITER, str(target), str(pid), kind]
    writer = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        (tmp,) = temporaries(tmp_path)
        assert tmp.name.startswith(temporary_prefix(target).replace(f".{os.getpid()}.", f".{pid}."))
        remove_stale_temporaries(tmp_path)  # the name says: a dead writer on this host; its lock says: alive
        assert temporaries(tmp_path) == [tmp]
        writer.communicate("\n", timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0  # its rename found its temporary
    assert (target if kind == "file" else target / "x").read_text() == "done" and temporaries(tmp_path) == []


def test_a_temporary_removed_before_its_writer_locked_it_is_made_again(tmp_path: Path, monkeypatch) -> None:
    made, mkstemp = [], tempfile.mkstemp

    def raced(*args, **kwargs):  # a cleaner in another pid namespace takes it before the writer's lock
        fd, name = mkstemp(*args, **kwargs)
        if not made:
            Path(name).unlink()
        made.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", raced)
    atomic_write_text(tmp_path / "r.json", "new\n")
    assert len(made) == 2 and (tmp_path / "r.json").read_text() == "new\n" and temporaries(tmp_path) == []


def test_without_flock_writes_work_and_no_temporary_is_removed(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "r.json"
    stale = tmp_path / f"{temporary_prefix(target).replace(f'.{os.getpid()}.', f'.{dead_pid()}.')}abc.tmp"
    stale.write_text("partial")

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)  # nobody can tell a dead writer's temporary from a live one's
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and temporaries(tmp_path) == [stale]


@pytest.fixture(scope="module")
def eval_args(synth_root: Path) -> list[str]:
    return ["eval", "zeroshot-cls", "--model", reference_specs()[0], "--data", str(synth_root / "imagenet"),
            "--workers", "0"]  # fmt: skip


def test_killed_record_write_keeps_the_previous_record(eval_args, tmp_path: Path, capsys) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    args = [*eval_args, "--results", str(results), "--cache-dir", str(cache)]
    assert main(args) == 0
    (record,) = results.rglob("*.json")
    before = record.read_bytes()

    killed(
        [*args, "--rerun"], target=str(record)
    )  # after the new record's temporary is fsynced, before the rename
    assert record.read_bytes() == before  # the previous complete version
    (stale,) = temporaries(results)
    assert (
        stale.parent == record.parent and json.loads(stale.read_text())["metrics"]
    )  # killed just before rename
    assert claim_path(record).exists()  # it died holding the record's claim

    capsys.readouterr()
    assert main([*args, "--rerun"]) == 0  # neither the stale claim nor the temporary is in the way
    again = read_record(record)
    assert again.metrics == json.loads(before)["metrics"]
    assert temporaries(results, cache) == [] and not claim_path(record).exists()


def test_killed_cache_write_leaves_no_entry_and_recovers(eval_args, tmp_path: Path) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    args = [*eval_args, "--results", str(results), "--cache-dir", str(cache)]
    killed(args, target=str(cache))  # the first feature-cache entry
    assert list(cache.rglob("*.pt")) == [] and len(temporaries(cache)) == 1
    assert not list(results.rglob("*.json"))

    assert main(args) == 0
    entries = list(cache.rglob("*.pt"))
    assert entries and temporaries(results, cache) == []
    store = FeatureCache(cache)
    for entry in entries:  # each entry reads back (checksum and key verified by the loader)
        parts = json.loads(torch.load(entry, weights_only=True)["parts"])
        assert store.path(store.key(parts)) == entry and store.load(parts) is not None


def test_killed_checkpoint_write_resumes_to_the_same_weights(tmp_path: Path) -> None:
    pairs = write_pairs_csv(tmp_path / "pairs", n=16)
    cfg = tiny_config(pairs, train={"steps": 4, "save_every": 2})
    cfg_path = write_config(tmp_path / "cfg.yaml", cfg)
    run = tmp_path / "run"
    killed(["train", "--config", str(cfg_path), "--out", str(run)], target="step_00000004.pt")
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["latest.pt", "step_00000002.pt"]
    assert load_checkpoint(ckpts / "latest.pt")["step"] == 2  # the previous complete checkpoint
    assert len(temporaries(ckpts)) == 1

    assert main(["train", "--config", str(cfg_path), "--out", str(run), "--resume", "latest"]) == 0
    straight = tmp_path / "straight"
    train(config_from_dict(cfg), straight)
    resumed, reference = (
        load_checkpoint(ckpts / "latest.pt"),
        load_checkpoint(straight / "checkpoints" / "latest.pt"),
    )
    assert resumed["step"] == reference["step"] == 4
    for key in ("state_dict", "teacher", "head"):
        assert resumed[key].keys() == reference[key].keys()
        assert all(torch.equal(resumed[key][k], reference[key][k]) for k in reference[key]), key
    assert load_checkpoint(ckpts / "step_00000002.pt")["step"] == 2  # the earlier checkpoint is intact
    assert temporaries(run) == []


@pytest.mark.slow  # generates the tiny world twice
def test_killed_world_generation_leaves_no_half_world(tmp_path: Path, synth_root: Path, monkeypatch) -> None:
    from silc_bench.app.world_cache import ensure_world, world_dir

    monkeypatch.setenv("SILC_BENCH_WORLD_CACHE", str(tmp_path / "cache"))
    code = "from silc_bench.app.world_cache import ensure_world; ensure_world('tiny', 0)"
    killed(["-c", code], target=world_dir("tiny", 0).name)  # generated, not yet renamed into place
    assert not world_dir("tiny", 0).exists() and len(temporaries(tmp_path / "cache")) == 1

    world = ensure_world("tiny", 0)
    files = sorted(str(p.relative_to(world)) for p in world.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(synth_root)) for p in synth_root.rglob("*") if p.is_file())
    assert (world / "world.json").read_bytes() == (synth_root / "world.json").read_bytes()
    assert temporaries(tmp_path / "cache") == []
