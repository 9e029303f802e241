"""Result tables with pandas: the paper's main-results layout, an ablation layout, a full layout and the
open-vocabulary segmentation layout (``ovss``: the eight benchmarks of SCLIP / NACLIP's tables).

Every number comes from one result record. Records that would share a cell but differ in protocol get separate
rows that name the protocol; two records for the very same cell are refused, never averaged or picked silently.

Gains over the baseline carry a 95 % interval from a *paired* bootstrap over the records' per-sample outcomes (the
same resampled units for the model and the baseline, :mod:`benchmarks.uncertainty`); aliases of one recipe's
seeds (``NAME-s0``, ``NAME-s1``, ...) form one column, their mean ± std. The numeric frames keep intervals and
stds in auxiliary columns named in ``DataFrame.attrs`` (CSV keeps them as columns); Markdown and LaTeX fold them
into the cells (``mean ± std``, a ``gain 95% CI`` column, bold gains whose interval excludes 0).

This module names the layouts and builds one by name (:func:`build_table`); the parts live beside it: the records
keyed into rows (``benchmarks/table_rows.py``), the models and seed groups (``benchmarks/table_models.py``), the
gains and their intervals (``benchmarks/table_gains.py``), the layouts (``benchmarks/table_main.py``: main,
ablation, full; ``benchmarks/table_ovss.py``: ovss) and the text (``benchmarks/table_render.py``).
"""

from __future__ import annotations

import pandas as pd

from benchmarks.table_main import ablation_table, full_table, main_table
from benchmarks.table_models import SEED_PATTERN
from benchmarks.table_ovss import ovss_table
from benchmarks.table_rows import LoadedRecord
from silc.errors import UserError

LAYOUTS = ("main", "ablation", "full", "ovss")


def build_table(
    loaded: list[LoadedRecord],
    layout: str = "main",
    baseline: str | None = None,
    group: str | None = SEED_PATTERN,
    resamples: int | None = None,
) -> pd.DataFrame:
    """The numeric table for ``layout`` (undefined values are None). ``group``: the seed-alias pattern (None: no
    groups); ``resamples``: bootstrap resamples for the gains' intervals (None: as the records', 0: none)."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown table layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "main":
        return main_table(loaded, baseline, group, resamples)
    if layout == "ablation":
        return ablation_table(loaded, baseline, group)
    if layout == "ovss":
        return ovss_table(loaded, group)
    return full_table(loaded, baseline, group)
