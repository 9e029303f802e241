"""Benchmark suites: YAML lists of (benchmark, protocol, overrides, dataset sub-path) that `silc-bench run` sweeps.

A suite is data, not code: ``default`` runs on the synthetic world, ``paper`` on the real datasets under
``--data-root``, ``ablations`` adds the training variants, tolerances and checks that ``silc-bench regress`` uses, ``paper_synth`` the
recipes, seeds and tables of ``silc-bench experiment``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.identity import identity_record, refusal
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
    "experiment",
}
_ENTRY_KEYS = {
    "benchmark",
    "protocol",
    "data",
    "overrides",
    "options",
    "requires",
    "layout",
    "dataset",
    "allow_nonstandard",
}


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
    dataset: str | None = None  # the public dataset the data must be (a key of the harness's public_datasets)
    allow_nonstandard: bool = False  # run data that is not the claimed dataset, labelled as its own


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
    experiment: dict[str, Any] = field(
        default_factory=dict
    )  # what `silc-bench experiment` trains and tabulates

    def resolve(self) -> list[ResolvedEntry]:
        """Every entry with its harness and protocol checked (unknown benchmark/protocol/knob is a UserError)."""
        resolved = []
        for i, e in enumerate(self.entries):
            harness = get_harness(e.benchmark)
            name = e.protocol or harness.default_protocol
            try:
                protocol = harness.resolve_protocol(name, e.overrides)
                harness.parse_options(e.options, "options")
                if e.dataset is not None and e.dataset not in harness.public_datasets:
                    known = ", ".join(sorted(harness.public_datasets)) or "none"
                    raise UserError(
                        f"dataset {e.dataset!r}: not a public dataset {e.benchmark!r} verifies ({known})"
                    )
            except UserError as err:
                raise UserError(f"{self.path}: benchmarks[{i}]: {err}") from err
            resolved.append(ResolvedEntry(e, name, protocol))
        return resolved

    def preflight(self, data_root: Path, device: str) -> list[Preflight]:
        """The suite entries that cannot run on ``data_root`` with ``device`` (see :meth:`check`)."""
        return self.check(data_root, device).failed

    def check(self, data_root: Path, device: str, allow_nonstandard: bool = False) -> SuiteCheck:
        """Everything each entry needs, before any compute: the harness's preflight (files, schemas, class names,
        label ranges, device) and the files it ``requires``; an entry claiming a public dataset (``dataset:``) on a
        folder that is not it fails too, unless it or ``allow_nonstandard`` allows that. Also each entry's
        dataset identity for its records."""
        failed, seen, identities = [], set(), []
        for r in self.resolve():
            e, harness, folder = r.entry, get_harness(r.entry.benchmark), data_root / r.entry.data
            options = harness.parse_options(e.options, "options")
            found = harness.preflight(folder, r.protocol, options, device)
            gone = [folder / q for q in e.requires if not (folder / q).exists()]
            missing = [f"{path}: not found" for path in gone]
            if missing:  # what the harness says about those paths restates them; keep its other problems
                found = [*missing, *(m for m in found if not _about_missing(m, gone))]
            identity: dict[str, Any] = {}
            if e.dataset is not None and folder.exists() and not missing:
                dataset = harness.public_datasets[e.dataset]
                try:
                    differences = dataset.check(folder, r.protocol)
                except UserError as err:  # data the harness cannot read: its preflight says why
                    found.append(str(err))
                else:
                    if differences and not (allow_nonstandard or e.allow_nonstandard):
                        found.append(refusal(folder, dataset, differences))
                    identity = identity_record(e.dataset, dataset, differences, folder)
            identities.append(identity)
            fresh = [m for m in dict.fromkeys(found) if m not in seen]
            seen.update(fresh)
            if fresh:
                label = f"{e.benchmark} ({e.protocol})" if e.protocol else e.benchmark
                failed.append(Preflight(label, str(folder), tuple(fresh), e.layout.strip()))
        return SuiteCheck(failed, identities)


def _about_missing(message: str, missing: list[Path]) -> bool:
    """Whether a harness ``message`` is about one of the ``missing`` paths: it starts with that path, a path under
    it, or a folder above it that is missing too (``/d/coco2017`` is neither ``/d/coco`` nor under it)."""
    for path in missing:
        while not path.parent.exists():
            path = path.parent
        if message.startswith((f"{path}:", f"{path}{os.sep}")):
            return True
    return False


@dataclass(frozen=True)
class SuiteCheck:
    """What a suite's preflight found: the entries that cannot run, and each entry's dataset identity (in entry
    order; empty where the entry claims no public dataset) for its records."""

    failed: list[Preflight]
    identities: list[dict[str, Any]]


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
    dataset = obj.get("dataset")
    if dataset is not None and (not isinstance(dataset, str) or not dataset):
        raise UserError(f"{where}: 'dataset' must name a public dataset (e.g. imagenet-1k)")
    if not isinstance(obj.get("allow_nonstandard", False), bool):
        raise UserError(f"{where}: 'allow_nonstandard' must be true or false")
    return SuiteEntry(
        benchmark=obj["benchmark"],
        protocol=protocol,
        data=obj["data"],
        overrides=dict(obj.get("overrides") or {}),
        options=dict(obj.get("options") or {}),
        requires=tuple(requires),
        layout=str(obj.get("layout") or ""),
        dataset=dataset,
        allow_nonstandard=obj.get("allow_nonstandard", False),
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
    for key in ("train", "tolerances", "fingerprint", "signal", "checks", "experiment"):
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
        experiment=dict(obj.get("experiment") or {}),
    )
