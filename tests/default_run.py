"""The README's first command, ``.venv/bin/silc-bench run`` with no arguments, and the check of what it prints
against the committed ``tests/expected/default_run_table.md`` (tests/test_readme_command.py and .ci/run):

    .venv/bin/python -m tests.default_run check    # run it here (.ci/run: the clone's root) and check its table
    .venv/bin/python -m tests.default_run update   # run it in a scratch folder and rewrite the expected file

The comparison is exact text. Measured on the default suite: the records are bit-identical with 1 or 2 threads
(and the encoders' outputs with 1, 2 or 4), but kernels of another instruction-set level move embeddings by ~1e-7,
enough to flip one few-shot prediction (scalar instead of AVX2 kernels: clip's 5-shot mean 0.1224 -> 0.1250). So
the command runs with torch's, MKL's, oneDNN's and OpenBLAS's kernels pinned to their AVX2 code paths, meant to
give every x86-64 machine with AVX2 the same numbers (the pins leave an AVX2 machine's numbers unchanged; not yet
measured on an AVX-512 one); and on the CPU, with an empty feature cache, so every number is computed by the code
under test.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

EXPECTED = Path(__file__).resolve().parent / "expected" / "default_run_table.md"
# The numerical kernels pinned to the AVX2 code paths (each variable is read: a lower level changes the numbers).
PINNED_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
# the summary `silc-bench run` prints on stderr before the table
SUMMARY = re.compile(r"^(\d+) record\(s\) in (.+) \((\d+) computed here, ")


def run_readme_command(
    cwd: Path, cache: Path, world_cache: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``silc-bench run`` (this environment's console script, no arguments) from ``cwd``, so its records go to
    ``cwd/results/default``; an empty feature cache under ``cache``, the world cache ``world_cache`` (default: the
    user's); on the CPU (the expected values are CPU numbers), with the kernels pinned (``PINNED_KERNELS``)."""
    env = {
        **os.environ,
        **PINNED_KERNELS,
        "SILC_BENCH_CACHE": str(cache / "features"),
        "CUDA_VISIBLE_DEVICES": "",
    }
    if world_cache is not None:
        env["SILC_BENCH_WORLD_CACHE"] = str(world_cache)
    command = [str(Path(sys.executable).parent / "silc-bench"), "run"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def problems(stdout: str, stderr: str, expected: str) -> list[str]:
    """Why the command's output is not the expected one: the lines of the table that differ (a unified diff) and
    records it did not compute itself (an earlier run's folder reused). Empty when it is."""
    return table_diff(expected, stdout) + not_computed(stderr)


def table_diff(expected: str, printed: str) -> list[str]:
    """The lines of ``printed`` that differ from ``expected`` (a unified diff without context); empty when equal."""
    diff = difflib.unified_diff(
        expected.splitlines(), printed.splitlines(), EXPECTED.name, "printed", lineterm="", n=0
    )
    return list(diff)


def not_computed(stderr: str) -> list[str]:
    """A problem when the run's summary line is missing or says some records were reused, not computed."""
    summaries = [m for line in stderr.replace("\r", "\n").splitlines() if (m := SUMMARY.match(line))]
    if not summaries:
        return ["stderr has no 'N record(s) in DIR (M computed here, ...)' line: did the command finish?"]
    records, folder, computed = int(summaries[-1][1]), summaries[-1][2], int(summaries[-1][3])
    if computed == records:
        return []
    return [
        f"{records - computed} of {records} records were reused from {folder} (an earlier run), not computed by "
        f"this one: run from a fresh clone, or move {folder} away"
    ]


def cell(table: str, benchmark: str, metric: str, column: str) -> str:
    """The text of ``column`` in the row of (``benchmark``, ``metric``) of a printed Markdown table."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        if row["benchmark"] == benchmark and row["metric"] == metric:
            return row[column]
    raise KeyError(f"no row {benchmark} {metric} in the table")


def _failed(proc: subprocess.CompletedProcess[str]) -> bool:
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        print(f"silc-bench run failed (exit status {proc.returncode})", file=sys.stderr)
    return proc.returncode != 0


def check() -> int:
    """Run the command in the current folder and compare; exit status 1 with the differences."""
    with tempfile.TemporaryDirectory(prefix="silc-default-run-") as tmp:
        proc = run_readme_command(Path.cwd(), Path(tmp))
    if _failed(proc):
        return 1
    print(proc.stdout, end="")
    found = problems(proc.stdout, proc.stderr, EXPECTED.read_text())
    print("\n".join(found) if found else f"the printed table equals {EXPECTED}", file=sys.stderr)
    return 1 if found else 0


def update() -> int:
    """Run the command in a scratch folder with empty caches and rewrite the expected file; print what changed."""
    with tempfile.TemporaryDirectory(prefix="silc-default-run-") as tmp:
        proc = run_readme_command(Path(tmp), Path(tmp), Path(tmp) / "world")
    if _failed(proc) or not_computed(proc.stderr):
        print("\n".join(not_computed(proc.stderr)), f"{EXPECTED} left as it was", sep="\n", file=sys.stderr)
        return 1
    old = EXPECTED.read_text() if EXPECTED.is_file() else ""
    EXPECTED.parent.mkdir(parents=True, exist_ok=True)
    EXPECTED.write_text(proc.stdout)
    print("\n".join(table_diff(old, proc.stdout)) or "unchanged", file=sys.stderr)
    print(f"wrote {EXPECTED}; the README's table (Running benchmarks) shows it too", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    """``check`` or ``update``."""
    commands = {"check": check, "update": update}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m tests.default_run check | update", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
