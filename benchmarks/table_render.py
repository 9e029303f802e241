"""A numeric table as text: Markdown, a LaTeX tabular or CSV (:func:`render`). Numbers get each benchmark's
decimals; Markdown and LaTeX fold the auxiliary columns into the cells (``mean ± std``, a ``gain 95% CI`` column,
bold gains whose interval excludes 0) and :func:`caption` says what the interval columns mean; CSV keeps full
precision and the auxiliary columns.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmarks import uncertainty
from benchmarks.table_rows import harness_of
from silc.errors import UserError

FORMATS = ("md", "latex", "csv")
LATEX_STD = ("small", "plain")
TEXT_COLUMNS = frozenset({"benchmark", "dataset", "metric", "protocol", "protocol_hash", "configuration"})


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    """Columns holding only numbers or undefined values (text columns such as names are left as they are)."""
    return [
        c
        for c in df.columns
        if c not in TEXT_COLUMNS
        and all(_is_missing(v) or (isinstance(v, int | float) and not isinstance(v, bool)) for v in df[c])
    ]


def _decimals(values: list[Any], benchmark: str | None = None) -> int:
    """Four decimals for fractions, two for percentages: the harness's ``metric_scale``; for a benchmark no
    harness declares, guessed (four when every value lies in [-1, 1])."""
    harness = harness_of(benchmark) if benchmark else None
    if harness is not None:
        return 4 if harness.metric_scale == "fraction" else 2
    nums = [abs(v) for v in values if not _is_missing(v)]
    return 4 if nums and max(nums) <= 1.0 else 2


def format_numbers(df: pd.DataFrame, layout: str) -> pd.DataFrame:
    """Numbers as text, signed gains, 'n/a' if undefined; the decimals follow the scale of each benchmark's rows
    (each column in the ablation layout, a std column as its mean's), so one benchmark's numbers line up."""
    cols = _numeric_columns(df)
    if layout == "ablation" or "benchmark" not in df.columns:
        by_col = {c: _decimals(list(df[c]), df.attrs.get("benchmark")) for c in cols}  # ovss: one benchmark's
        for c, s in df.attrs.get("std", {}).items():
            if c in by_col and s in by_col:
                by_col[s] = by_col[c]
        decimals = {(i, c): by_col[c] for i in df.index for c in cols}
    else:
        groups = df.groupby("benchmark", sort=False).groups
        by_group = {
            g: _decimals(df.loc[rows, cols].to_numpy().ravel().tolist(), str(g).split(" (")[0])
            for g, rows in groups.items()
        }
        decimals = {(i, c): by_group[df.at[i, "benchmark"]] for i in df.index for c in cols}
    out = df.astype(object).copy()
    for (i, c), d in decimals.items():
        v = df.at[i, c]
        sign = "+" if str(c).startswith("gain") and not _is_missing(v) and v > 0 else ""
        out.at[i, c] = "n/a" if _is_missing(v) else f"{sign}{v:.{d}f}"
    return out


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX (pandas' ``escape="latex"`` rules: & % $ # _ { } ~ ^ \\)."""
    mark = "\x00"
    return (
        text.replace("\\", mark)
        .replace(mark + " ", mark + "\\space ")
        .replace("&", "\\&")
        .replace("%", "\\%")
        .replace("$", "\\$")
        .replace("#", "\\#")
        .replace("_", "\\_")
        .replace("{", "\\{")
        .replace("}", "\\}")
        .replace("~ ", "~\\space ")
        .replace("~", "\\textasciitilde ")
        .replace("^ ", "^\\space ")
        .replace("^", "\\textasciicircum ")
        .replace(mark, "\\textbackslash ")
    )


def ci_column(gain_column: str) -> str:
    """The Markdown/LaTeX column holding ``gain_column``'s interval: ``gain [model] 95% CI``."""
    return f"{gain_column} {round(uncertainty.CONFIDENCE * 100)}% CI"


def seed_ci_column(gain_column: str) -> str:
    """The Markdown/LaTeX column holding the seed interval of ``gain_column``: ``gain [model] seeds 95% CI``."""
    return f"{gain_column} seeds {round(uncertainty.CONFIDENCE * 100)}% CI"


def _fold(df: pd.DataFrame, text: pd.DataFrame, fmt: str, latex_std: str) -> tuple[pd.DataFrame, set[str]]:
    """Fold the auxiliary columns into the text: ``mean ± std`` cells, a ``gain 95% CI`` column after each gain,
    the gains whose interval excludes 0 in bold. Returns the text and its right-aligned columns."""
    right = set(_numeric_columns(df))
    if fmt == "latex":
        text = text.map(lambda v: latex_escape(v) if isinstance(v, str) else v)
        bold = "\\textbf{{{}}}".format
        pm = "{{\\scriptsize $\\pm${}}}".format if latex_std == "small" else " $\\pm$ {}".format
    else:
        bold = "**{}**".format
        pm = " ± {}".format
    drop: set[str] = set()
    for column, std in df.attrs.get("std", {}).items():
        text[column] = [
            v if v == "n/a" or s == "n/a" else f"{v}{pm(s)}"
            for v, s in zip(text[column], text[std], strict=True)
        ]
        drop.add(std)
    order = [c for c in text.columns]
    for gain, (low, high, sig) in df.attrs.get("intervals", {}).items():
        ci = ci_column(gain)
        text[ci] = [
            "n/a" if "n/a" in (a, b) else f"[{a}, {b}]" for a, b in zip(text[low], text[high], strict=True)
        ]
        text[gain] = [bold(v) if bool(s) else v for v, s in zip(text[gain], df[sig], strict=True)]
        order.insert(order.index(gain) + 1, ci)
        right.add(ci)
        drop.update((low, high, sig))
    for gain, (low, high) in df.attrs.get("seed_intervals", {}).items():
        ci = seed_ci_column(gain)
        text[ci] = [
            "n/a" if "n/a" in (a, b) else f"[{a}, {b}]" for a, b in zip(text[low], text[high], strict=True)
        ]
        after = ci_column(gain) if ci_column(gain) in order else gain
        order.insert(order.index(after) + 1, ci)
        right.add(ci)
        drop.update((low, high))
    return text[[c for c in order if c not in drop]], right


def caption(df: pd.DataFrame) -> str:
    """What a main table's interval columns mean (empty when it has none), one line each."""
    lines = []
    if df.attrs.get("intervals"):
        lines.append(
            "gain 95% CI: paired percentile bootstrap over the evaluation's images (retrieval: images with their "
            "captions), same resamples for both models; **bold**: the interval excludes 0"
        )
    if df.attrs.get("seed_intervals"):
        lines.append(
            "gain seeds 95% CI: Student-t interval over the per-seed paired gains (seed i minus the baseline's "
            "seed i: the training-seed spread; the bootstrap averages the seeds per resample); **bold** then needs "
            "both intervals to exclude 0"
        )
    return "".join(f"{line}\n" for line in lines)


def render(df: pd.DataFrame, fmt: str, layout: str, latex_std: str = "small") -> str:
    r"""The table as Markdown, a LaTeX tabular, or CSV (CSV keeps full precision and the auxiliary columns:
    ``<model>_std``, ``gain_low``, ``gain_high``, ``significant``). ``latex_std``: ``small`` prints a seed group's
    ``mean{\scriptsize $\pm$std}`` as papers do, ``plain`` ``mean $\pm$ std``."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; known: {', '.join(FORMATS)}")
    if latex_std not in LATEX_STD:
        raise UserError(f"unknown --latex-std {latex_std!r}; known: {', '.join(LATEX_STD)}")
    if df.empty:
        raise UserError("no metrics to tabulate")
    if fmt == "csv":
        return df.to_csv(index=False)
    text, right = _fold(df, format_numbers(df, layout), fmt, latex_std)
    align = ["right" if c in right else "left" for c in text.columns]
    if fmt == "md":
        return text.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
    column_format = "".join("r" if a == "right" else "l" for a in align)
    styler = text.style.hide(axis="index").format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, column_format=column_format)
