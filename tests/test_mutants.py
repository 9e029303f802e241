"""Mutation testing of the ablation regression (slow; CI only): every one-line bug of tests/mutants.yaml must make
``silc-bench regress --suite ablations --tier fingerprints`` exit 1, and the clean code must make it exit 0.

Not in the default run (pyproject's addopts deselect the ``mutation`` marker). Run all, or one mutant (the clean
run comes with it, so a catch is never a regression that fails on clean code too):

    .venv/bin/python -m pytest -m mutation tests/test_mutants.py
    .venv/bin/python -m pytest -m mutation tests/test_mutants.py -k no-local-crops

Runs go one after another (each regress uses every core), so not under pytest-xdist's ``-n``. The Markdown
report (mutant, bug, caught, rc, seconds, mutation score) is printed in the terminal summary and written to
``$SILC_MUTATION_REPORT`` (default: ``results/mutation-report.md`` under the test's work folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mutation import (
    REPO,
    Mutant,
    RegressRun,
    apply_mutant,
    caught,
    copy_repo,
    load_mutants,
    report_markdown,
    report_path,
    run_regress,
)

MUTANTS = load_mutants()
pytestmark = pytest.mark.mutation


@dataclass(eq=False)  # hashable by identity: the plugin manager keys plugins by object
class MutationReport:
    """The runs of this session; a pytest plugin so it can print itself in the terminal summary (``-s`` or not)."""

    path: Path
    clean: RegressRun | None = None
    outcomes: list[tuple[Mutant, RegressRun]] = field(default_factory=list)

    def markdown(self) -> str:
        """The report as Markdown (see ``tests.mutation.report_markdown``)."""
        return report_markdown(self.clean, self.outcomes)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Pytest hook: the report and where it was written, after the test results."""
        terminalreporter.write_sep("=", "mutation testing")
        terminalreporter.write_line(self.markdown())
        terminalreporter.write_line(f"report written to {self.path}")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder for the copies and regress outputs; refuses xdist workers (the runs must not overlap)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail("mutation tests run one regress at a time: run them without -n (or with -n 0)")
    return tmp_path_factory.mktemp("mutation")


@pytest.fixture(scope="module")
def report(work: Path, pytestconfig: pytest.Config) -> Iterator[MutationReport]:
    """The session's report: registered for the terminal summary, written to ``report_path`` at the end."""
    collected = MutationReport(report_path(work))
    pytestconfig.pluginmanager.register(collected, "silc-mutation-report")
    yield collected
    collected.path.parent.mkdir(parents=True, exist_ok=True)
    collected.path.write_text(collected.markdown(), encoding="utf-8")


def regress_copy(work: Path, label: str, mutant: Mutant | None) -> RegressRun:
    """Copy the repository to ``work/label``, plant ``mutant`` (if any), run the regression there.

    The copy is removed when the run ends as expected (clean: 0, mutant: 1) and kept for inspection otherwise.
    """
    root = copy_repo(REPO, work / label / "repo")
    if mutant is not None:
        apply_mutant(root, mutant)
    run = run_regress(root, work / label / "regress")
    if run.returncode == (0 if mutant is None else 1):
        shutil.rmtree(work / label)
    return run


@pytest.fixture(scope="module")
def clean_run(work: Path, report: MutationReport) -> RegressRun:
    """The regression on an unmodified copy, once per session (every mutant test needs it as its baseline)."""
    report.clean = regress_copy(work, "clean", None)
    return report.clean


def test_clean_code_passes(clean_run: RegressRun) -> None:
    assert clean_run.returncode == 0, (
        f"the regression fails on the clean code (rc {clean_run.returncode}, {clean_run.seconds:.0f} s):\n"
        f"{clean_run.output_tail}"
    )


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_caught(mutant: Mutant, clean_run: RegressRun, work: Path, report: MutationReport) -> None:
    if clean_run.returncode != 0:
        pytest.fail(
            f"the clean code fails the regression (rc {clean_run.returncode}): a catch would prove nothing"
        )
    run = regress_copy(work, mutant.name, mutant)
    report.outcomes.append((mutant, run))
    assert run.returncode in (0, 1), (
        f"mutant {mutant.name!r}: the regression errored (rc {run.returncode}), which is not a catch:\n"
        f"{run.output_tail}"
    )
    assert caught(run), f"mutant {mutant.name!r} survived ({mutant.bug}):\n{run.output_tail}"
