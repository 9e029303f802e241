"""Result records: one JSON per (model, benchmark, protocol), written atomically, skipped when present."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from silc.errors import UserError
from silc.io import atomic_write_json

RECORD_SCHEMA = 1
_VERSIONED_PACKAGES = (
    "silc-bench",
    "torch",
    "torchvision",
    "open_clip_torch",
    "clip-benchmark",
    "pycocotools",
    "numpy",
    "mmengine",
    "mmcv",
    "mmsegmentation",
    "mmdet",
)


@dataclass
class ResultRecord:
    """Everything needed to trust and reproduce one number: who, what, how, and with which software."""

    model: str  # alias
    spec: str
    fingerprint: str
    benchmark: str
    protocol_name: str
    protocol: dict[str, Any]
    dataset_root: str
    split: str
    num_samples: int
    metrics: dict[str, Any]
    wall_time_s: float
    images_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)  # per-class values and other detail
    versions: dict[str, str] = field(default_factory=dict)
    schema: int = RECORD_SCHEMA
    # 95 % intervals of the headline metrics ({metric: {low, high, se}}) and how they were made (resamples,
    # units, the per-sample outcomes file in the record's artefacts folder); not part of the protocol
    metrics_ci: dict[str, dict[str, float | None]] = field(default_factory=dict)
    uncertainty: dict[str, Any] = field(default_factory=dict)
    # images that did not decode and were left out under --skip-bad-images (paths relative to the dataset root)
    skipped_images: list[str] = field(default_factory=list)
    # the public dataset a suite entry claimed and what the identity check found (empty: none claimed):
    # {"claimed": NAME, "verified": bool, "differences": [...], "label": the table's dataset label}
    dataset_identity: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "<record>") -> ResultRecord:
        """Parse a record dict; a missing or unknown key is a UserError naming ``source``."""
        names = {f for f in cls.__dataclass_fields__}
        optional = (
            "extra",
            "versions",
            "schema",
            "metrics_ci",
            "uncertainty",
            "skipped_images",
            "dataset_identity",
        )
        missing = [k for k in names if k not in obj and k not in optional]
        if missing:
            raise UserError(f"{source}: result record is missing key(s) {sorted(missing)}")
        unknown = sorted(set(obj) - names)
        if unknown:
            raise UserError(f"{source}: result record has unknown key(s) {unknown}")
        return cls(**obj)


def protocol_hash(protocol: dict[str, Any]) -> str:
    """Short stable hash of a protocol dict (key order does not matter)."""
    blob = json.dumps(protocol, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def record_path(
    results_dir: str | Path, model: str, benchmark: str, protocol_name: str, protocol: dict
) -> Path:
    """Where the record for (model alias, benchmark, protocol) lives."""
    fname = f"{_safe(benchmark)}.{_safe(protocol_name)}.{protocol_hash(protocol)}.json"
    return Path(results_dir) / _safe(model) / fname


def record_glob(results_dir: str | Path, model: str, benchmark: str, protocol_name: str) -> list[Path]:
    """The records of (model alias, benchmark, protocol name) under ``results_dir``, whatever their protocol hash
    (which depends on the model: :func:`record_path` needs the pinned protocol)."""
    return sorted(
        (Path(results_dir) / _safe(model)).glob(f"{_safe(benchmark)}.{_safe(protocol_name)}.*.json")
    )


def artefacts_dir(record_file: str | Path) -> Path:
    """The folder beside a record for what its harness writes besides the metrics (visualisations, predictions)."""
    record_file = Path(record_file)
    return record_file.with_name(record_file.name.removesuffix(".json"))


def write_record(results_dir: str | Path, record: ResultRecord) -> Path:
    """Atomically write ``record`` under ``results_dir``; returns its path."""
    path = record_path(results_dir, record.model, record.benchmark, record.protocol_name, record.protocol)
    return atomic_write_json(path, record.to_json())


def read_record(path: str | Path) -> ResultRecord:
    """Read one record; a corrupt file is a UserError naming it."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable result record ({e.__class__.__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path}: result record must be a JSON object")
    return ResultRecord.from_json(obj, source=str(path))


def read_records(results_dir: str | Path) -> list[ResultRecord]:
    """Every record under ``results_dir`` (recursively), sorted by path."""
    root = Path(results_dir)
    return [read_record(p) for p in sorted(root.rglob("*.json")) if not p.name.startswith(".")]


def git_sha() -> str:
    """The project's git commit, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def software_versions() -> dict[str, str]:
    """Versions of silc-bench, its git sha, python and the packages that can change a number."""
    versions = {"python": platform.python_version(), "git_sha": git_sha()}
    for pkg in _VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return versions
