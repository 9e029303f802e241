"""Atomic file writes: write to a temporary name in the same folder, fsync, rename over the target.

Temporary names carry the writer's host and pid (``.<name>.<host>.<pid>.<random>.tmp``), so a temporary left by
a killed writer is recognised and removed by the next write into that folder, never one of a live writer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# Test hook, off by default: a process whose write target's path contains this variable's value kills itself
# (SIGKILL) after the temporary is written and fsynced, before the rename (the crash-safety tests use it).
KILL_ENV = "SILC_BENCH_TEST_KILL_IN_WRITE"
_TEMPORARY = re.compile(r"\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d{1,9})\.[A-Za-z0-9_]+\.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path`` and rename it into place (never a partial file);
    stale temporaries of dead writers in the folder are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        crash_point(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def temporary_prefix(path: Path) -> str:
    """The name prefix of this process's temporaries for ``path``: ``.<name>.<host>.<pid>.``."""
    return f".{path.name}.{_host()}.{os.getpid()}."


def temporary_dir(path: Path) -> Path:
    """A new temporary folder next to ``path`` (to be renamed onto it), after removing stale ones in its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    return Path(tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent))


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporaries in ``folder`` that writers on this host left when they died (their pid is gone)."""
    host, me = _host(), os.getpid()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match["host"] != host or int(match["pid"]) == me or _alive(int(match["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)


def crash_point(path: Path) -> None:
    """Test hook, off by default: SIGKILL this process when ``$SILC_BENCH_TEST_KILL_IN_WRITE`` is set and is a
    substring of ``path``. Writers call it between writing a temporary and renaming it into place."""
    target = os.environ.get(KILL_ENV)
    if target and target in str(path):
        os.kill(os.getpid(), signal.SIGKILL)


def _host() -> str:
    """This host's name as it appears in temporary names (letters, digits and dashes)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "localhost"


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
