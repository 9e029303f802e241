"""The harness interface and registry: built-in harnesses plus any registered through entry points."""

from __future__ import annotations

import argparse
import copy
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from adapters.encoder import Encoder
from silc.errors import UserError

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


class Harness(ABC):
    """One benchmark: a dataset reader, named frozen protocols and a metric."""

    name: str
    description: str
    protocols: dict[str, dict[str, Any]]
    default_protocol: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027 (optional hook)
        """Add harness-specific options to ``silc-bench eval <name>`` (protocol knobs, --visualize, ...)."""

    def protocol_overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        """Protocol knobs set on the command line (become part of the recorded protocol)."""
        return {}

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

    def preflight(self, data_root: Path) -> list[str]:
        """Problems with ``data_root`` found without computing (missing files), as messages."""
        return [] if data_root.exists() else [f"{data_root}: folder does not exist"]

    @abstractmethod
    def evaluate(
        self, encoder: Encoder, data_root: Path, protocol: dict[str, Any], options: dict[str, Any]
    ) -> Evaluation:
        """Run the benchmark on ``encoder`` and return its metrics."""


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
