"""CI regression: compare result records with a committed reference (JSONL) within per-metric tolerances.

A reference line holds (model, benchmark, protocol name and hash, metrics, their bootstrap standard errors). A
metric outside its tolerance in either direction fails: with fixed seeds the numbers should not move, so a jump up
is a change to review too. A record or metric on one side only fails as well.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.records import ResultRecord, protocol_hash
from benchmarks.table_rows import scalar_metrics
from silc.errors import UserError
from silc.io import atomic_write_text

_REF_KEYS = ("model", "benchmark", "protocol_name", "protocol_hash", "metrics")


@dataclass(frozen=True)
class Tolerances:
    """Per-metric tolerance: ``z`` times the combined bootstrap standard error of reference and current where both
    have one; else absolute, ``benchmark/metric`` beats ``benchmark/*`` beats ``metric`` beats ``default``."""

    default: float
    specific: dict[str, float]
    z: float | None = None

    @classmethod
    def from_config(cls, obj: dict[str, Any], source: str = "tolerances") -> Tolerances:
        """Parse ``{default: x, z: k, <metric | benchmark/metric | benchmark/*>: y, ...}`` (numbers >= 0)."""
        if "default" not in obj:
            raise UserError(f"{source}: needs a 'default' tolerance")
        for key, value in obj.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UserError(f"{source}.{key}: tolerance must be a number >= 0, got {value!r}")
        z = float(obj["z"]) if "z" in obj else None
        rest = {k: float(v) for k, v in obj.items() if k not in ("default", "z")}
        return cls(float(obj["default"]), rest, z)

    def absolute(self, benchmark: str, metric: str) -> float:
        """The absolute tolerance that applies to ``metric`` of ``benchmark``."""
        for key in (f"{benchmark}/{metric}", f"{benchmark}/*", metric):
            if key in self.specific:
                return self.specific[key]
        return self.default

    def for_metric(
        self, benchmark: str, metric: str, se_ref: float | None = None, se_cur: float | None = None
    ) -> float:
        """The tolerance of ``metric``: z-scaled standard errors when both sides have one, else absolute."""
        if self.z is not None and se_ref is not None and se_cur is not None:
            return self.z * math.hypot(se_ref, se_cur)
        return self.absolute(benchmark, metric)


@dataclass(frozen=True)
class Finding:
    """One compared metric; ``status`` is ok, regressed, improved, undefined or missing."""

    model: str
    benchmark: str
    protocol: str
    metric: str
    reference: float | None
    current: float | None
    tolerance: float
    status: str

    @property
    def failed(self) -> bool:
        return self.status != "ok"


def reference_lines(records: list[ResultRecord]) -> list[dict[str, Any]]:
    """The reference form of ``records`` (sorted, so the file diffs cleanly)."""
    lines = [
        {
            "model": r.model,
            "benchmark": r.benchmark,
            "protocol_name": r.protocol_name,
            "protocol_hash": protocol_hash(r.protocol),
            "metrics": scalar_metrics(r.metrics),
            "se": {k: v["se"] for k, v in sorted(r.metrics_ci.items()) if v.get("se") is not None},
        }
        for r in records
    ]
    return sorted(lines, key=lambda x: (x["model"], x["benchmark"], x["protocol_name"], x["protocol_hash"]))


def write_reference(path: str | Path, records: list[ResultRecord]) -> Path:
    """Write the reference JSONL for ``records`` atomically."""
    return write_reference_lines(path, reference_lines(records))


def write_reference_lines(path: str | Path, lines: list[dict[str, Any]]) -> Path:
    """Write reference ``lines`` (from :func:`reference_lines`) as JSONL, atomically."""
    return atomic_write_text(path, "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))


def read_reference(path: str | Path) -> list[dict[str, Any]]:
    """The reference lines of a JSONL file; a missing file or malformed line is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: reference file does not exist (create it with --update)")
    lines = []
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: not a JSON line ({e.msg})") from e
        if not isinstance(obj, dict) or any(k not in obj for k in _REF_KEYS):
            raise UserError(f"{path}:{i}: a reference line needs keys {list(_REF_KEYS)}")
        lines.append(obj)
    if not lines:
        raise UserError(f"{path}: reference file is empty")
    return lines


def _status(ref: float | None, cur: float | None, tol: float) -> str:
    if ref is None or cur is None or math.isnan(ref) or math.isnan(cur):
        same = (ref is None or math.isnan(ref)) and (cur is None or math.isnan(cur))
        return "ok" if same else "undefined"
    if cur < ref - tol - 1e-12:
        return "regressed"
    if cur > ref + tol + 1e-12:
        return "improved"
    return "ok"


def compare(
    reference: list[dict[str, Any]], records: list[ResultRecord], tolerances: Tolerances
) -> list[Finding]:
    """Every metric of the reference and of the current records compared; one present on one side only fails."""
    current = {
        (line["model"], line["benchmark"], line["protocol_hash"]): line for line in reference_lines(records)
    }
    findings = []
    seen = set()
    for ref in reference:
        key = (ref["model"], ref["benchmark"], ref["protocol_hash"])
        seen.add(key)
        cur = current.get(key)
        protocol = f"{ref['protocol_name']} ({ref['protocol_hash']})"
        names = sorted(set(ref["metrics"]) | set(cur["metrics"] if cur else ()))
        for metric in names:
            se_ref = ref.get("se", {}).get(metric)
            se_cur = cur["se"].get(metric) if cur else None
            tol = tolerances.for_metric(ref["benchmark"], metric, se_ref, se_cur)
            if cur is None or metric not in cur["metrics"] or metric not in ref["metrics"]:
                ref_value, cur_value = ref["metrics"].get(metric), cur and cur["metrics"].get(metric)
                findings.append(Finding(*key[:2], protocol, metric, ref_value, cur_value, tol, "missing"))
                continue
            ref_value, cur_value = ref["metrics"][metric], cur["metrics"][metric]
            status = _status(ref_value, cur_value, tol)
            findings.append(Finding(*key[:2], protocol, metric, ref_value, cur_value, tol, status))
    for key, cur in current.items():
        if key not in seen:
            protocol = f"{cur['protocol_name']} ({cur['protocol_hash']}), not in the reference"
            for metric, value in sorted(cur["metrics"].items()):
                findings.append(Finding(*key[:2], protocol, metric, None, value, math.nan, "missing"))
    return findings


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """The failed findings as a table (model, benchmark, protocol, metric, reference, current, delta, ...)."""
    rows = [
        {
            "model": f.model,
            "benchmark": f.benchmark,
            "protocol": f.protocol,
            "metric": f.metric,
            "reference": f.reference,
            "current": f.current,
            "delta": None if f.reference is None or f.current is None else round(f.current - f.reference, 12),
            "tolerance": f.tolerance,
            "status": f.status,
        }
        for f in findings
        if f.failed
    ]
    return pd.DataFrame(rows)
