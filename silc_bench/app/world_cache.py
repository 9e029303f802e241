"""The synthetic world in the user cache: generated once per (preset, seed, generator code), atomically."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$SILC_BENCH_WORLD_CACHE``, else ``$XDG_CACHE_HOME/silc-bench``, else ``~/.cache/silc-bench``."""
    if os.environ.get("SILC_BENCH_WORLD_CACHE"):
        return Path(os.environ["SILC_BENCH_WORLD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "silc-bench"


def source_sha256(folder: Path) -> str:
    """sha256 over the ``*.py`` files under ``folder`` (names and bytes, sorted): what code produced an artefact."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def generator_hash() -> str:
    """Short hash of the generator's source: a changed generator never reuses a stale cached world."""
    import silc.data.synth as synth

    return source_sha256(Path(synth.__file__).resolve().parent)[:8]


def world_dir(preset: str, seed: int) -> Path:
    """Where the cached world for (preset, seed) lives."""
    return cache_root() / f"world-{preset}-seed{seed}-{generator_hash()}"


def ensure_world(preset: str = "tiny", seed: int = 0) -> Path:
    """The cached synthetic world, generated into a temporary folder and renamed into place on first use."""
    from silc.data.synth import generate_world
    from silc.io import crash_point, temporary_dir

    final = world_dir(preset, seed)
    if final.is_dir():
        return final
    with temporary_dir(final) as tmp:  # locked while generating; stale ones of killed generations go first
        start = time.perf_counter()
        log.info("generating the synthetic world (preset %s, seed %d) into %s", preset, seed, final)
        generate_world(tmp, seed=seed, preset=preset)
        crash_point(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another process won the race if the folder now exists
                raise
        log.info("synthetic world ready in %.1f s", time.perf_counter() - start)
    return final
