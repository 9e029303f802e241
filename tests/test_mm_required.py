"""The gate of the tests that need the OpenMMLab stack (tests/conftest.py): with mmseg made unimportable, a test
marked ``mm`` and a module that calls ``require_mm()`` fail with one message saying how to install it, unless
SILC_SKIP_MM=1, which skips them with the reason; other tests run either way."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "import mmseg: ImportError: mmseg faked missing by tests/test_mm_required.py"
FAILED = (
    f"the OpenMMLab stack is missing ({PROBLEM}): install it with `bash scripts/setup.sh` (without "
    "SILC_SKIP_MM=1), or set SILC_SKIP_MM=1 to skip the tests marked mm"
)
SKIPPED = f"SILC_SKIP_MM=1 and the OpenMMLab stack is missing ({PROBLEM})"

FILES = {
    "pytest.ini": "[pytest]\nmarkers = mm: needs the OpenMMLab stack\n",
    "conftest.py": "from tests.conftest import pytest_runtest_setup  # noqa: F401  (the gate under test)\n",
    "test_marked.py": (
        "import pytest\n\n\n@pytest.mark.mm\ndef test_marked():\n    pass\n\n\ndef test_plain():\n    pass\n"
    ),
    "test_module.py": (
        "from tests.conftest import require_mm\n\nrequire_mm()\nimport mmseg  # noqa: E402, F401\n\n\n"
        "def test_in_module():\n    pass\n"
    ),
    # first on the path: `import mmseg` fails as if it were not installed
    "shim/mmseg/__init__.py": f"raise ImportError({PROBLEM.split(': ', 2)[2]!r})\n",
}


def _outcomes(tmp_path: Path, skip_mm: str | None) -> dict[str, tuple[str, str]]:
    """Run pytest on the files above; test (or module) name -> (outcome, message)."""
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("SILC_SKIP_MM", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shim"), str(ROOT)])
    if skip_mm is not None:
        env["SILC_SKIP_MM"] = skip_mm
    report = tmp_path / "report.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        f"--junitxml={report}",
    ]
    command.append("--continue-on-collection-errors")  # a failed module would otherwise stop the whole run
    subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    out = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        results = [(c.tag, c.get("message", ""), c.text or "") for c in case if c.tag in ("error", "skipped")]
        out[case.get("name")] = results[0] if results else ("passed", "", "")
    return out


def test_mm_tests_fail_when_mm_is_missing(tmp_path: Path) -> None:
    assert _outcomes(tmp_path, None) == {
        "test_marked": ("error", f'failed on setup with "Failed: {FAILED}"', FAILED),
        "test_plain": ("passed", "", ""),
        "test_module": ("error", "collection failure", FAILED),
    }


def test_mm_tests_skip_with_the_reason_when_asked(tmp_path: Path) -> None:
    outcomes = _outcomes(tmp_path, "1")
    gate = f"{ROOT / 'tests' / 'conftest.py'}"
    assert outcomes["test_marked"][:2] == ("skipped", SKIPPED)
    assert outcomes["test_plain"] == ("passed", "", "")
    assert outcomes["test_module"][:2] == ("skipped", "collection skipped")
    assert outcomes["test_module"][2].startswith(f"('{gate}', ") and outcomes["test_module"][2].endswith(
        f", 'Skipped: {SKIPPED}')"
    )


def test_setup_stamp_includes_skip_mm(tmp_path: Path) -> None:
    """scripts/setup.sh on a stand-in .venv (its python and install-mm.sh log their calls): a set-up with
    SILC_SKIP_MM=1 does not satisfy one without it, which then installs the OpenMMLab stack; reruns do nothing."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_text((ROOT / "scripts" / "setup.sh").read_text())
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    log = tmp_path / "calls.log"
    (tmp_path / "scripts" / "install-mm.sh").write_text(f'echo install-mm >> "{log}"\n')
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text(f'#!/bin/sh\necho "python $*" >> "{log}"\n')
    (tmp_path / ".venv" / "bin" / "python").chmod(0o755)

    def setup(skip_mm: str | None) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != "SILC_SKIP_MM"}
        env.update({} if skip_mm is None else {"SILC_SKIP_MM": skip_mm})
        log.write_text("")
        subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], env=env, check=True)
        return log.read_text().splitlines()

    pip = ["python -m pip install -q --upgrade pip>=24", "python -m pip install -q -e .[dev]"]
    assert setup("1") == pip
    assert setup("1") == []
    assert setup(None) == [*pip, "install-mm"]
    assert setup(None) == []
    assert setup("0") == []  # only "1" skips: any other value is a set-up with the stack
