"""The layouts whose rows are the records' metrics: ``main`` (the paper's main results: each model, the baseline and
each model's gain with its intervals), ``ablation`` (configurations as rows, every benchmark's key metric as a
column) and ``full`` (every metric of every protocol, every seed).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from benchmarks.records import protocol_hash
from benchmarks.table_gains import (
    PairedGains,
    rounded_gain,
    seed_gain_interval,
    significant,
    significant_column,
)
from benchmarks.table_models import SEED_PATTERN, STD, models_and_baseline, put_value, seed_pairs
from benchmarks.table_rows import LoadedRecord, collect_rows, ordered_rows

LOW, HIGH = "_low", "_high"
SEED_LOW, SEED_HIGH = "_seeds_low", "_seeds_high"


def main_table(
    loaded: list[LoadedRecord],
    baseline: str | None,
    group: str | None = SEED_PATTERN,
    resamples: int | None = None,
) -> pd.DataFrame:
    """The paper's main results: benchmark, dataset, metric, each model, the baseline, and each model's gain,
    with the gain's paired-bootstrap interval (``gain_low``/``gain_high``) and ``significant`` when any record
    has per-sample outcomes."""
    others, base = models_and_baseline(loaded, baseline, group)
    cells, names = collect_rows(loaded, key_only=True)
    pairing = PairedGains(loaded, resamples) if base is not None else None
    with_ci = pairing is not None and pairing.active
    gains = {m.label: "gain" if len(others) == 1 else f"gain {m.label}" for m in others} if base else {}
    rows, stds = [], {}
    for key in ordered_rows(list(cells), names):
        vals = cells[key]
        row: dict[str, Any] = {"benchmark": names[key][0], "dataset": names[key][1], "metric": key.metric}
        means = {m.label: put_value(row, m.label, m, vals, stds) for m in others}
        if base is not None and pairing is not None:
            base_mean = put_value(row, f"{base.label} (baseline)", base, vals, stds)
            for m in others:
                g = gains[m.label]
                row[g] = rounded_gain(means[m.label], base_mean)
                ours, theirs = pairing.records(key, m), pairing.records(key, base)
                if ours and theirs:
                    pairing.check_units(ours + theirs)
                pairs = seed_pairs(m, base)
                if pairs:
                    row[g + SEED_LOW], row[g + SEED_HIGH] = seed_gain_interval(pairs, vals)
                if with_ci:
                    low, high = pairing.gain_interval(key, m, base) if row[g] is not None else (None, None)
                    row[g + LOW], row[g + HIGH] = low, high
                    row[significant_column(g)] = significant(low, high) and (
                        not pairs or significant(row[g + SEED_LOW], row[g + SEED_HIGH])
                    )
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["gains"] = gains
    df.attrs["intervals"] = (
        {g: (g + LOW, g + HIGH, significant_column(g)) for g in gains.values()} if with_ci else {}
    )
    df.attrs["seed_intervals"] = {
        gains[m.label]: (gains[m.label] + SEED_LOW, gains[m.label] + SEED_HIGH)
        for m in others
        if base is not None and seed_pairs(m, base)
    }
    df.attrs["std"] = stds
    return df


def ablation_table(
    loaded: list[LoadedRecord], baseline: str | None, group: str | None = SEED_PATTERN
) -> pd.DataFrame:
    """Configurations (models; a seed group as one row, mean ± std) as rows, the key metric of every
    benchmark/protocol as columns."""
    others, base = models_and_baseline(loaded, baseline, group)
    cells, names = collect_rows(loaded, key_only=True)
    order = ([base] if base else []) + others
    any_group = any(m.is_group for m in order)
    columns = {}
    for key in ordered_rows(list(cells), names):
        columns[f"{names[key][0]} {key.metric}"] = cells[key]
    rows, stds = [], {}
    for m in order:
        row: dict[str, Any] = {"configuration": m.label}
        for c, vals in columns.items():
            put_value(row, c, m, vals, stds)
            if any_group:
                row.setdefault(c + STD, None)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["std"] = stds
    return df


def full_table(
    loaded: list[LoadedRecord], baseline: str | None, group: str | None = SEED_PATTERN
) -> pd.DataFrame:
    """Every metric of every protocol: one row per (benchmark, protocol, dataset, metric), one column per model
    alias (every seed), and after a seed group's seeds its mean ± std."""
    others, base = models_and_baseline(loaded, baseline, group)
    cells, names = collect_rows(loaded, key_only=False)
    by_hash = {protocol_hash(lr.record.protocol): lr.record for lr in loaded}
    order = others + ([base] if base else [])
    rows, stds = [], {}
    for key in ordered_rows(list(cells), names):
        rec = by_hash[key.protocol_hash]
        row: dict[str, Any] = {
            "benchmark": key.benchmark,
            "protocol": rec.protocol_name,
            "protocol_hash": key.protocol_hash,
            "dataset": names[key][1],
            "metric": key.metric,
        }
        for m in order:
            row.update({a: cells[key].get(a) for a in m.members})
            if m.is_group:
                put_value(row, m.label, m, cells[key], stds)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["std"] = stds
    return df
