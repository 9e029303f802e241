"""Per-record claims, so that concurrent runs on one results folder compute each record once.

A claim is an exclusive ``flock`` on ``.<record name>.claim`` beside the record: the kernel drops it when its
process dies (processes it forked, DataLoader workers, do not keep it: see ``silc.io.lock_descriptor``), so a
killed run never blocks a later one. The file holds the owner's pid (for messages) and is
removed on release; a claimer re-checks after locking that the path still names the file it locked. A results
folder that cannot be written is a one-line error; on a file system without ``flock`` (``ENOLCK``,
``EOPNOTSUPP``, ...) records are computed without claims, after one warning per file system.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from silc.errors import UserError
from silc.io import close_lock_descriptor, lock_descriptor, same_file

SUFFIX = ".claim"
log = logging.getLogger(__name__)
_WITHOUT_FLOCK: set[int] = set()  # the file systems (st_dev) already warned about


class ClaimedElsewhere(Exception):
    """The record is being computed by another process (``owner``: its pid, when known)."""

    def __init__(self, record: Path, owner: int | None):
        super().__init__(f"{record}: being computed by {f'pid {owner}' if owner else 'another process'}")
        self.record = record
        self.owner = owner

    def __reduce__(self) -> tuple:
        """Pickled with its arguments (torchrun's rank 0 hands it to the other ranks)."""
        return ClaimedElsewhere, (self.record, self.owner)


def claim_path(record: Path) -> Path:
    """The claim file of a record: ``.<record name>.claim`` in its folder."""
    return record.with_name(f".{record.name}{SUFFIX}")


class Claim:
    """An exclusive claim on one record, held until :meth:`release` (or the end of a ``with`` block)."""

    def __init__(self, record: Path, wait: bool = True):
        """Take the claim on ``record``; with ``wait=False`` raise :class:`ClaimedElsewhere` if another process
        holds it, else block until it is free. Without ``flock`` support no claim is held (see the module)."""
        self.record = record
        self.path = claim_path(record)
        self._fd: int | None = None
        while True:
            fd = lock_descriptor(_open(self.path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                owner = _owner(fd)
                close_lock_descriptor(fd)
                raise ClaimedElsewhere(record, owner) from None
            except OSError as e:
                close_lock_descriptor(fd)
                self.path.unlink(missing_ok=True)  # nobody can lock it: it would only mislead
                _warn_without_flock(self.path.parent, e)
                return
            if same_file(fd, self.path):  # not a file its previous owner removed while we waited
                break
            close_lock_descriptor(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the claim file and drop the lock (removed first, while still held: no one can lock it after)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        close_lock_descriptor(self._fd)
        self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_stale(record: Path) -> None:
    """Remove the claim file a dead process left beside ``record`` (one ``stat`` when there is none)."""
    if not claim_path(record).exists():
        return
    # kept if a live owner holds it (it removes its own), or if the folder cannot be written
    with contextlib.suppress(ClaimedElsewhere, UserError):
        Claim(record, wait=False).release()


def _open(path: Path) -> int:
    """The claim file's descriptor (created if need be); a folder that cannot be written is a UserError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(
            f"{path.parent}: cannot create files in this results folder ({e.strerror or e}); it must be writable"
        ) from None


def _warn_without_flock(folder: Path, error: OSError) -> None:
    """Say once per file system that its records are computed without claims."""
    device = os.stat(folder).st_dev
    if device not in _WITHOUT_FLOCK:
        _WITHOUT_FLOCK.add(device)
        log.warning(
            "%s: the file system does not support flock (%s); records are computed without claims, so concurrent "
            "runs into this folder may compute a record twice",
            folder,
            error.strerror or error,
        )


def _owner(fd: int) -> int | None:
    """The pid written in a claim file, or None while its owner has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
