"""Per-record claims, so that concurrent runs on one results folder compute each record once.

A claim is an exclusive ``flock`` on ``.<record name>.claim`` beside the record: the kernel drops it when its
process dies, so a killed run never blocks a later one. The file holds the owner's pid (for messages) and is
removed on release; a claimer re-checks after locking that the path still names the file it locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

SUFFIX = ".claim"


class ClaimedElsewhere(Exception):
    """The record is being computed by another process (``owner``: its pid, when known)."""

    def __init__(self, record: Path, owner: int | None):
        super().__init__(f"{record}: being computed by {f'pid {owner}' if owner else 'another process'}")
        self.record = record
        self.owner = owner


def claim_path(record: Path) -> Path:
    """The claim file of a record: ``.<record name>.claim`` in its folder."""
    return record.with_name(f".{record.name}{SUFFIX}")


class Claim:
    """An exclusive claim on one record, held until :meth:`release` (or the end of a ``with`` block)."""

    def __init__(self, record: Path, wait: bool = True):
        """Take the claim on ``record``; with ``wait=False`` raise :class:`ClaimedElsewhere` if another process
        holds it, else block until it is free."""
        self.record = record
        self.path = claim_path(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                owner = _owner(fd)
                os.close(fd)
                raise ClaimedElsewhere(record, owner) from None
            if _same_file(fd, self.path):  # not a file its previous owner removed while we waited
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the claim file and drop the lock (removed first, while still held: no one can lock it after)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_stale(record: Path) -> None:
    """Remove the claim file a dead process left beside ``record`` (one ``stat`` when there is none)."""
    if not claim_path(record).exists():
        return
    with contextlib.suppress(
        ClaimedElsewhere, OSError
    ):  # a live owner (it removes its own); a read-only folder
        Claim(record, wait=False).release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _owner(fd: int) -> int | None:
    """The pid written in a claim file, or None while its owner has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
