"""The harness interface and registry: built-in harnesses plus any registered through entry points."""

from __future__ import annotations

import copy
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from benchmarks.options import HarnessOptions
from silc.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from adapters.encoder import Encoder
    from benchmarks.identity import PublicDataset
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes

# Built-in harness modules; each calls ``register(...)`` at import. Third-party harnesses register
# through the ``silc_bench.harnesses`` entry-point group (value: an importable module).
BUILTIN_HARNESS_MODULES: list[str] = [
    "benchmarks.zeroshot_classification",
    "benchmarks.retrieval",
    "benchmarks.fewshot",
    "benchmarks.detection.harness",
    "benchmarks.segmentation",
]
ENTRY_POINT_GROUP = "silc_bench.harnesses"

_REGISTRY: dict[str, Harness] = {}
_loaded = False


@dataclass
class Evaluation:
    """What a harness measured: metrics plus what the record needs to say about the data."""

    metrics: dict[str, Any]
    split: str
    num_samples: int
    images_processed: int  # images through the encoder (for images/s)
    extra: dict[str, Any] = field(default_factory=dict)
    outcomes: Outcomes | None = None  # per-unit outcomes the headline metrics are a function of
    skipped_images: list[str] = field(default_factory=list)  # undecodable images left out (--skip-bad-images)


class Harness(ABC):
    """One benchmark: a dataset reader, named frozen protocols, a metric, and the facts tables need about it.

    Harness modules import only light modules at the top (the heavy ones inside methods), so that listing the
    harnesses and building their command-line flags stays fast.
    """

    name: str
    description: str
    protocols: dict[str, dict[str, Any]]
    default_protocol: str
    # Options of ``silc-bench eval <name>`` and of suite entries (protocol knobs are fields marked ``knob``).
    options_type: ClassVar[type[HarnessOptions]] = HarnessOptions
    # The headline metrics, in table order (main and ablation layouts); empty: every metric is a headline one.
    key_metrics: ClassVar[tuple[str, ...]] = ()
    # Where the benchmark's rows go in tables (lower first; ties by name).
    table_order: ClassVar[int] = 100
    # The metrics' scale, which sets the decimals tables print (fraction: 4, percent: 2).
    metric_scale: ClassVar[Literal["fraction", "percent"]] = "fraction"
    # The public datasets a suite entry may claim for this benchmark (``dataset: <claim>``): claim -> its display
    # name and the check that lists how a folder differs from it (benchmarks/identity.py).
    public_datasets: ClassVar[dict[str, PublicDataset]] = {}

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """The headline metrics for each resample ``counts[b]`` (how often each unit is drawn) from the per-unit
        ``arrays`` of :class:`Evaluation.outcomes`; with all counts 1 it must give the record's metrics exactly.
        A harness without outcomes has no intervals."""
        raise NotImplementedError(f"benchmark {self.name!r} keeps no per-sample outcomes")

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """Each metric's expected value under a uniformly random guesser on the record's evaluation data, in the
        metric's own unit: the null of "the model learned something". Metrics without one are left out."""
        return {}

    def max_resamples(self, arrays: dict[str, np.ndarray]) -> int | None:
        """At most this many bootstrap resamples for these outcomes (None: as many as asked), for a metric that is
        slow to recompute (COCO AP re-accumulates per resample); the record says when fewer were used."""
        return None

    def parse_options(
        self, values: HarnessOptions | dict[str, Any] | None, where: str = ""
    ) -> HarnessOptions:
        """This harness's typed options from an options object or a mapping (unknown keys fail)."""
        if isinstance(values, self.options_type):
            return values
        if isinstance(values, HarnessOptions):
            raise UserError(f"{where or self.name}: options of another benchmark ({type(values).__name__})")
        return self.options_type.from_mapping(dict(values or {}), where or f"benchmark {self.name!r}")

    def resolve_protocol(self, name: str | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The frozen protocol dict for ``name`` with ``overrides`` applied; unknown names/knobs fail."""
        name = name or self.default_protocol
        if name not in self.protocols:
            raise UserError(
                f"benchmark {self.name!r} has no protocol {name!r}; known: {', '.join(sorted(self.protocols))}"
            )
        protocol = copy.deepcopy(self.protocols[name])
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in protocol:
                raise UserError(f"protocol {name!r} of {self.name!r} has no knob {key!r}")
            protocol[key] = value
        return protocol

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        """``protocol`` plus what the data and model fix (template hashes, transform); runs before the record path."""
        return protocol

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """Every problem a run of ``protocol`` (resolved) with ``options`` on ``device`` would meet, found without
        computing (files, schemas, class names, label ranges, device needs), one message each."""
        return [] if data_root.exists() else [f"{data_root}: folder does not exist"]

    @abstractmethod
    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: HarnessOptions,
        artefacts: Path,
    ) -> Evaluation:
        """Run the benchmark on ``encoder`` and return its metrics; files beside the record go in ``artefacts``
        (the record's own folder, created by the harness when it writes something)."""


def collect_problems(*checks: Callable[[], object]) -> list[str]:
    """Run every check; the message of each that raises a UserError (a preflight reports them all at once)."""
    problems = []
    for check in checks:
        try:
            check()
        except UserError as e:
            problems.append(str(e))
    return problems


def register(harness: Harness) -> Harness:
    """Add ``harness`` to the registry (a second harness with the same name is an error)."""
    if harness.name in _REGISTRY and _REGISTRY[harness.name] is not harness:
        raise ValueError(f"harness {harness.name!r} registered twice")
    _REGISTRY[harness.name] = harness
    return harness


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_HARNESS_MODULES:
        importlib.import_module(module)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value)


def harnesses() -> dict[str, Harness]:
    """All registered harnesses by name."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_harness(name: str) -> Harness:
    """The harness called ``name``; an unknown name is a UserError listing the known ones."""
    known = harnesses()
    if name not in known:
        raise UserError(f"unknown benchmark {name!r}; known: {', '.join(known) or '(none)'}")
    return known[name]
