"""Trajectory fingerprints: per-step training logs of ablation variants compared with a committed reference.

A trajectory holds, for steps 1..N, the scalars the trainer logs at each step (losses, gradient norm, logit scale,
teacher–student distance, centre norm). A value passes when ``|cur − ref| <= atol + rtol·|ref|`` (numpy's
``isclose``). A quantity the trainer did not log at a step (e.g. ``loss_distill`` before a late distillation
start) is NaN in memory and ``null`` on disk; NaN matches only NaN.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from silc.errors import UserError
from silc.io import atomic_write_json

QUANTITIES = (
    "loss",
    "loss_contrastive",
    "loss_distill",
    "loss_masked",
    "grad_norm",
    "logit_scale",
    "teacher_student_distance",
    "center_norm",
)


@dataclass(frozen=True)
class Trajectory:
    """Per-step values of one run: ``values[q][i]`` is quantity ``q`` at ``steps[i]`` (NaN where not logged)."""

    steps: tuple[int, ...]
    values: dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class TrajectoryTolerance:
    """Relative and absolute tolerance per quantity; the ``default`` key (else 0) covers quantities not named."""

    rtol: dict[str, float]
    atol: dict[str, float]

    @classmethod
    def from_config(cls, obj: Any, source: str = "trajectory_tolerances") -> TrajectoryTolerance:
        """Parse ``{rtol: {default: 1e-5, grad_norm: 1e-4}, atol: {default: 1e-8}}`` (numbers >= 0)."""
        if not isinstance(obj, dict) or not set(obj) <= {"rtol", "atol"}:
            raise UserError(f"{source}: expected a mapping with 'rtol' and/or 'atol', got {obj!r}")
        parsed = {}
        for kind in ("rtol", "atol"):
            table = obj.get(kind, {})
            if not isinstance(table, dict):
                raise UserError(
                    f"{source}.{kind}: expected a mapping of quantity -> tolerance, got {table!r}"
                )
            for key, value in table.items():
                if key != "default" and key not in QUANTITIES:
                    raise UserError(
                        f"{source}.{kind}.{key}: unknown quantity; known: default, {', '.join(QUANTITIES)}"
                    )
                if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
                    raise UserError(f"{source}.{kind}.{key}: tolerance must be a number >= 0, got {value!r}")
            parsed[kind] = {k: float(v) for k, v in table.items()}
        return cls(parsed["rtol"], parsed["atol"])

    def bounds(self, quantity: str) -> tuple[float, float]:
        """``(rtol, atol)`` that apply to ``quantity``."""
        return (
            self.rtol.get(quantity, self.rtol.get("default", 0.0)),
            self.atol.get(quantity, self.atol.get("default", 0.0)),
        )

    def close(self, quantity: str, reference: tuple[float, ...], current: tuple[float, ...]) -> np.ndarray:
        """Per-step booleans: ``current`` within tolerance of ``reference`` (NaN matches NaN)."""
        rtol, atol = self.bounds(quantity)
        return np.isclose(np.asarray(current), np.asarray(reference), rtol=rtol, atol=atol, equal_nan=True)


@dataclass(frozen=True)
class TrajectoryFinding:
    """One compared (variant, quantity): ``status`` ok | moved | missing; ``first_step`` is the first failing step."""

    variant: str
    quantity: str
    status: str
    first_step: int | None
    max_rel_deviation: float | None
    max_step: int | None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status != "ok"


def read_trajectory(log_path: str | Path, steps: int) -> Trajectory:
    """Steps 1..``steps`` of a run's ``log.jsonl`` (training records only; a later line for a step wins)."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise UserError(f"{log_path}: training log does not exist")
    records: dict[int, dict[str, float]] = {}
    for i, text in enumerate(log_path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{log_path}:{i}: not a JSON line ({e.msg})") from e
        if not isinstance(rec, dict) or any(k.startswith("eval/") for k in rec):
            continue
        found = {q: rec[q] for q in QUANTITIES if q in rec}
        if not found:
            continue
        for q, v in found.items():
            if not _is_number(v):
                raise UserError(f"{log_path}:{i}: {q} must be a number, got {v!r}")
        if not isinstance(rec.get("step"), int):
            raise UserError(f"{log_path}:{i}: a training record needs an integer 'step'")
        records[rec["step"]] = {q: float(v) for q, v in found.items()}
    wanted = range(1, steps + 1)
    missing = next((s for s in wanted if s not in records), None)
    if missing is not None:
        raise UserError(
            f"{log_path}: no training record for step {missing} (trajectories need train.log_every: 1)"
        )
    present = [q for q in QUANTITIES if any(q in records[s] for s in wanted)]
    return Trajectory(tuple(wanted), {q: tuple(records[s].get(q, math.nan) for s in wanted) for q in present})


def compare_trajectories(
    reference: dict[str, Trajectory], current: dict[str, Trajectory], tol: TrajectoryTolerance
) -> list[TrajectoryFinding]:
    """One finding per (variant, quantity) on either side; a variant, quantity or step missing on a side fails."""
    findings = []
    for variant in sorted(set(reference) | set(current)):
        ref, cur = reference.get(variant), current.get(variant)
        for q in _ordered(set(ref.values if ref else ()) | set(cur.values if cur else ())):
            if ref is None or cur is None:
                side = "reference" if ref is None else "current run"
                findings.append(
                    TrajectoryFinding(variant, q, "missing", None, None, None, f"variant not in {side}")
                )
            elif q not in ref.values or q not in cur.values:
                side = "reference" if q not in ref.values else "current run"
                findings.append(
                    TrajectoryFinding(variant, q, "missing", None, None, None, f"not logged in {side}")
                )
            else:
                findings.append(_compare_one(variant, q, ref, cur, tol))
    return findings


def _compare_one(
    variant: str, q: str, ref: Trajectory, cur: Trajectory, tol: TrajectoryTolerance
) -> TrajectoryFinding:
    ref_at, cur_at = _by_step(ref, q), _by_step(cur, q)
    common = sorted(set(ref_at) & set(cur_at))
    gaps = sorted(set(ref_at) ^ set(cur_at))
    a, b = tuple(ref_at[s] for s in common), tuple(cur_at[s] for s in common)
    bad = [s for s, ok in zip(common, tol.close(q, a, b), strict=True) if not ok]
    first = min(gaps[:1] + bad[:1], default=None)
    max_rel, max_step = _max_deviation(common, a, b)
    if gaps:
        side = "current run" if gaps[0] in ref_at else "reference"
        return TrajectoryFinding(
            variant, q, "missing", first, max_rel, max_step, f"step {gaps[0]} not in {side}"
        )
    return TrajectoryFinding(variant, q, "moved" if bad else "ok", first, max_rel, max_step)


def indistinguishable_pairs(
    current: dict[str, Trajectory], tol: TrajectoryTolerance
) -> list[tuple[str, str]]:
    """Variant pairs whose trajectories agree within ``tol`` on every quantity at every step (a knob with no effect)."""
    pairs = []
    for a, b in itertools.combinations(sorted(current), 2):
        ta, tb = current[a], current[b]
        if ta.steps != tb.steps or set(ta.values) != set(tb.values):
            continue
        if all(tol.close(q, ta.values[q], tb.values[q]).all() for q in ta.values):
            pairs.append((a, b))
    return pairs


def write_trajectories(path: str | Path, trajs: dict[str, Trajectory], meta: dict[str, Any]) -> Path:
    """Write ``trajs`` and ``meta`` as key-sorted JSON, one value per line (floats exact, not-logged as null)."""
    variants = {
        name: {
            "steps": list(t.steps),
            "values": {q: [None if math.isnan(v) else v for v in vals] for q, vals in t.values.items()},
        }
        for name, t in trajs.items()
    }
    return atomic_write_json(path, {"meta": meta, "variants": variants})


def read_trajectories(path: str | Path) -> tuple[dict[str, Trajectory], dict[str, Any]]:
    """The trajectories and metadata of a file written by :func:`write_trajectories` (UserError naming it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: trajectory reference does not exist (create it with --update)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a JSON file ({str(e).splitlines()[0]})") from e
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("variants"), dict)
        or not isinstance(obj.get("meta"), dict)
    ):
        raise UserError(f"{path}: a trajectory file is a mapping with 'meta' and 'variants' mappings")
    return {name: _parse_variant(t, f"{path}: variants.{name}") for name, t in obj["variants"].items()}, obj[
        "meta"
    ]


def _parse_variant(obj: Any, where: str) -> Trajectory:
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("steps"), list)
        or not isinstance(obj.get("values"), dict)
    ):
        raise UserError(f"{where}: needs a 'steps' list and a 'values' mapping")
    steps = obj["steps"]
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        raise UserError(f"{where}.steps: steps must be integers")
    values = {}
    for q, vals in obj["values"].items():
        if q not in QUANTITIES:
            raise UserError(f"{where}.values.{q}: unknown quantity; known: {', '.join(QUANTITIES)}")
        if not isinstance(vals, list) or len(vals) != len(steps):
            raise UserError(f"{where}.values.{q}: needs one value per step ({len(steps)})")
        if not all(v is None or _is_number(v) for v in vals):
            raise UserError(f"{where}.values.{q}: values must be numbers or null")
        values[q] = tuple(math.nan if v is None else float(v) for v in vals)
    return Trajectory(tuple(steps), values)


def trajectory_table(findings: list[TrajectoryFinding]) -> pd.DataFrame:
    """The failed findings as a table (variant, quantity, first step, max relative deviation, at step, status)."""
    rows = [
        {
            "variant": f.variant,
            "quantity": f.quantity,
            "first_step": f.first_step,
            "max_rel_deviation": f.max_rel_deviation,
            "at_step": f.max_step,
            "status": f.status,
            "detail": f.detail,
        }
        for f in findings
        if f.failed
    ]
    return pd.DataFrame(
        rows,
        columns=["variant", "quantity", "first_step", "max_rel_deviation", "at_step", "status", "detail"],
    )


def max_deviation_table(reference: dict[str, Trajectory], current: dict[str, Trajectory]) -> pd.DataFrame:
    """Per quantity, the largest relative deviation over the variants and steps both sides have (measured drift)."""
    best: dict[str, tuple[float, str, int]] = {}
    for variant in sorted(set(reference) & set(current)):
        ref, cur = reference[variant], current[variant]
        common = sorted(set(ref.steps) & set(cur.steps))
        for q in _ordered(set(ref.values) & set(cur.values)):
            ref_at, cur_at = _by_step(ref, q), _by_step(cur, q)
            dev, step = _max_deviation(
                common, tuple(ref_at[s] for s in common), tuple(cur_at[s] for s in common)
            )
            if dev is not None and (q not in best or dev > best[q][0]):
                best[q] = (dev, variant, step)
    rows = [
        {"quantity": q, "max_rel_deviation": best[q][0], "variant": best[q][1], "at_step": best[q][2]}
        for q in _ordered(set(best))
    ]
    return pd.DataFrame(rows, columns=["quantity", "max_rel_deviation", "variant", "at_step"])


def relative_deviation(reference: float, current: float) -> float:
    """``|cur − ref| / |ref|``: 0 when equal (NaN and NaN included); inf when ref is 0 or either is NaN/inf."""
    if reference == current or (math.isnan(reference) and math.isnan(current)):
        return 0.0
    if reference == 0 or not math.isfinite(reference) or not math.isfinite(current):
        return math.inf
    return abs(current - reference) / abs(reference)


def _max_deviation(
    steps: list[int], reference: tuple[float, ...], current: tuple[float, ...]
) -> tuple[float | None, int | None]:
    """The largest relative deviation and its (first) step; ``(None, None)`` when there are no steps."""
    devs = [relative_deviation(r, c) for r, c in zip(reference, current, strict=True)]
    if not devs:
        return None, None
    i = max(range(len(devs)), key=devs.__getitem__)
    return devs[i], steps[i]


def _by_step(traj: Trajectory, quantity: str) -> dict[int, float]:
    return dict(zip(traj.steps, traj.values[quantity], strict=True))


def _ordered(quantities: set[str]) -> list[str]:
    return [q for q in QUANTITIES if q in quantities]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
