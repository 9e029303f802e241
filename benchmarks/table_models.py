"""The models of a table: one per model alias, or one per seed group (the aliases of one recipe's training seeds,
``NAME-s0``, ``NAME-s1``, ...: :data:`SEED_PATTERN`), the baseline among them, the seeds of two groups paired for
gains, and a model's value in a cell (a group's mean, with its std beside it: :func:`put_value`).

Every layout, the plots and the checks name their columns (or rows) through these, so a seed group reads the same
everywhere.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from benchmarks.table_rows import LoadedRecord
from silc.errors import UserError

# aliases of one recipe's training seeds: NAME-s0, NAME-s1, ... (group 1: the recipe's name)
SEED_PATTERN = r"^(.*)-s(\d+)$"
STD = "_std"


@dataclass(frozen=True)
class Model:
    """A table column: one model alias, or the aliases of one recipe's seeds (``members``), shown as one."""

    name: str
    members: tuple[str, ...]

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1

    @property
    def label(self) -> str:
        return f"{self.name} (n={len(self.members)})" if self.is_group else self.name


def _natural(alias: str) -> list[Any]:
    """Sort key that puts ``x-s2`` before ``x-s10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", alias)]


def seed_groups(aliases: list[str] | set[str], pattern: str | None = SEED_PATTERN) -> list[Model]:
    """The table's models: aliases whose whole name matches ``pattern`` (a regex whose first group, or the group
    named ``name``, is the recipe) and share a recipe with another alias form one group; others stay alone.
    ``pattern`` None: no groups."""
    aliases = sorted(set(aliases), key=_natural)
    if pattern is None:
        return [Model(a, (a,)) for a in sorted(aliases)]
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise UserError(f"--group {pattern!r}: not a regular expression ({e})") from None
    if rx.groups < 1:
        raise UserError(
            f"--group {pattern!r}: needs a capturing group for the recipe name, e.g. {SEED_PATTERN!r}"
        )
    recipes: dict[str, list[str]] = defaultdict(list)
    alone: list[str] = []
    for alias in aliases:
        m = rx.fullmatch(alias)
        name = (m.group("name") if "name" in rx.groupindex else m.group(1)) if m else None
        (recipes[name].append(alias) if name else alone.append(alias))
    models = [Model(a, (a,)) for a in alone]
    for name, members in recipes.items():
        if len(members) == 1:
            models.append(Model(members[0], (members[0],)))
        elif name in alone:
            raise UserError(
                f"alias {name!r} and the seeds {', '.join(members)} share the name {name!r}; rename one or "
                "pass --no-group"
            )
        else:
            models.append(Model(name, tuple(members)))
    return sorted(models, key=lambda m: m.name)


def select_models(
    loaded: list[LoadedRecord], names: list[str] | tuple[str, ...], group: str | None = SEED_PATTERN
) -> list[LoadedRecord]:
    """The records of the models (aliases or seed-group names) in ``names``; a name with no records is a
    UserError listing the models there are."""
    models = seed_groups({lr.record.model for lr in loaded}, group)
    by_name = {m.name: m for m in models} | {a: Model(a, (a,)) for m in models for a in m.members}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise UserError(
            f"--models: no records for {', '.join(missing)}; models: {', '.join(m.name for m in models)}"
        )
    keep = {a for n in names for a in by_name[n].members}
    return [lr for lr in loaded if lr.record.model in keep]


def models_and_baseline(
    loaded: list[LoadedRecord], baseline: str | None, group: str | None = SEED_PATTERN
) -> tuple[list[Model], Model | None]:
    """(non-baseline models sorted, baseline); an explicit baseline that has no record is a UserError. The
    baseline may name a seed group."""
    models = seed_groups({lr.record.model for lr in loaded}, group)
    if baseline is None:
        return models, None
    by_name = {m.name: m for m in models}
    if baseline not in by_name:
        owner = next((m for m in models if baseline in m.members), None)
        if owner is not None:
            raise UserError(
                f"--baseline {baseline!r} is one seed of {owner.label}; pass --baseline {owner.name} "
                "(or --no-group)"
            )
        raise UserError(
            f"--baseline {baseline!r}: no records for that model; models: {', '.join(m.name for m in models)}"
        )
    return [m for m in models if m.name != baseline], by_name[baseline]


def default_baseline(loaded: list[LoadedRecord], group: str | None = SEED_PATTERN) -> str | None:
    """The baseline when none is named: a model (or seed group) named 'clip' if there is one."""
    names = {m.name for m in seed_groups({lr.record.model for lr in loaded}, group)}
    return "clip" if "clip" in names else None


def seed_pairs(model: Model, base: Model) -> list[tuple[str, str]]:
    """``model``'s and ``base``'s seeds paired by what follows the recipe name (``silc-s0`` with ``clip-s0``);
    empty unless both are seed groups of the same seeds."""
    if not (model.is_group and base.is_group):
        return []
    ours = {a.removeprefix(model.name): a for a in model.members}
    theirs = {a.removeprefix(base.name): a for a in base.members}
    return [(ours[k], theirs[k]) for k in sorted(ours, key=_natural)] if ours.keys() == theirs.keys() else []


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and std (ddof=1) over seeds; a single value is itself (std None); any undefined seed: (None, None)."""
    if not values or any(v is None for v in values):
        return None, None
    if len(values) == 1:
        return values[0], None
    return round(math.fsum(values) / len(values), 12), statistics.stdev(values)


def put_value(
    row: dict[str, Any], column: str, model: Model, values: dict[str, float | None], stds: dict[str, str]
) -> float | None:
    """``model``'s value in ``row`` (a group's mean, and its std in ``column + STD``, noted in ``stds``)."""
    mean, std = _mean_std([values.get(a) for a in model.members])
    row[column] = mean
    if model.is_group:
        row[column + STD] = std
        stds[column] = column + STD
    return mean
