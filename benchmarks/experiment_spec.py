"""What ``silc-bench experiment`` trains and tabulates, read from a suite's ``experiment`` section: the recipes
(training configs), the seeds each is trained with, the shared run settings, and the tables (which recipes, which
layout, which baseline) the write-up shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.regress_spec import TrainRun, Variant, int_of, overrides_of, variant_config
from benchmarks.suites import Suite
from silc.errors import UserError

TABLE_LAYOUTS = ("main", "ablation")


@dataclass(frozen=True)
class ExperimentTable:
    """One table of the write-up: its recipes (each a seed group ``RECIPE-s<seed>``), layout and baseline."""

    name: str
    layout: str
    baseline: str
    recipes: tuple[str, ...]


@dataclass(frozen=True)
class ExperimentSpec:
    """Every recipe trained with every seed for ``run.steps`` steps (``threads`` torch threads per process)."""

    recipes: dict[str, Variant]  # name -> config and overrides (seed None)
    seeds: tuple[int, ...]
    threads: int
    run: TrainRun
    tables: tuple[ExperimentTable, ...]

    def seeded(self, recipe: str) -> list[Variant]:
        """``recipe`` once per seed, named ``RECIPE-s<seed>`` (the alias its records carry: a seed group)."""
        v = self.recipes[recipe]
        return [Variant(f"{recipe}-s{seed}", v.config, v.overrides, seed) for seed in self.seeds]

    def table(self, name: str) -> ExperimentTable:
        """The table called ``name`` (a UserError listing the known ones otherwise)."""
        for t in self.tables:
            if t.name == name:
                return t
        raise UserError(
            f"unknown table {name!r}; this experiment has: {', '.join(t.name for t in self.tables)}"
        )


def _recipes(obj: Any, suite: Suite, where: str) -> dict[str, Variant]:
    if not isinstance(obj, dict) or not obj:
        raise UserError(
            f"{where}.recipes: expected a non-empty mapping of recipe name -> {{config: FILE.yaml}}"
        )
    recipes = {}
    for name, spec in obj.items():
        at = f"{where}.recipes.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), str):
            raise UserError(f"{at}: expected a mapping with 'config' (a YAML path)")
        if "-s" in str(name) and str(name).rsplit("-s", 1)[1].isdigit():
            raise UserError(f"{at}: a recipe name must not end in -s<digits> (the seed suffix its runs get)")
        recipes[str(name)] = Variant(
            str(name), variant_config(spec["config"], suite.path.parent, at), overrides_of(spec, at)
        )
    return recipes


def _tables(obj: Any, recipes: dict[str, Variant], where: str) -> tuple[ExperimentTable, ...]:
    if not isinstance(obj, dict) or not obj:
        raise UserError(
            f"{where}.tables: expected a non-empty mapping of table name -> layout, baseline, recipes"
        )
    tables = []
    for name, spec in obj.items():
        at = f"{where}.tables.{name}"
        if not isinstance(spec, dict):
            raise UserError(f"{at}: expected a mapping with layout, baseline and recipes")
        layout, baseline, members = spec.get("layout"), spec.get("baseline"), spec.get("recipes")
        if layout not in TABLE_LAYOUTS:
            raise UserError(f"{at}.layout: expected one of {', '.join(TABLE_LAYOUTS)}, got {layout!r}")
        if not isinstance(members, list) or not members:
            raise UserError(f"{at}.recipes: expected a non-empty list of recipe names")
        unknown = [m for m in members if m not in recipes]
        if unknown:
            raise UserError(
                f"{at}.recipes: {', '.join(map(str, unknown))} not among the recipes ({', '.join(recipes)})"
            )
        if baseline not in members:
            raise UserError(f"{at}.baseline: expected one of the table's recipes, got {baseline!r}")
        tables.append(ExperimentTable(str(name), layout, baseline, tuple(members)))
    return tuple(tables)


def parse_experiment(suite: Suite) -> ExperimentSpec:
    """The suite's ``experiment`` section, every part checked (a missing or malformed key is a UserError naming it)."""
    where = f"{suite.path}: experiment"
    exp = suite.experiment
    if not exp:
        raise UserError(f"{suite.path}: no 'experiment' section (recipes, seeds, steps, tables)")
    if suite.world is None:
        raise UserError(
            f"{suite.path}: an experiment needs a 'world' (the synthetic world it trains and evaluates on)"
        )
    seeds = exp.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise UserError(f"{where}.seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}.seeds: {seeds} lists a seed twice")
    recipes = _recipes(exp.get("recipes"), suite, where)
    return ExperimentSpec(
        recipes=recipes,
        seeds=tuple(seeds),
        threads=int_of(exp, "threads", where, 1) if "threads" in exp else 1,
        run=TrainRun(int_of(exp, "steps", where, 1), overrides_of(exp, where)),
        tables=_tables(exp.get("tables"), recipes, where),
    )
