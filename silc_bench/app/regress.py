"""Regression of ablations: train every variant of a suite, compare it with the committed reference, judge it.

Two tiers (``--tier``): ``fingerprints`` trains each variant for a few steps and compares its per-step trajectory
and its evaluation-path fingerprint with the reference, and requires every pair of variants to differ;
``metrics`` trains each variant to the suite's step count, evaluates it with the suite's benchmarks, compares every
metric, requires every headline metric to lie clear of chance and runs the suite's findings checks. Exit 0 when
everything holds, 1 on any failure, 2 on bad input. ``--update`` rewrites the reference from the run, refusing
when a gate (knob sensitivity, signal, checks) fails unless ``--force``, which the reference then records: its
``meta.json`` lists each failing gate item as acknowledged, and later runs report those as known (not failures)
while any other gate item still fails.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.regress_spec import TIERS, RegressSpec
from silc.errors import UserError
from silc_bench.app.variant_runs import TrainingFailed

TRAJECTORIES, EVAL_FINGERPRINTS, METRICS, META = (
    "trajectories.json",
    "eval_fingerprints.json",
    "metrics.jsonl",
    "meta.json",
)


@dataclass(frozen=True)
class Gate:
    """A gate that failed on this run: a title, its failing rows, and one key per failing item."""

    title: str
    table: pd.DataFrame
    items: tuple[str, ...]


@dataclass
class Outcome:
    """What one tier found: failed comparisons (against the reference) and failed gates (on this run alone)."""

    tier: str
    compared: int = 0
    failures: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    new_reference: dict[str, Any] = field(default_factory=dict)  # file name -> content to write on --update


def _render(df: pd.DataFrame) -> str:
    from benchmarks.table_render import render

    return render(df, "md", "full")


def _fingerprint_tier(
    spec: RegressSpec, world: Path, work: Path, reference: Path | None, jobs: int
) -> Outcome:
    from adapters import load_encoder
    from benchmarks.eval_fingerprint import compare_eval_fingerprints, eval_fingerprint, fingerprint_table
    from benchmarks.trajectories import (
        compare_trajectories,
        indistinguishable_pairs,
        read_trajectories,
        read_trajectory,
        trajectory_table,
    )
    from silc_bench.app.variant_runs import raise_on_failures, train_variants

    run = spec.runs["fingerprints"]
    print(f"fingerprints: {len(spec.variants)} variants x {run.steps} steps", file=sys.stderr)
    runs = train_variants(spec.variants, run, spec.seed, world, work / "fingerprints", spec.threads, jobs)
    raise_on_failures(runs)
    trajs = {r.variant: read_trajectory(r.run_dir / "log.jsonl", run.steps) for r in runs}
    prints = {r.variant: eval_fingerprint(load_encoder(str(r.run_dir), "cpu"), world) for r in runs}
    out = Outcome("fingerprints")
    tol = spec.trajectory_tolerance
    pairs = indistinguishable_pairs(trajs, tol)
    if pairs:
        rows = [{"variant": a, "other": b, "verdict": "indistinguishable"} for a, b in pairs]
        items = tuple(f"indistinguishable: {a} / {b}" for a, b in pairs)
        out.gates.append(
            Gate("knob sensitivity: variants X and Y are indistinguishable", pd.DataFrame(rows), items)
        )
    meta = {"steps": run.steps, "seed": spec.seed, "threads": spec.threads, "overrides": list(run.overrides)}
    out.new_reference = {TRAJECTORIES: (trajs, meta), EVAL_FINGERPRINTS: prints}
    if reference is None:
        return out
    ref_trajs, ref_meta = read_trajectories(reference / TRAJECTORIES)
    changed = [
        {"setting": k, "reference": ref_meta.get(k), "current": v}
        for k, v in meta.items()
        if ref_meta.get(k) != v
    ]
    if changed:
        out.failures.append(
            ("the fingerprint runs' settings differ from the reference's", pd.DataFrame(changed))
        )
    found = compare_trajectories(ref_trajs, trajs, tol)
    out.compared += len(found)
    if any(f.failed for f in found):
        out.failures.append(("trajectories outside tolerance", trajectory_table(found)))
    ref_prints = _read_json(reference / EVAL_FINGERPRINTS)
    for variant in sorted(set(ref_prints) | set(prints)):
        compared = compare_eval_fingerprints(
            ref_prints.get(variant, {}), prints.get(variant, {}), spec.eval_rtol
        )
        out.compared += len(compared)
        if any(f.failed for f in compared):
            out.failures.append((f"evaluation fingerprint of {variant} moved", fingerprint_table(compared)))
    return out


def _metrics_tier(
    spec: RegressSpec, suite, world: Path, work: Path, reference: Path | None, jobs: int, device: str
) -> Outcome:
    from benchmarks.checks import chance_exemptions, checks_table, run_checks, signal_findings, signal_table
    from benchmarks.records import read_record
    from benchmarks.regress import compare, findings_table, read_reference, reference_lines
    from benchmarks.table_rows import LoadedRecord
    from silc_bench.app.suite_run import run_suite
    from silc_bench.app.variant_runs import raise_on_failures, train_variants

    run = spec.runs["metrics"]
    print(f"metrics: {len(spec.variants)} variants x {run.steps} steps", file=sys.stderr)
    runs = train_variants(spec.variants, run, spec.seed, world, work / "runs", spec.threads, jobs, device)
    raise_on_failures(runs)
    paths: list[Path] = []
    for r in runs:  # only this run's records count (a reused --work may hold records of other variants)
        paths += run_suite(
            [f"{r.variant}={r.run_dir}"], suite, world, work / "results", rerun=True, device=device
        )[0]
    loaded = [LoadedRecord(p, read_record(p)) for p in sorted(set(paths))]
    records = [lr.record for lr in loaded]
    out = Outcome("metrics")
    checks = run_checks(list(spec.checks), loaded)
    signal = signal_findings(loaded, spec.min_se, chance_exemptions(list(spec.checks), loaded))
    if signal:
        out.notes.append(
            "signal (distance from chance in standard errors):\n" + _render(_signal_summary(signal))
        )
    if checks:
        out.notes.append("findings checks:\n" + _render(checks_table(checks)))
    if not all(f.passed for f in signal):
        failed = [f for f in signal if not f.passed]
        items = tuple(f"signal: {f.model} {f.benchmark}/{f.metric}" for f in failed)
        title = f"headline metrics under {spec.min_se:g} standard errors from chance"
        out.gates.append(Gate(title, signal_table(failed), items))
    if not all(c.passed for c in checks):
        failed = [c for c in checks if not c.passed]
        out.gates.append(
            Gate("findings checks that fail", checks_table(failed), tuple(f"check: {c.name}" for c in failed))
        )
    out.new_reference = {METRICS: reference_lines(records)}
    if reference is None:
        return out
    found = compare(read_reference(reference / METRICS), records, spec.tolerances)
    out.compared += len(found)
    if any(f.failed for f in found):
        out.failures.append(("metrics outside tolerance", findings_table(found)))
    return out


def _signal_summary(signal) -> pd.DataFrame:
    rows = [
        {
            "model": f.model,
            "metric": f"{f.benchmark}/{f.metric}",
            "value": f.value,
            "chance": f.chance,
            "se": f.se,
            "SEs from chance": "exempt (at chance by a check)" if f.exempt else f"{f.distance:.1f}",
        }
        for f in signal
    ]
    return pd.DataFrame(rows)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: reference file does not exist (create it with silc-bench regress --update)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e


def _check_reference(reference: Path, tiers: tuple[str, ...]) -> None:
    """Every reference file the tiers need exists and has the right shape, before any training."""
    from benchmarks.regress import read_reference
    from benchmarks.trajectories import read_trajectories

    if not (reference / META).is_file():
        raise UserError(f"{reference}: no reference there (create it with silc-bench regress --update)")
    if not isinstance(_read_json(reference / META), dict):
        raise UserError(f"{reference / META}: expected a JSON object (tier -> what was written)")
    if "fingerprints" in tiers:
        read_trajectories(reference / TRAJECTORIES)
        prints = _read_json(reference / EVAL_FINGERPRINTS)
        if not isinstance(prints, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
            for v in prints.values()
        ):
            raise UserError(f"{reference / EVAL_FINGERPRINTS}: expected {{variant: {{key: number}}}}")
    if "metrics" in tiers:
        read_reference(reference / METRICS)


def _report(outcome: Outcome, acknowledged: set[str]) -> list[str]:
    """Print the tier's notes and failures; returns its gate items not acknowledged by a forced reference."""
    for note in outcome.notes:
        print(note)
    for title, df in outcome.failures:
        print(f"FAILED [{outcome.tier}] {title}:")
        print(_render(df), end="")
    open_items = []
    for gate in outcome.gates:
        new = [i for i in gate.items if i not in acknowledged]
        known = [i for i in gate.items if i in acknowledged]
        if known:
            print(f"KNOWN [{outcome.tier}] acknowledged by the forced reference ({META}): {'; '.join(known)}")
        if new:  # the table's rows are the gate's items, in order
            print(f"FAILED [{outcome.tier}] {gate.title}:")
            print(
                _render(gate.table.iloc[[i for i, item in enumerate(gate.items) if item not in known]]),
                end="",
            )
        open_items += new
    fixed = sorted(acknowledged - {i for g in outcome.gates for i in g.items})
    if fixed:
        print(
            f"NOTE [{outcome.tier}] acknowledged gate items that now hold (rewrite the reference): {'; '.join(fixed)}"
        )
    return open_items


def _diff_summary(outcome: Outcome, reference: Path, spec: RegressSpec) -> list[str]:
    """What moved against the reference being replaced (one line per comparison group)."""
    previous = reference / (TRAJECTORIES if outcome.tier == "fingerprints" else METRICS)
    if not previous.is_file():
        return [f"{outcome.tier}: no previous reference ({previous} does not exist)"]
    try:
        compared = _fingerprint_diff(outcome, reference) if outcome.tier == "fingerprints" else None
        if outcome.tier == "metrics":
            compared = _metrics_diff(outcome, reference, spec)
    except UserError as e:
        return [f"{outcome.tier}: previous reference unreadable ({e})"]
    return compared


def _fingerprint_diff(outcome: Outcome, reference: Path) -> list[str]:
    from benchmarks.trajectories import max_deviation_table, read_trajectories

    trajs, _ = outcome.new_reference[TRAJECTORIES]
    old, _ = read_trajectories(reference / TRAJECTORIES)
    lines = [f"fingerprints: variant {v} is new" for v in sorted(set(trajs) - set(old))]
    lines += [f"fingerprints: variant {v} is dropped" for v in sorted(set(old) - set(trajs))]
    table = max_deviation_table(old, trajs)
    moved = table[table["max_rel_deviation"] > 0]
    if moved.empty:
        lines.append("fingerprints: trajectories of the common variants identical to the previous reference")
    else:
        lines += [
            "fingerprints: largest relative change per quantity against the previous reference:",
            _render(moved),
        ]
    return lines


def _metrics_diff(outcome: Outcome, reference: Path, spec: RegressSpec) -> list[str]:
    from benchmarks.regress import read_reference

    old = {(r["model"], r["benchmark"], r["protocol_hash"]): r for r in read_reference(reference / METRICS)}
    rows = []
    for line in outcome.new_reference[METRICS]:
        prev = old.pop((line["model"], line["benchmark"], line["protocol_hash"]), None)
        for metric, value in line["metrics"].items():
            before = prev["metrics"].get(metric) if prev else None
            if before != value:
                delta = None if before is None or value is None else value - before
                rows.append({"model": line["model"], "metric": f"{line['benchmark']}/{metric}", "before": before,
                             "after": value, "delta": delta})  # fmt: skip
    for key in old:
        rows.append({"model": key[0], "metric": f"{key[1]} (record dropped)", "before": None, "after": None})
    if not rows:
        return ["metrics: identical to the previous reference"]
    return [
        f"metrics: {len(rows)} value(s) changed against the previous reference:",
        _render(pd.DataFrame(rows)),
    ]


def _write_reference(outcomes: list[Outcome], reference: Path, suite_path: Path) -> None:
    from benchmarks.regress import write_reference_lines
    from benchmarks.trajectories import write_trajectories
    from silc.io import atomic_write_json

    reference.mkdir(parents=True, exist_ok=True)
    for outcome in outcomes:
        for name, content in outcome.new_reference.items():
            if name == TRAJECTORIES:
                write_trajectories(reference / name, *content)
            elif name == EVAL_FINGERPRINTS:
                atomic_write_json(reference / name, content)
            else:
                write_reference_lines(reference / name, content)
    meta = _read_json(reference / META) if (reference / META).is_file() else {}
    for outcome in outcomes:
        items = sorted(i for g in outcome.gates for i in g.items)  # non-empty only when forced
        meta[outcome.tier] = {
            "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "suite": str(suite_path.name),
            "forced": bool(items),
            "acknowledged": items,
        }
    atomic_write_json(reference / META, meta)


def regress(
    suite_name: str,
    reference: Path,
    tiers: tuple[str, ...] = TIERS,
    update: bool = False,
    force: bool = False,
    work: Path | None = None,
    jobs: int | None = None,
    budget_minutes: float = 30.0,
    device: str = "cpu",
) -> int:
    """Run the suite's regression tiers; 0 when every comparison and gate holds, else 1 (``--update``: rewrite
    the reference unless a gate fails and ``force`` is off)."""
    from benchmarks.regress_spec import parse_regress_spec
    from benchmarks.suites import load_suite
    from silc_bench.app.variant_runs import default_jobs
    from silc_bench.app.world_cache import ensure_world

    suite = load_suite(suite_name)
    suite.resolve()
    spec = parse_regress_spec(suite)
    if not update:
        _check_reference(reference, tiers)
    work = work or Path(tempfile.mkdtemp(prefix="silc-regress-"))
    world = ensure_world(str(suite.world["preset"]), int(suite.world["seed"]))
    jobs = jobs or default_jobs(spec.threads)
    start = time.perf_counter()
    outcomes = []
    try:
        for tier in tiers:
            t0 = time.perf_counter()
            ref = None if update else reference
            if tier == "fingerprints":
                outcomes.append(_fingerprint_tier(spec, world, work, ref, jobs))
            else:
                outcomes.append(_metrics_tier(spec, suite, world, work, ref, jobs, device))
            print(f"{tier}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    except TrainingFailed as e:
        print(f"REGRESSION: {e}")
        return 1
    elapsed = time.perf_counter() - start
    print(
        f"regress: {elapsed:.0f} s on {jobs} process(es) x {spec.threads} thread(s); runs in {work}",
        file=sys.stderr,
    )
    meta = _read_json(reference / META) if (reference / META).is_file() else {}
    gates = []
    for outcome in outcomes:
        acknowledged = set() if update else set(meta.get(outcome.tier, {}).get("acknowledged", []))
        gates += [f"[{outcome.tier}] {item}" for item in _report(outcome, acknowledged)]
    if update:
        return _update(outcomes, reference, gates, force, spec, suite.path)
    failures = sum(len(o.failures) for o in outcomes)
    over = elapsed > budget_minutes * 60
    if over:
        print(
            f"FAILED: the regression took {elapsed / 60:.1f} min, over its budget of {budget_minutes:g} min"
        )
    if failures or gates or over:
        print(f"REGRESSIONS: {failures} comparison group(s) and {len(gates)} gate item(s) failed")
        return 1
    compared = sum(o.compared for o in outcomes)
    print(f"no regressions: {compared} comparisons within tolerance, every gate holds ({', '.join(tiers)})")
    return 0


def _update(
    outcomes: list[Outcome],
    reference: Path,
    gates: list[str],
    force: bool,
    spec: RegressSpec,
    suite_path: Path,
) -> int:
    bar = "=" * 100
    for outcome in outcomes:
        print("\n".join(_diff_summary(outcome, reference, spec)))
    if gates and not force:
        print(
            f"{bar}\nREFERENCE NOT WRITTEN: {len(gates)} gate item(s) fail on this run ({'; '.join(gates)});"
        )
        print(f"fix them, or pass --force to write it anyway (the reference's {META} then says so)\n{bar}")
        return 1
    _write_reference(outcomes, reference, suite_path)
    forced = f" (FORCED past {len(gates)} failing gate item(s), acknowledged in {META})" if gates else ""
    print(f"{bar}\nREFERENCE UPDATED: {reference}{forced}; review and commit the diff\n{bar}")
    return 0
