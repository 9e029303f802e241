"""Command-line flags built from a harness's typed options (benchmarks.options): one flag per field."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from benchmarks.options import HarnessOptions


def _value_type(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def add_option_flags(parser: argparse.ArgumentParser, options_type: type[HarnessOptions]) -> None:
    """``--field-name`` for every field of ``options_type``, typed from its annotation, with its help text."""
    hints = typing.get_type_hints(options_type)
    for f in dataclasses.fields(options_type):
        tp = _value_type(hints[f.name])
        meta = f.metadata
        choices = f"; one of {', '.join(meta['choices'])}" if meta.get("choices") else ""
        help_text = meta.get("help", "") + choices + (" (protocol knob)" if meta.get("knob") else "")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text, "default": None}
        if tp is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", **kwargs)
            continue
        if typing.get_origin(tp) is list:
            kwargs |= {"nargs": "+", "type": typing.get_args(tp)[0]}
        elif tp in (int, float):
            kwargs["type"] = tp
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        parser.add_argument(f"--{f.name.replace('_', '-')}", **kwargs)


def options_from_args(options_type: type[HarnessOptions], args: argparse.Namespace) -> HarnessOptions:
    """The typed options given on the command line (flags left out keep the field defaults)."""
    given = {}
    for f in dataclasses.fields(options_type):
        value = getattr(args, f.name, None)
        if value is not None and value is not False:
            given[f.name] = value
    return options_type(**given)
