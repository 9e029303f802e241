"""Regression of ablations: train the variants briefly, evaluate them, compare with the committed reference.

The suite's ``train`` section names each variant's config (plus ``--set``-style overrides, the step count and the
seed); its ``tolerances`` section gives the absolute tolerance per metric. Exit 0 when every metric of every
variant lies within tolerance of the reference, 1 on any regression, 2 on bad input.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from silc.errors import UserError


@dataclass(frozen=True)
class Variant:
    """One ablation configuration: a training config and its overrides."""

    name: str
    config: Path
    overrides: tuple[str, ...]


def parse_variants(suite) -> tuple[list[Variant], list[str]]:
    """The suite's training variants and the overrides every variant shares (steps, seed, common ``set``)."""
    train = suite.train
    where = f"{suite.path}: train"
    if not train or not isinstance(train.get("variants"), dict) or not train["variants"]:
        raise UserError(f"{where}: regress needs a 'train' section with a non-empty 'variants' mapping")
    for key in ("steps", "seed"):
        if not isinstance(train.get(key), int) or isinstance(train.get(key), bool):
            raise UserError(f"{where}.{key}: expected an integer")
    common = [f"train.steps={train['steps']}", f"seed={train['seed']}", *map(str, train.get("set") or [])]
    variants = []
    for name, spec in train["variants"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), str):
            raise UserError(f"{where}.variants.{name}: expected a mapping with 'config' (a YAML path)")
        config = (suite.path.parent / spec["config"]).resolve()
        if not config.is_file():
            raise UserError(f"{where}.variants.{name}.config: {config} does not exist")
        variants.append(Variant(str(name), config, tuple(map(str, spec.get("set") or []))))
    return variants, common


def train_variant(variant: Variant, common: list[str], world: Path, out: Path, device: str = "cpu") -> Path:
    """Train ``variant`` on the synthetic world into ``out`` (fresh); returns the run directory."""
    from silc.config import load_config
    from silc.train import train

    overrides = [
        *common,
        *variant.overrides,
        "data.kind=synthetic",
        f"data.path={world}",
        "train.deterministic=true",
        "train.progress=false",
        f"train.device={device}",
    ]
    cfg = load_config(variant.config, overrides)
    if out.exists():
        shutil.rmtree(out)
    train(cfg, out)
    return out


def _print_findings(findings) -> None:
    from benchmarks.regress import findings_table
    from benchmarks.tables import render

    failed = [f for f in findings if f.failed]
    if failed:
        print(f"REGRESSIONS: {len(failed)} of {len(findings)} metric(s) outside tolerance")
        print(render(findings_table(findings), "md", "full"), end="")
    else:
        print(f"no regressions: all {len(findings)} metric(s) within tolerance of the reference")


def regress(
    suite_name: str,
    reference: Path,
    update: bool = False,
    work: Path | None = None,
    budget_minutes: float = 20.0,
    device: str = "cpu",
) -> int:
    """Train, evaluate and compare every variant of the suite; 0 when all metrics are within tolerance, else 1."""
    from benchmarks.records import read_record
    from benchmarks.regress import Tolerances, compare, read_reference, write_reference
    from benchmarks.suites import load_suite
    from silc_bench.app.suite_run import run_suite
    from silc_bench.app.world_cache import ensure_world

    suite = load_suite(suite_name)
    suite.resolve()
    variants, common = parse_variants(suite)
    tolerances = Tolerances.from_config(suite.tolerances, f"{suite.path}: tolerances")
    if suite.world is None:
        raise UserError(
            f"{suite.path}: regress needs a 'world' (the synthetic world it trains and evaluates on)"
        )
    ref_lines = None if update else read_reference(reference)
    work = work or Path(tempfile.mkdtemp(prefix="silc-regress-"))
    world = ensure_world(str(suite.world["preset"]), int(suite.world["seed"]))
    start, budget = time.perf_counter(), budget_minutes * 60
    paths: list[Path] = []
    for i, v in enumerate(variants):
        t0 = time.perf_counter()
        print(f"[{i + 1}/{len(variants)}] train + evaluate {v.name} ({v.config.name})", file=sys.stderr)
        run_dir = train_variant(v, common, world, work / "runs" / v.name, device)
        new, _ = run_suite([f"{v.name}={run_dir}"], suite, world, work / "results", rerun=True, device=device)
        paths += new
        elapsed = time.perf_counter() - start
        print(f"    {v.name}: {time.perf_counter() - t0:.0f} s (total {elapsed:.0f} s)", file=sys.stderr)
        if elapsed > budget and i + 1 < len(variants):
            left = ", ".join(x.name for x in variants[i + 1 :])
            print(
                f"silc-bench regress: budget of {budget_minutes} min exceeded after {elapsed / 60:.1f} min; "
                f"not run: {left}",
                file=sys.stderr,
            )
            return 1
    records = [read_record(p) for p in paths]
    print(f"regress: {time.perf_counter() - start:.0f} s, records in {work / 'results'}", file=sys.stderr)
    if update:
        write_reference(reference, records)
        bar = "=" * 100
        print(
            f"{bar}\nREFERENCE UPDATED: {reference} rewritten with {len(records)} record(s) "
            f"({len(variants)} variants); review and commit the diff\n{bar}"
        )
        return 0
    findings = compare(ref_lines, records, tolerances)
    _print_findings(findings)
    return 1 if any(f.failed for f in findings) else 0
