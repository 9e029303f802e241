"""The mutation-testing helpers (tests/mutation.py) and the mutants' anchors, cheaply, in the default run: a
refactor that removes an anchor line fails here, not only in the slow CI mutation run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mutation import (
    REPO,
    Mutant,
    RegressRun,
    apply_mutant,
    copy_env,
    copy_repo,
    load_mutants,
    mutated_text,
    regress_command,
    repo_files,
    report_markdown,
)

MUTANTS = load_mutants()
PACKAGES = ("silc", "adapters", "benchmarks", "silc_bench")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(REPO, tmp_path_factory.mktemp("copy") / "repo")


def test_mutants_are_distinct() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names)) >= 8


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_anchor_occurs_once_and_mutant_compiles(mutant: Mutant) -> None:
    original = (REPO / mutant.file).read_text(encoding="utf-8")
    mutated = mutated_text(original, mutant)  # asserts the anchor occurs exactly once
    assert mutated != original and mutant.find != mutant.replace
    compile(mutated, mutant.file, "exec")


def test_apply_mutant_replaces_the_line_keeping_its_indentation(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def f(x):\n    y = x + 1\n    return y\n")
    apply_mutant(tmp_path, Mutant("plus-two", "adds two", "m.py", "y = x + 1", "y = x + 2"))
    assert (tmp_path / "m.py").read_text() == "def f(x):\n    y = x + 2\n    return y\n"


@pytest.mark.parametrize(("text", "count"), [("a = 1\n", 0), ("y = x + 1\nif x:\n    y = x + 1\n", 2)])
def test_apply_mutant_refuses_a_missing_or_repeated_anchor(tmp_path: Path, text: str, count: int) -> None:
    (tmp_path / "m.py").write_text(text)
    with pytest.raises(AssertionError, match=f"'plus-two': the anchor line occurs {count} times in m.py"):
        apply_mutant(tmp_path, Mutant("plus-two", "adds two", "m.py", "y = x + 1", "y = x + 2"))
    assert (tmp_path / "m.py").read_text() == text


def test_anchor_matches_whole_lines_only() -> None:
    with pytest.raises(AssertionError, match="occurs 0 times"):
        mutated_text("y = x + 10\n", Mutant("m", "b", "m.py", "y = x + 1", "y = x + 2"))


def test_copy_repo_excludes_venv_git_and_results_but_the_committed_ones(copy: Path) -> None:
    names = repo_files(REPO)
    assert not [n for n in names if n.split("/")[0] in (".venv", ".git")]
    committed = ("results/reference/", "results/paper_synth/")  # the results folders .gitignore keeps
    assert all(n.startswith(committed) for n in names if n.startswith("results/"))
    assert not (copy / ".venv").exists() and not (copy / ".git").exists()
    assert (copy / "results" / "reference" / "ablations" / "trajectories.json").is_file()
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == names
    assert (copy / "silc" / "train.py").read_bytes() == (REPO / "silc" / "train.py").read_bytes()


def test_copy_env_imports_the_copy_not_the_editable_install(copy: Path, tmp_path: Path) -> None:
    script = "import json, sys; print(json.dumps([__import__(p).__file__ for p in sys.argv[1:]]))"
    proc = subprocess.run(
        [sys.executable, "-c", script, *PACKAGES],
        cwd=tmp_path,  # not the copy: PYTHONPATH alone must make the copy win
        env=copy_env(copy),
        capture_output=True,
        text=True,
        check=True,
    )
    files = [Path(f) for f in json.loads(proc.stdout)]
    assert [f.parent for f in files] == [copy / p for p in PACKAGES]


def test_regress_command_is_the_fingerprint_tier_under_this_interpreter(tmp_path: Path) -> None:
    command = regress_command(tmp_path)
    assert command[0] == sys.executable
    assert command[1:] == [
        *("-m", "silc_bench", "regress", "--suite", "ablations", "--tier", "fingerprints"),
        *("--work", str(tmp_path)),
    ]


def test_report_has_a_row_per_mutant_and_the_score() -> None:
    a, b, c = (Mutant(n, f"bug {n}", "f.py", "x", "y") for n in "abc")
    outcomes = [(a, RegressRun(1, 10.0, "")), (b, RegressRun(0, 11.0, "")), (c, RegressRun(2, 1.0, ""))]
    text = report_markdown(RegressRun(0, 9.4, ""), outcomes)
    assert "Clean code: pass (rc 0, 9 s)" in text
    assert "| a | bug a | yes | 1 | 10 |" in text
    assert "| b | bug b | no (survived) | 0 | 11 |" in text
    assert "| c | bug c | no (error) | 2 | 1 |" in text
    assert "Mutation score: 1/3 = 33 %" in text
