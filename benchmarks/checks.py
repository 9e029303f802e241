"""Statistical checks over result records: every headline metric clear of chance, and the paper's ablation findings
as named checks of a suite file (``checks:``), judged with the records' bootstrap intervals and the tables' paired
gains.

A chance level is a harness fact (:meth:`benchmarks.registry.Harness.chance`). Aliases of one recipe's seeds
(``NAME-s0``, ``NAME-s1``, ...) form one model, as in the tables: its value is the seeds' mean and its interval
that of the seed mean over the same resampled units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

from benchmarks import uncertainty
from benchmarks.records import protocol_hash
from benchmarks.registry import get_harness, harnesses
from benchmarks.table_gains import PairedGains
from benchmarks.table_models import Model, seed_groups
from benchmarks.table_rows import LoadedRecord, RowKey, scalar_metrics
from silc.errors import UserError

KINDS = ("not_above_chance", "above_chance", "gain")
DIRECTIONS = ("positive", "negative")
MIN_SE = 5.0  # standard errors a headline metric must lie above chance
_KEYS = {"finding", "kind", "model", "metrics", "protocol"}
_KIND_KEYS = {"not_above_chance": set(), "above_chance": {"margin_se"}, "gain": {"baseline", "direction"}}


@dataclass(frozen=True)
class Check:
    """A named finding: ``kind`` of ``model``'s ``metrics`` ((benchmark, metric) pairs), from a suite file.

    not_above_chance: each metric's 95 % interval reaches down to chance or below (no evidence of skill; a
    biased guesser can sit below chance); above_chance: (value -
    chance) / SE >= margin_se; gain: the paired 95 % interval of model - baseline lies above 0 (positive) or
    below (negative). ``protocol`` names the protocol where a benchmark was run under several."""

    name: str
    finding: str
    kind: str
    model: str
    metrics: tuple[tuple[str, str], ...]
    protocol: str | None = None
    baseline: str | None = None
    direction: str = "positive"
    margin_se: float = MIN_SE


@dataclass(frozen=True)
class CheckResult:
    """A check's verdict, with one line per metric saying why (value, chance, SE or interval)."""

    name: str
    finding: str
    passed: bool
    details: tuple[str, ...]


@dataclass(frozen=True)
class SignalFinding:
    """How far one headline metric of one record lies above chance, in bootstrap standard errors."""

    model: str
    benchmark: str
    protocol: str
    metric: str
    value: float | None
    chance: float
    se: float | None
    distance: float  # (value - chance) / se; NaN without an SE or a value
    exempt: bool  # a check asserts this metric to be no better than chance
    passed: bool


def distance_se(value: float | None, chance: float, se: float | None) -> float:
    """(value - chance) / se; with se 0: +inf above chance, 0 at it, -inf below; NaN without a value or an SE."""
    if value is None or se is None or math.isnan(value) or math.isnan(se):
        return math.nan
    if se == 0:
        return math.inf if value > chance else (0.0 if value == chance else -math.inf)
    return (value - chance) / se


def signal_findings(
    loaded: list[LoadedRecord],
    min_se: float = MIN_SE,
    exempt: set[tuple[str, str, str]] | frozenset[tuple[str, str, str]] = frozenset(),
) -> list[SignalFinding]:
    """Every headline metric with a chance level of every record: it passes when it lies at least ``min_se``
    bootstrap SEs (its ``metrics_ci``) above chance, or when (model alias, benchmark, metric) is in ``exempt``;
    a metric without an SE cannot show it."""
    pairing = PairedGains(loaded)  # loads and verifies each record's outcomes file
    registered = harnesses()
    out = []
    for lr in loaded:
        r, harness = lr.record, registered.get(lr.record.benchmark)
        if harness is None:
            continue
        metrics = scalar_metrics(r.metrics)
        chance = harness.chance(r, pairing.outcomes(lr))
        for metric in harness.key_metrics or tuple(metrics):
            if metric not in chance:
                continue
            value, se = metrics.get(metric), (r.metrics_ci.get(metric) or {}).get("se")
            distance = distance_se(value, chance[metric], se)
            skip = (r.model, r.benchmark, metric) in exempt
            out.append(
                SignalFinding(
                    r.model, r.benchmark, r.protocol_name, metric, value, chance[metric], se, distance, skip,
                    skip or distance >= min_se,
                )
            )  # fmt: skip
    return out


def signal_table(findings: list[SignalFinding]) -> pd.DataFrame:
    """One row per finding, one column per :class:`SignalFinding` field."""
    return pd.DataFrame([asdict(f) for f in findings], columns=[f.name for f in fields(SignalFinding)])


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}.{key}: required, a non-empty string")
    return value


def _number(obj: dict[str, Any], key: str, default: float, where: str) -> float:
    value = obj.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise UserError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    return float(value)


def _metric(text: Any, where: str) -> tuple[str, str]:
    """``benchmark/metric`` as a pair; the benchmark must be registered."""
    if not isinstance(text, str) or "/" not in text:
        raise UserError(f"{where}: expected benchmark/metric, got {text!r}")
    benchmark, metric = text.split("/", 1)
    try:
        get_harness(benchmark)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    return benchmark, metric


def _parse_check(name: str, obj: Any, where: str) -> Check:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a mapping with finding, kind, model and metrics")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise UserError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    valid = _KEYS | _KIND_KEYS[kind]
    for key in obj:
        if key not in valid:
            raise UserError(f"{where}.{key}: unknown key for a {kind} check; valid: {sorted(valid)}")
    metrics = obj.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise UserError(f"{where}.metrics: required, a non-empty list of benchmark/metric")
    direction = obj.get("direction", "positive")
    if direction not in DIRECTIONS:
        raise UserError(f"{where}.direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")
    protocol = obj.get("protocol")
    return Check(
        name=name,
        finding=_text(obj, "finding", where),
        kind=kind,
        model=_text(obj, "model", where),
        metrics=tuple(_metric(m, f"{where}.metrics[{i}]") for i, m in enumerate(metrics)),
        protocol=None if protocol is None else _text(obj, "protocol", where),
        baseline=_text(obj, "baseline", where) if kind == "gain" else None,
        direction=direction,
        margin_se=_number(obj, "margin_se", MIN_SE, where),
    )


def parse_checks(obj: Any, source: str) -> list[Check]:
    """The checks of a suite file's ``checks:`` mapping (name -> check); a bad one is a UserError naming
    ``source.name.key``."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a mapping of check names to checks")
    return [_parse_check(str(name), body, f"{source}.{name}") for name, body in obj.items()]


def chance_exemptions(checks: list[Check], loaded: list[LoadedRecord]) -> set[tuple[str, str, str]]:
    """The (model alias, benchmark, metric) triples that not_above_chance checks assert to be no better than chance (a seed group
    stands for each of its seeds), for :func:`signal_findings`."""
    models = _models(loaded)
    return {
        (alias, benchmark, metric)
        for check in checks
        if check.kind == "not_above_chance"
        for alias in (models[check.model].members if check.model in models else (check.model,))
        for benchmark, metric in check.metrics
    }


def _models(loaded: list[LoadedRecord]) -> dict[str, Model]:
    """Every alias as a model of its own, and every seed group under its recipe's name (as the tables group)."""
    aliases = {lr.record.model for lr in loaded}
    return {a: Model(a, (a,)) for a in aliases} | {m.name: m for m in seed_groups(aliases)}


class _Judge:
    """The records of a results folder as the tables see them: models (seed groups) and paired intervals."""

    def __init__(self, loaded: list[LoadedRecord], resamples: int | None) -> None:
        self.loaded = loaded
        self.pairing = PairedGains(loaded, resamples)
        self.models = _models(loaded)

    def model(self, name: str) -> Model:
        if name not in self.models:
            raise UserError(f"no records of model {name!r}; models: {', '.join(sorted(self.models))}")
        return self.models[name]

    def row(self, models: list[Model], benchmark: str, metric: str, protocol: str | None) -> RowKey:
        """The one (protocol, dataset) row of ``metric`` where every model has records."""
        rows = {
            RowKey(benchmark, protocol_hash(lr.record.protocol), lr.record.dataset_root, metric): lr.record
            for lr in self.loaded
            if lr.record.benchmark == benchmark
            and protocol in (None, lr.record.protocol_name)
            and metric in scalar_metrics(lr.record.metrics)
        }
        found = {k: r for k, r in rows.items() if all(self.pairing.records(k, m) for m in models)}
        names = " and ".join(repr(m.name) for m in models)
        if not found:
            raise UserError(f"no {benchmark} record with {metric} for {names}")
        if len(found) > 1:
            labels = ", ".join(sorted(f"{r.protocol_name} on {r.dataset_root}" for r in found.values()))
            raise UserError(
                f"{len(found)} {benchmark} records for {names} ({labels}); name one with protocol:"
            )
        return next(iter(found))

    def value(self, key: RowKey, model: Model) -> float:
        """The model's metric: its record's, or the mean of its seeds'."""
        values = [
            scalar_metrics(lr.record.metrics).get(key.metric) for lr in self.pairing.records(key, model)
        ]
        if any(v is None for v in values):
            raise UserError(f"{key.metric} of {model.name!r} is undefined")
        return math.fsum(values) / len(values)

    def spread(self, key: RowKey, model: Model) -> tuple[float, float, float]:
        """(low, high, se) of the model's metric: its record's ``metrics_ci``, or a seed group's bootstrap."""
        lrs = self.pairing.records(key, model)
        if len(lrs) == 1:
            ci = lrs[0].record.metrics_ci.get(key.metric) or {}
        else:
            reps = self.pairing.replicates(key, [model])
            ci = uncertainty.interval(reps[0][key.metric]) if reps and key.metric in reps[0] else {}
        if any(ci.get(k) is None for k in ("low", "high", "se")):
            raise UserError(
                f"{key.metric} of {model.name!r} has no bootstrap interval (no per-sample outcomes)"
            )
        return ci["low"], ci["high"], ci["se"]

    def chance(self, key: RowKey, model: Model) -> float:
        lr = self.pairing.records(key, model)[0]
        harness = harnesses().get(key.benchmark)
        chance = harness.chance(lr.record, self.pairing.outcomes(lr)) if harness else {}
        if key.metric not in chance:
            raise UserError(f"{key.benchmark} defines no chance level for {key.metric} of this record")
        return chance[key.metric]

    def judge(self, check: Check, benchmark: str, metric: str) -> tuple[bool, str]:
        """(passed, one line) for one metric of ``check``."""
        model = self.model(check.model)
        if check.kind == "gain":
            base = self.model(str(check.baseline))
            key = self.row([model, base], benchmark, metric, check.protocol)
            gain = self.value(key, model) - self.value(key, base)
            low, high = self.pairing.gain_interval(key, model, base)
            if low is None or high is None:
                raise UserError("no paired interval (the records keep no per-sample outcomes)")
            passed = low > 0 if check.direction == "positive" else high < 0
            return passed, f"gain {gain:+.4g} over {base.name}, 95% paired CI [{low:+.4g}, {high:+.4g}]"
        key = self.row([model], benchmark, metric, check.protocol)
        value, chance = self.value(key, model), self.chance(key, model)
        low, high, se = self.spread(key, model)
        distance = distance_se(value, chance, se)
        text = f"{value:.4g} vs chance {chance:.4g}: {distance:+.1f} SE (SE {se:.3g}, 95% CI [{low:.4g}, {high:.4g}])"
        if check.kind == "not_above_chance":
            return low <= chance, text
        return distance >= check.margin_se, f"{text}, needs >= {check.margin_se:g} SE"

    def run(self, check: Check) -> CheckResult:
        verdicts = []
        for benchmark, metric in check.metrics:
            try:
                passed, text = self.judge(check, benchmark, metric)
            except UserError as e:
                passed, text = False, str(e)
            verdicts.append((passed, f"{benchmark}/{metric}: {text}"))
        return CheckResult(
            check.name, check.finding, all(p for p, _ in verdicts), tuple(t for _, t in verdicts)
        )


def run_checks(
    checks: list[Check], loaded: list[LoadedRecord], resamples: int | None = None
) -> list[CheckResult]:
    """Each check judged on ``loaded`` (:func:`benchmarks.table_rows.load_results`); a missing model, record,
    metric, chance level or interval fails the check, saying which. Gains (and a seed group's interval) use the
    tables' paired bootstrap with ``resamples`` (None: as many as the records' own intervals, their seed)."""
    judge = _Judge(loaded, resamples)
    return [judge.run(check) for check in checks]


def checks_table(results: list[CheckResult]) -> pd.DataFrame:
    """One row per check: check, finding, passed, detail (the metrics' lines joined by '; ')."""
    rows = [[r.name, r.finding, r.passed, "; ".join(r.details)] for r in results]
    return pd.DataFrame(rows, columns=["check", "finding", "passed", "detail"])
