"""Benchmark suites: YAML lists of (benchmark, protocol, overrides, dataset sub-path) that `silc-bench run` sweeps.

A suite is data, not code: ``default`` runs on the synthetic world, ``paper`` on the real datasets under
``--data-root``, ``ablations`` adds the training variants, tolerances and checks that ``silc-bench regress`` uses.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.registry import get_harness
from silc.errors import UserError

SUITES_DIR = Path(__file__).resolve().parent / "suites"
_SUITE_KEYS = {
    "name",
    "description",
    "world",
    "benchmarks",
    "train",
    "tolerances",
    "fingerprint",
    "signal",
    "checks",
}
_ENTRY_KEYS = {"benchmark", "protocol", "data", "overrides", "options", "requires", "layout"}


@dataclass(frozen=True)
class SuiteEntry:
    """One benchmark run of a suite: which harness, which named protocol, which knobs, which data."""

    benchmark: str
    protocol: str | None  # None: the harness's default protocol
    data: str  # sub-path under the data root
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # files/folders (relative to the dataset folder) that must exist
    layout: str = ""  # how the dataset must be laid out (shown by the preflight)


@dataclass(frozen=True)
class ResolvedEntry:
    """A suite entry checked against the registry: the frozen protocol dict a record will carry."""

    entry: SuiteEntry
    protocol_name: str
    protocol: dict[str, Any]


@dataclass(frozen=True)
class Suite:
    """A named list of benchmark entries, plus the synthetic world it runs on and what ``silc-bench regress``
    needs (training variants, fingerprint run, tolerances, signal gate, findings checks)."""

    name: str
    path: Path
    description: str
    entries: tuple[SuiteEntry, ...]
    world: dict[str, Any] | None = (
        None  # {"preset": ..., "seed": ...} when the suite runs on the synthetic world
    )
    train: dict[str, Any] = field(default_factory=dict)
    tolerances: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    signal: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    def resolve(self) -> list[ResolvedEntry]:
        """Every entry with its harness and protocol checked (unknown benchmark/protocol/knob is a UserError)."""
        resolved = []
        for i, e in enumerate(self.entries):
            harness = get_harness(e.benchmark)
            name = e.protocol or harness.default_protocol
            try:
                protocol = harness.resolve_protocol(name, e.overrides)
                harness.parse_options(e.options, "options")
            except UserError as err:
                raise UserError(f"{self.path}: benchmarks[{i}]: {err}") from err
            resolved.append(ResolvedEntry(e, name, protocol))
        return resolved

    def preflight(self, data_root: Path) -> list[Preflight]:
        """What is missing under ``data_root``, per suite entry that cannot run, with the layout it expects."""
        failed, seen = [], set()
        for e in self.entries:
            folder = data_root / e.data
            found = get_harness(e.benchmark).preflight(folder)
            found += [f"{folder / r}: not found" for r in e.requires if not (folder / r).exists()]
            fresh = [m for m in dict.fromkeys(found) if m not in seen]
            seen.update(fresh)
            if fresh:
                label = f"{e.benchmark} ({e.protocol})" if e.protocol else e.benchmark
                failed.append(Preflight(label, str(folder), tuple(fresh), e.layout.strip()))
        return failed


@dataclass(frozen=True)
class Preflight:
    """A suite entry that cannot run: its label, dataset folder, what is missing and the expected layout."""

    entry: str
    folder: str
    problems: tuple[str, ...]
    layout: str

    def lines(self) -> list[str]:
        """The report, one item per line (for stderr)."""
        out = [f"{self.entry} on {self.folder}:", *(f"  - {m}" for m in self.problems)]
        return out + ([f"  layout: {self.layout}"] if self.layout else [])


def known_suites() -> list[str]:
    """The names of the suites shipped with silc-bench."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def _closest(key: str, valid: set[str]) -> str:
    match = difflib.get_close_matches(key, sorted(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _check_keys(obj: dict, valid: set[str], where: str) -> None:
    for key in obj:
        if key not in valid:
            raise UserError(
                f"{where}: unknown key {key!r}{_closest(str(key), valid)}; valid: {sorted(valid)}"
            )


def _parse_entry(obj: Any, where: str) -> SuiteEntry:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a mapping with 'benchmark' and 'data'")
    _check_keys(obj, _ENTRY_KEYS, where)
    for key in ("benchmark", "data"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise UserError(f"{where}: '{key}' must be a non-empty string")
    for key in ("overrides", "options"):
        if not isinstance(obj.get(key, {}), dict):
            raise UserError(f"{where}: '{key}' must be a mapping")
    requires = obj.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise UserError(f"{where}: 'requires' must be a list of relative paths")
    protocol = obj.get("protocol")
    if protocol is not None and not isinstance(protocol, str):
        raise UserError(f"{where}: 'protocol' must be a protocol name")
    return SuiteEntry(
        benchmark=obj["benchmark"],
        protocol=protocol,
        data=obj["data"],
        overrides=dict(obj.get("overrides") or {}),
        options=dict(obj.get("options") or {}),
        requires=tuple(requires),
        layout=str(obj.get("layout") or ""),
    )


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (``default``, ``paper``, ``ablations``) or a suite YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UserError(
                f"unknown suite {name_or_path!r}; known: {', '.join(known_suites())} (or a path to FILE.yaml)"
            )
    if not path.is_file():
        raise UserError(f"{path}: suite file does not exist")
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("benchmarks"), list) or not obj["benchmarks"]:
        raise UserError(f"{path}: a suite is a mapping with a non-empty 'benchmarks' list")
    _check_keys(obj, _SUITE_KEYS, str(path))
    world = obj.get("world")
    if world is not None and (not isinstance(world, dict) or set(world) - {"preset", "seed"}):
        raise UserError(f"{path}: 'world' must be a mapping with 'preset' and 'seed'")
    for key in ("train", "tolerances", "fingerprint", "signal", "checks"):
        if not isinstance(obj.get(key) or {}, dict):
            raise UserError(f"{path}: '{key}' must be a mapping")
    entries = tuple(_parse_entry(e, f"{path}: benchmarks[{i}]") for i, e in enumerate(obj["benchmarks"]))
    return Suite(
        name=str(obj.get("name") or path.stem),
        path=path,
        description=str(obj.get("description") or ""),
        entries=entries,
        world={"preset": "tiny", "seed": 0, **world} if world is not None else None,
        train=dict(obj.get("train") or {}),
        tolerances=dict(obj.get("tolerances") or {}),
        fingerprint=dict(obj.get("fingerprint") or {}),
        signal=dict(obj.get("signal") or {}),
        checks=dict(obj.get("checks") or {}),
    )
