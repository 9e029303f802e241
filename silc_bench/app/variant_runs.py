"""Train ablation variants as separate ``silc-bench train`` processes, as many at once as the cores allow.

Each process gets a fixed torch thread count (``OMP_NUM_THREADS``), so a variant's trajectory does not depend on
how many cores the machine has or on what else runs; its log goes to ``<run>/train.log``. A run folder that
already holds the finished run of the same command is reused, and one that holds an interrupted run of it goes on
from its last checkpoint (step-exact), so an interrupted regression or experiment resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.regress_spec import TrainRun, Variant
from silc.io import atomic_write_text

FIXED_OVERRIDES = ("data.kind=synthetic", "train.deterministic=true", "train.progress=false")
STARTED = "command.started.json"  # the identity of the run a folder holds, written before its first step


@dataclass(frozen=True)
class VariantRun:
    """A finished training process: where it wrote, its exit status, wall time and the tail of its log."""

    variant: str
    run_dir: Path
    returncode: int
    seconds: float
    log_tail: str


class TrainingFailed(RuntimeError):
    """A training process exited non-zero: reported with its log tail (exit 1: a regression, not bad input)."""


def raise_on_failures(runs: list[VariantRun]) -> None:
    """Raise :class:`TrainingFailed` with every failed run's log tail, if any run failed."""
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        tails = "\n".join(f"--- {r.variant} ({r.run_dir / 'train.log'}):\n{r.log_tail}" for r in bad)
        raise TrainingFailed(f"{len(bad)} run(s) failed to train:\n{tails}")


def default_jobs(threads: int) -> int:
    """Processes to run at once: the usable cores divided by the threads each one gets."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // threads)


def train_command(
    variant: Variant, run: TrainRun, seed: int, world: Path, out: Path, device: str
) -> list[str]:
    """The ``silc-bench train`` command line of ``variant`` for ``run`` (``seed`` unless the variant has its own)."""
    overrides = [
        f"train.steps={run.steps}",
        f"seed={seed if variant.seed is None else variant.seed}",
        *run.overrides,
        *variant.overrides,
        *FIXED_OVERRIDES,
        f"data.path={world}",
        f"train.device={device}",
    ]
    command = [
        sys.executable,
        "-m",
        "silc_bench",
        "train",
        "--config",
        str(variant.config),
        "--out",
        str(out),
    ]
    return command + [arg for o in overrides for arg in ("--set", o)]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    return env


def trainer_source_hash() -> str:
    """sha256 of the trainer's source files (``silc/``): a reused run must come from the same training code."""
    import silc
    from silc_bench.app.world_cache import source_sha256

    return source_sha256(Path(silc.__file__).resolve().parent)


def run_identity(
    variant: Variant, run: TrainRun, seed: int, world: Path, out: Path, device: str = "cpu"
) -> dict[str, object]:
    """What :func:`train_variants` checks before reusing or resuming the run of ``variant`` in ``out``."""
    command = train_command(variant, run, seed, world, out / variant.name, device)
    return _identity(command, merged_config(command))


def _identity(command: list[str], config: dict) -> dict[str, object]:
    """What makes two runs the same: the command, the merged config (its YAML files may change) and the trainer."""
    merged = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return {"command": command, "config_sha256": merged, "trainer_sha256": trainer_source_hash()}


def _same_run(record: Path, identity: dict[str, object]) -> bool:
    try:
        return record.is_file() and json.loads(record.read_text()) == identity
    except (OSError, json.JSONDecodeError):
        return False


def finished(run_dir: Path, identity: dict[str, object], steps: int) -> bool:
    """``run_dir`` holds the completed run of ``identity`` (:func:`_identity`): its record and final checkpoint."""
    final = run_dir / "checkpoints" / f"step_{steps:08d}.pt"
    return final.is_file() and _same_run(run_dir / "command.json", identity)


def resumable(run_dir: Path, identity: dict[str, object]) -> bool:
    """``run_dir`` holds an interrupted run of ``identity`` with at least one checkpoint to go on from."""
    checkpoints = run_dir / "checkpoints"
    return _same_run(run_dir / STARTED, identity) and any(checkpoints.glob("step_*.pt"))


def merged_config(command: list[str]) -> dict:
    """The merged training config ``command`` trains (its ``--config`` with every ``--set``)."""
    from silc.config import load_config, to_dict

    config = command[command.index("--config") + 1]
    overrides = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    return to_dict(load_config(config, overrides))


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def train_variants(
    variants: tuple[Variant, ...],
    run: TrainRun,
    seed: int,
    world: Path,
    out: Path,
    threads: int,
    jobs: int,
    device: str = "cpu",
) -> list[VariantRun]:
    """Train every variant into ``out/<name>`` (``jobs`` processes at once, in the given order; a finished run of
    the same command, config and trainer is reused, an interrupted one goes on from its last checkpoint, anything
    else there is replaced); progress lines go to stderr.
    Returns one :class:`VariantRun` per variant, in the given order."""
    pending = list(variants)
    running: dict[str, tuple[subprocess.Popen, Path, float, dict[str, object]]] = {}
    done: dict[str, VariantRun] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                v = pending.pop(0)
                run_dir = out / v.name
                command = train_command(v, run, seed, world, run_dir, device)
                identity = _identity(command, merged_config(command))
                if finished(run_dir, identity, run.steps):
                    done[v.name] = VariantRun(v.name, run_dir, 0, 0.0, "")
                    print(f"    {v.name}: {run.steps} steps reused from {run_dir}", file=sys.stderr)
                    continue
                if resumable(run_dir, identity):
                    command = [*command, "--resume", "latest"]
                    print(f"    {v.name}: resuming from its last checkpoint in {run_dir}", file=sys.stderr)
                else:
                    if run_dir.exists():
                        shutil.rmtree(run_dir)
                    run_dir.mkdir(parents=True)
                    atomic_write_text(run_dir / STARTED, json.dumps(identity))
                with open(run_dir / "train.log", "a", encoding="utf-8") as log:
                    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(threads))
                running[v.name] = (proc, run_dir, time.perf_counter(), identity)
            time.sleep(0.2)
            for name, (proc, run_dir, start, identity) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                seconds = time.perf_counter() - start
                if proc.returncode == 0:
                    atomic_write_text(run_dir / "command.json", json.dumps(identity))
                done[name] = VariantRun(name, run_dir, proc.returncode, seconds, _tail(run_dir / "train.log"))
                state = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"    {name}: {run.steps} steps {state} in {seconds:.0f} s", file=sys.stderr)
    finally:  # an interrupt (or an error here) leaves no training process behind
        for proc, *_ in running.values():
            proc.kill()
            proc.wait()
    return [done[v.name] for v in variants]
