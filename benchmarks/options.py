"""Typed harness options: one dataclass per harness, from which the CLI builds its flags and suites are checked.

A field marked ``knob`` is a protocol knob: set (not None), it overrides the protocol's value and so becomes part
of the recorded protocol. Every other field is a run option that never changes a number (batch size, workers,
cache, visualisation).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from silc.errors import UserError

# How evaluation images become pixels (protocol knob ``decode``, benchmarks/decode.py): ``pil`` is clip_benchmark's.
DECODES = ("pil", "tensor")
DEFAULT_DECODE = "pil"
DECODE_HELP = (
    "how images become pixels: pil (PIL, clip_benchmark's pixels; the default) or tensor (torchvision decode_jpeg "
    "on the encoder's device, nvJPEG on CUDA, then the eval transform on tensors: within 1-2 levels of pil's)"
)


def option(
    default: Any,
    help: str,
    *,
    knob: bool = False,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with the CLI help text, whether it is a protocol knob, an optional metavar, and the
    allowed values (checked when the options are built, so a wrong value is one line, not argparse's usage)."""
    meta = {"help": help, "knob": knob, "metavar": metavar, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class HarnessOptions:
    """The run options every harness takes."""

    batch_size: int | None = option(
        None, "images per encoder batch (default: the benchmark's own, 64 unless it says)", metavar="N"
    )
    workers: int | None = option(None, "DataLoader worker processes (default: min(4, CPUs))", metavar="N")
    cache_dir: str | None = option(
        None, "feature cache (default: $SILC_BENCH_CACHE or ~/.cache/silc-bench/features)", metavar="DIR"
    )
    no_cache: bool = option(False, "neither read nor write the feature cache")
    bootstrap: int = option(
        1000, "bootstrap resamples for the 95 %% intervals of the headline metrics (0: none)", metavar="N"
    )
    skip_bad_images: bool = option(
        False,
        "leave out images that do not decode (truncated, empty, not an image, over PIL's pixel limit) and list "
        "them in the record's skipped_images, instead of stopping",
    )

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError("--batch-size must be >= 1")
        if self.workers is not None and self.workers < 0:
            raise UserError("--workers must be >= 0")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise UserError("--bootstrap must be 0 (no intervals) or >= 2")
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value is not None and value not in choices:
                flag = "--" + f.name.replace("_", "-")
                raise UserError(f"{flag} {value!r}: expected one of {', '.join(choices)}")

    def knobs(self) -> dict[str, Any]:
        """The protocol knobs set on this object (None means: the protocol's own value)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("knob") and getattr(self, f.name) is not None
        }

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> HarnessOptions:
        """Options from a mapping (a suite entry's ``options``); an unknown key fails naming the closest one."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (closest: {close[0]})" if close else f"; known: {', '.join(names)}"
                raise UserError(f"{where}: unknown option {key!r}{hint}")
        return cls(**values)
