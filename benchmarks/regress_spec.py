"""What ``silc-bench regress`` runs and how it judges, read from a suite file: the training variants, the short
fingerprint run and its tolerances, the metric tolerances, the signal gate and the findings checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.checks import MIN_SE, Check, parse_checks
from benchmarks.regress import Tolerances
from benchmarks.suites import Suite
from benchmarks.trajectories import TrajectoryTolerance
from silc.errors import UserError

TIERS = ("fingerprints", "metrics")


@dataclass(frozen=True)
class Variant:
    """One training configuration: a config file, its overrides and, when it is not the run's, its own seed."""

    name: str
    config: Path
    overrides: tuple[str, ...]
    seed: int | None = None  # None: the seed every variant of the run shares


@dataclass(frozen=True)
class TrainRun:
    """How every variant is trained for one tier: the step count and the overrides all variants share."""

    steps: int
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class RegressSpec:
    """The regression of a suite: variants, the two training runs and every tolerance and check."""

    variants: tuple[Variant, ...]
    seed: int
    threads: int
    runs: dict[str, TrainRun]  # tier -> run
    trajectory_tolerance: TrajectoryTolerance
    eval_rtol: float
    tolerances: Tolerances
    min_se: float
    checks: tuple[Check, ...]


def int_of(obj: dict[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def overrides_of(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    value = obj.get("set") or []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise UserError(f"{where}.set: expected a list of KEY=VALUE overrides")
    return tuple(value)


def shipped_configs() -> Path:
    """The training configs shipped with silc-bench: the checkout's top-level ``configs/``, installed by the wheel
    as ``silc/configs/`` (pyproject maps the folder there)."""
    import silc

    package = Path(silc.__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def variant_config(value: str, base: Path, at: str) -> Path:
    """A variant's config file: ``value`` relative to the suite's folder ``base``, else among the shipped
    training configs (so the shipped suites work from a checkout and from an installed wheel alike)."""
    folders = (base, shipped_configs())
    for folder in folders:
        config = (folder / value).resolve()
        if config.is_file():
            return config
    raise UserError(
        f"{at}.config: {value} is not a file relative to the suite ({base}) nor among the shipped training "
        f"configs ({folders[1]})"
    )


def _variants(train: dict[str, Any], base: Path, where: str) -> tuple[Variant, ...]:
    variants = train.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise UserError(f"{where}.variants: regress needs a non-empty mapping of variants")
    out = []
    for name, spec in variants.items():
        at = f"{where}.variants.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), str):
            raise UserError(f"{at}: expected a mapping with 'config' (a YAML path)")
        out.append(Variant(str(name), variant_config(spec["config"], base, at), overrides_of(spec, at)))
    return tuple(out)


def parse_regress_spec(suite: Suite) -> RegressSpec:
    """The suite's regression, every part checked (a missing or malformed section is a UserError naming it)."""
    where = f"{suite.path}"
    if suite.world is None:
        raise UserError(f"{where}: regress needs a 'world' (the synthetic world it trains and evaluates on)")
    train, fingerprint = suite.train, suite.fingerprint
    if not train:
        raise UserError(f"{where}: regress needs a 'train' section (variants, steps, seed)")
    if not fingerprint:
        raise UserError(f"{where}: regress needs a 'fingerprint' section (steps, tolerance, eval_rtol)")
    eval_rtol = fingerprint.get("eval_rtol")
    if not isinstance(eval_rtol, int | float) or isinstance(eval_rtol, bool) or eval_rtol <= 0:
        raise UserError(f"{where}: fingerprint.eval_rtol: expected a number > 0, got {eval_rtol!r}")
    min_se = suite.signal.get("min_se", MIN_SE)
    if not isinstance(min_se, int | float) or isinstance(min_se, bool) or min_se < 0:
        raise UserError(f"{where}: signal.min_se: expected a number >= 0, got {min_se!r}")
    return RegressSpec(
        variants=_variants(train, suite.path.parent, f"{where}: train"),
        seed=int_of(train, "seed", f"{where}: train"),
        threads=int_of(train, "threads", f"{where}: train", 1) if "threads" in train else 1,
        runs={
            "fingerprints": TrainRun(
                int_of(fingerprint, "steps", f"{where}: fingerprint", 1),
                overrides_of(train, f"{where}: train") + overrides_of(fingerprint, f"{where}: fingerprint"),
            ),
            "metrics": TrainRun(
                int_of(train, "steps", f"{where}: train", 1), overrides_of(train, f"{where}: train")
            ),
        },
        trajectory_tolerance=TrajectoryTolerance.from_config(
            fingerprint.get("tolerance") or {}, f"{where}: fingerprint.tolerance"
        ),
        eval_rtol=float(eval_rtol),
        tolerances=Tolerances.from_config(suite.tolerances, f"{where}: tolerances"),
        min_se=float(min_se),
        checks=tuple(parse_checks(suite.checks, f"{where}: checks")),
    )
