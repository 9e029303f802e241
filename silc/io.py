"""Atomic file writes: write to a temporary name in the same folder, fsync, rename over the target.

Temporary names carry the writer's host and pid (``.<name>.<host>.<pid>.<random>.tmp``), and the writer holds an
exclusive ``flock`` on its temporary (a temporary folder: on the folder) until it is renamed into place. The next
write into that folder removes a temporary left by a dead writer, never one whose lock is held by a live one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# Test hook, off by default: a process whose write target's path contains this variable's value kills itself
# (SIGKILL) after the temporary is written and fsynced, before the rename (the crash-safety tests use it).
KILL_ENV = "SILC_BENCH_TEST_KILL_IN_WRITE"
_TEMPORARY = re.compile(r"\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d{1,9})\.[A-Za-z0-9_]+\.tmp")
_LOCK_DESCRIPTORS: set[int] = set()  # this process's descriptors that carry (or are about to carry) an flock


def lock_descriptor(fd: int) -> int:
    """Mark ``fd`` as one that carries this process's flock, so that processes forked from it do not keep it open
    (see :func:`close_lock_descriptor`); returns ``fd``."""
    _LOCK_DESCRIPTORS.add(fd)
    return fd


def close_lock_descriptor(fd: int) -> None:
    """Close a descriptor marked by :func:`lock_descriptor` (which drops its lock)."""
    _LOCK_DESCRIPTORS.discard(fd)
    os.close(fd)


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker, say), close the parent's lock descriptors. The kernel keeps an flock
    while any descriptor of its open file is open, so a child that outlives its killed parent (a worker stuck at
    exit) would otherwise hold the parent's record claims and temporaries, and the next run would wait for ever."""
    for fd in _LOCK_DESCRIPTORS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _LOCK_DESCRIPTORS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a locked temporary file next to ``path`` and rename it into place (never a partial
    file); stale temporaries of dead writers in the folder are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = _held(lambda: tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        crash_point(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        close_lock_descriptor(fd)  # drops the lock, once the temporary's name is gone
    return path


def temporary_prefix(path: Path) -> str:
    """The name prefix of this process's temporaries for ``path``: ``.<name>.<host>.<pid>.``."""
    return f".{path.name}.{_host()}.{os.getpid()}."


@contextlib.contextmanager
def temporary_dir(path: Path) -> Iterator[Path]:
    """A new temporary folder next to ``path``, to be renamed onto it inside the block (stale ones in its folder
    are removed first). It stays locked for the whole block and is removed at its end if it is still there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)

    def create() -> tuple[int, str]:
        name = tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY), name

    fd, tmp = _held(create)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        close_lock_descriptor(fd)


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporaries in ``folder`` whose writers are gone.

    The deciding test is the kernel's: a writer holds an exclusive ``flock`` on its temporary until it has renamed
    it into place, the kernel drops that lock whenever the writer dies, so a temporary is removed only after a
    non-blocking lock on it succeeds here. The name test (this host, a pid not running here) cannot tell alone
    (containers sharing a host name but not a pid namespace, nodes with equal short names on one file system);
    it is kept as a cheap pre-filter, and so that, on file systems whose locks are per node, other hosts'
    temporaries are left alone.

    The one window is between creating a temporary (its name is visible at once) and locking it. The writer
    closes it: after taking its lock it checks that the name still names its file and, if a cleaner removed it
    meanwhile, makes a new one; a cleaner checks after taking the lock that the name still names the file it
    locked (the writer may have renamed it into place and let go) before removing it. So no age threshold is
    needed, and a killed writer's temporary goes at the next write. Where ``flock`` is not supported nobody can
    lock a temporary, and none is removed.
    """
    host = _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            _remove_if_unlocked(Path(entry.path), os.O_RDONLY | os.O_DIRECTORY)
        elif entry.is_file(follow_symlinks=False):
            _remove_if_unlocked(Path(entry.path), os.O_RDWR)


def same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced by another)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _held(create: Callable[[], tuple[int, str]]) -> tuple[int, Path]:
    """A new temporary from ``create()`` (its descriptor and name), locked; made again if a cleaner removed it
    between its creation and the lock. Without ``flock`` support it stays unlocked (no cleaner can lock it)."""
    while True:
        fd, name = create()
        lock_descriptor(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            return fd, Path(name)
        if same_file(fd, Path(name)):
            return fd, Path(name)
        close_lock_descriptor(fd)


def _remove_if_unlocked(tmp: Path, flags: int) -> None:
    """Remove the temporary ``tmp`` (a file or a folder) if nobody holds its lock, holding it while removing."""
    try:
        fd = lock_descriptor(os.open(tmp, flags | os.O_NOFOLLOW))
    except OSError:  # gone meanwhile, or not ours to open
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not same_file(fd, tmp):
            return
        if flags & os.O_DIRECTORY:
            shutil.rmtree(tmp)
        else:
            tmp.unlink()
    except OSError:  # a live writer holds it (or no flock here, or it went meanwhile): not stale
        return
    finally:
        close_lock_descriptor(fd)


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
