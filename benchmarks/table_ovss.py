"""The open-vocabulary segmentation layout (``ovss``): the eight benchmarks of SCLIP / NACLIP's tables (the ovss8
suite's ``seg-ade20k`` protocols) as columns and their mean, one row per model and variant.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pandas as pd

from benchmarks.table_models import SEED_PATTERN, STD, put_value, seed_groups
from benchmarks.table_rows import LoadedRecord, harness_of, short_value
from silc.errors import UserError

# The ovss layout: seg-ade20k's protocols of the ovss8 suite -> their columns, in the order SCLIP / NACLIP print them
# (with a background class, then without), then the mean of the eight.
OVSS_BENCHMARK = "seg-ade20k"
OVSS_METRIC = "mIoU"
OVSS_COLUMNS = {"voc21": "VOC21", "context60": "PC60", "coco-object": "Object", "voc20": "VOC20",
                "context59": "PC59", "coco-stuff": "Stuff", "cityscapes": "City", "ade-336": "ADE"}  # fmt: skip
OVSS_MEAN = "Avg."


def _ovss_variant(protocol: dict[str, Any], shared: dict[str, Any]) -> str:
    """The knobs of ``shared`` (those the eight ovss protocols agree on: dense mode, templates, PAMR, ...) that a
    record's ``protocol`` sets otherwise, as ``key=value, ...`` ('' for none; a knob it leaves out is the default)."""
    return ", ".join(
        f"{k}={short_value(protocol.get(k, v))}" for k, v in shared.items() if protocol.get(k, v) != v
    )


def ovss_table(loaded: list[LoadedRecord], group: str | None = SEED_PATTERN) -> pd.DataFrame:
    """The open-vocabulary segmentation table as SCLIP / NACLIP print it: one row per model (a seed group as one
    row, mean ± std) and variant, the mIoU of each benchmark of ``OVSS_COLUMNS`` and their mean (undefined
    unless a model has all eight). A variant names the knobs shared by the eight protocols that its records set
    otherwise (``dense_mode=sclip``); one dataset's own knobs (sizes, names) do not split rows. Two records for
    one cell are refused; records of other benchmarks and protocols are left out."""
    harness = harness_of(OVSS_BENCHMARK)
    if harness is None:
        raise UserError(f"table layout ovss: benchmark {OVSS_BENCHMARK!r} is not installed")
    first, *others = (harness.protocols[name] for name in OVSS_COLUMNS)
    shared = {k: v for k, v in first.items() if all(k in p and p[k] == v for p in others)}
    cells: dict[tuple[str, str], dict[str, LoadedRecord]] = defaultdict(dict)  # (alias, variant) -> column
    for lr in loaded:
        r = lr.record
        if r.benchmark != OVSS_BENCHMARK or r.protocol_name not in OVSS_COLUMNS:
            continue
        variant, column = _ovss_variant(r.protocol, shared), OVSS_COLUMNS[r.protocol_name]
        taken = cells[(r.model, variant)].get(column)
        if taken is not None:
            raise UserError(
                f"conflicting records for model {r.model!r}, {column} (protocol {r.protocol_name!r}"
                f"{', ' + variant if variant else ''}): {taken.path}, {lr.path}; keep one (or point --results at "
                "one run)"
            )
        cells[(r.model, variant)][column] = lr
    if not cells:
        raise UserError(
            f"table layout ovss: no {OVSS_BENCHMARK} records of the protocols {', '.join(OVSS_COLUMNS)} "
            "(run the ovss8 suite)"
        )
    models = seed_groups({alias for alias, _ in cells}, group)
    any_group = any(m.is_group for m in models)
    rows, stds = [], {}
    for model in models:
        for variant in sorted({v for alias, v in cells if alias in model.members}):
            row: dict[str, Any] = {"model": f"{model.label} ({variant})" if variant else model.label}
            values = {a: _ovss_values(cells.get((a, variant), {})) for a in model.members}
            for column in [*OVSS_COLUMNS.values(), OVSS_MEAN]:
                put_value(row, column, model, {a: v[column] for a, v in values.items()}, stds)
                if any_group:
                    row.setdefault(column + STD, None)
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["std"] = stds
    df.attrs["benchmark"] = OVSS_BENCHMARK  # the metrics' scale (format_numbers)
    return df


def _ovss_values(records: dict[str, LoadedRecord]) -> dict[str, float | None]:
    """One model's (one alias, one variant) mIoU per ovss column, and their mean (None unless all eight are
    defined)."""
    values = {
        c: records[c].record.metrics.get(OVSS_METRIC) if c in records else None for c in OVSS_COLUMNS.values()
    }
    defined = [v for v in values.values() if v is not None]
    mean = round(math.fsum(defined) / len(defined), 12) if len(defined) == len(values) else None
    return {**values, OVSS_MEAN: mean}
