"""Mutation testing of the ablation regression: copy the repository, plant a one-line bug, run the regression.

A regression is only as good as the bugs it catches. ``tests/mutants.yaml`` lists one-line trainer and evaluation
bugs; ``tests/test_mutants.py`` applies each to a fresh copy of the code (``copy_repo`` + ``apply_mutant``) and
runs ``silc-bench regress`` there (``run_regress``), which must fail (exit 1) on every mutant and pass (exit 0) on
the clean copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[1]
MUTANTS_FILE = Path(__file__).with_name("mutants.yaml")
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Mutant:
    """One planted bug: the line ``find`` (whitespace-stripped, a whole line) of ``file`` becomes ``replace``."""

    name: str
    bug: str
    file: str
    find: str
    replace: str


class RegressRun(NamedTuple):
    """What one ``silc-bench regress`` run gave: its exit status, wall time and the tail of its output."""

    returncode: int
    seconds: float
    output_tail: str


def load_mutants(path: Path = MUTANTS_FILE) -> list[Mutant]:
    """The mutants of ``path`` in file order (each entry's keys must be exactly Mutant's fields)."""
    return [Mutant(**entry) for entry in yaml.safe_load(path.read_text(encoding="utf-8"))]


def repo_files(src: Path) -> list[str]:
    """Repo-relative paths git would ship: tracked plus untracked-but-not-ignored files (no .venv, .git, results
    other than the committed ones: results/reference/, results/paper_synth/), skipping tracked files deleted in
    the working tree."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({name for name in listing.split("\0") if name and (src / name).is_file()})


def copy_repo(src: Path, dst: Path) -> Path:
    """Copy ``src``'s ``repo_files`` into ``dst`` (created; must not exist yet) and return ``dst``.

    Why a file list rather than copytree: the copy must be the code under review, without the virtual
    environment, local results or caches, yet with the committed reference results the regression reads.
    """
    dst.mkdir(parents=True)
    for name in repo_files(src):
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / name, target)
    return dst


def mutated_text(text: str, mutant: Mutant) -> str:
    """``text`` with the one line equal to ``mutant.find`` (once stripped) replaced, its indentation kept.

    Raises AssertionError naming the mutant when the anchor line is missing or not unique, so a refactor that
    moves the code under a mutant fails loudly instead of silently testing nothing.
    """
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == mutant.find]
    assert len(hits) == 1, (
        f"mutant {mutant.name!r}: the anchor line occurs {len(hits)} times in {mutant.file} (expected once); "
        f"update 'find' in {MUTANTS_FILE.name} to the code's current line: {mutant.find!r}"
    )
    line = lines[hits[0]]
    indent = line[: len(line) - len(line.lstrip())]
    newline = line[len(line.rstrip("\r\n")) :]
    lines[hits[0]] = f"{indent}{mutant.replace}{newline}"
    return "".join(lines)


def apply_mutant(root: Path, mutant: Mutant) -> Path:
    """Plant ``mutant`` in the copy at ``root`` (see ``mutated_text``); returns the mutated file's path."""
    path = root / mutant.file
    assert path.is_file(), f"mutant {mutant.name!r}: {mutant.file} does not exist under {root}"
    path.write_text(mutated_text(path.read_text(encoding="utf-8"), mutant), encoding="utf-8")
    return path


def copy_env(root: Path) -> dict[str, str]:
    """The environment that makes a subprocess import the copy's packages instead of the editable install.

    The editable install's finder is appended to ``sys.meta_path``, after the path-based finder, so a package
    found on ``PYTHONPATH`` wins; the copy goes first so it also shadows any checkout already on the path.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def regress_command(work: Path) -> list[str]:
    """The regression the mutants must fail: the ablation suite's fingerprint tier, outputs under ``work``."""
    return [
        sys.executable,
        "-m",
        "silc_bench",
        "regress",
        "--suite",
        "ablations",
        "--tier",
        "fingerprints",
        "--work",
        str(work),
    ]


def run_regress(root: Path, work: Path) -> RegressRun:
    """Run ``regress_command(work)`` in the copy at ``root`` (cwd and ``copy_env``); stdout and stderr merged."""
    start = time.perf_counter()
    proc = subprocess.run(
        regress_command(work),
        cwd=root,
        env=copy_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    return RegressRun(proc.returncode, time.perf_counter() - start, proc.stdout[-TAIL_CHARS:])


def report_path(work: Path) -> Path:
    """Where the Markdown report goes: ``$SILC_MUTATION_REPORT`` if set, else ``results/mutation-report.md`` under
    the mutation test's work folder."""
    return Path(os.environ.get("SILC_MUTATION_REPORT") or work / "results" / "mutation-report.md")


def caught(run: RegressRun) -> bool:
    """A mutant is caught only by exit 1 (something moved); exit 2 (bad input) or a crash is an error, no catch."""
    return run.returncode == 1


def mutation_score(outcomes: list[tuple[Mutant, RegressRun]]) -> float:
    """The fraction of ``outcomes`` (mutant, its regression run) that the regression caught."""
    return sum(caught(run) for _, run in outcomes) / len(outcomes) if outcomes else 0.0


def report_markdown(clean: RegressRun | None, outcomes: list[tuple[Mutant, RegressRun]]) -> str:
    """The mutation report: the command, the clean run's verdict, one row per mutant, the mutation score."""
    command = "python " + " ".join(regress_command(Path("WORK"))[1:])
    lines = ["# Mutation testing of the ablation regression", "", f"Command: `{command}`", ""]
    if clean is not None:
        verdict = "pass" if clean.returncode == 0 else "FAIL"
        lines += [f"Clean code: {verdict} (rc {clean.returncode}, {clean.seconds:.0f} s)", ""]
    lines += ["| mutant | bug | caught | rc | seconds |", "|---|---|---|---|---:|"]
    for mutant, run in outcomes:
        verdict = "yes" if caught(run) else "no (survived)" if run.returncode == 0 else "no (error)"
        bug = mutant.bug.replace("|", "\\|")
        lines.append(f"| {mutant.name} | {bug} | {verdict} | {run.returncode} | {run.seconds:.0f} |")
    killed = sum(caught(run) for _, run in outcomes)
    score = f"Mutation score: {killed}/{len(outcomes)} = {100 * mutation_score(outcomes):.0f} %"
    return "\n".join([*lines, "", score, ""])
