"""Typed harness options: the CLI's flags come from them, knobs go into the protocol, run options never do."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from benchmarks.options import HarnessOptions
from benchmarks.registry import get_harness, harnesses
from silc.errors import UserError
from silc_bench.cli.options import add_option_flags, options_from_args


def parse(benchmark: str, *argv: str) -> HarnessOptions:
    harness = get_harness(benchmark)
    parser = argparse.ArgumentParser()
    add_option_flags(parser, harness.options_type)
    return options_from_args(harness.options_type, parser.parse_args(list(argv)))


def test_every_builtin_harness_declares_its_facts() -> None:
    builtin = {n: h for n, h in harnesses().items() if type(h).__module__.startswith("benchmarks.")}
    assert len(builtin) == 5
    for name, harness in builtin.items():
        assert issubclass(harness.options_type, HarnessOptions), name
        assert harness.key_metrics and harness.metric_scale in ("fraction", "percent"), name
        for f in dataclasses.fields(harness.options_type):
            assert f.metadata.get("help"), f"{name}: option {f.name} has no help text"
            if f.metadata.get("knob"):  # a knob must exist in at least one protocol of its harness
                assert any(f.name in p for p in harness.protocols.values()), f"{name}: knob {f.name}"


def test_flags_become_typed_options_and_knobs() -> None:
    options = parse("seg-ade20k", "--dense-mode", "sclip", "--bg-threshold", "0.0", "--visualize", "3",
                    "--save-predictions", "--batch-size", "16")  # fmt: skip
    assert options.dense_mode == "sclip" and options.visualize == 3 and options.save_predictions
    assert options.batch_size == 16 and options.workers is None and not options.no_cache
    # a knob set to a falsy value is still a knob (0.0 is not "unset"); run options are never knobs
    assert options.knobs() == {"dense_mode": "sclip", "bg_threshold": 0.0}
    assert parse("fewshot", "--shots", "1", "5").knobs() == {"shots": [1, 5]}
    assert parse("retrieval", "--image-dir", "x").knobs() == {}


def test_knobs_override_the_protocol_and_run_options_do_not() -> None:
    harness = get_harness("det-ovcoco")
    options = parse("det-ovcoco", "--input-size", "128", "--visualize", "2")
    protocol = harness.resolve_protocol("boxcls", options.knobs())
    assert protocol["input_size"] == 128 and "visualize" not in protocol
    assert protocol == {**harness.protocols["boxcls"], "input_size": 128}


@pytest.mark.parametrize(
    "benchmark,argv,needle",
    [
        ("seg-ade20k", ["--dense-mode", "fancy"], "--dense-mode 'fancy': expected one of naive, maskclip"),
        (
            "zeroshot-cls",
            ["--precision", "fp64"],
            "--precision 'fp64': expected one of auto, fp32, bf16, fp16",
        ),
        ("retrieval", ["--workers", "-1"], "--workers must be >= 0"),
    ],
)
def test_bad_values_are_one_line_user_errors(benchmark: str, argv: list[str], needle: str) -> None:
    with pytest.raises(UserError) as e:
        parse(benchmark, *argv)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_options_from_a_mapping_name_the_closest_key() -> None:
    harness = get_harness("det-ovcoco")
    assert harness.parse_options({"visualize": 2}).visualize == 2
    with pytest.raises(UserError, match="unknown option 'visualise' \\(closest: visualize\\)"):
        harness.parse_options({"visualise": 2})
    with pytest.raises(UserError, match="options of another benchmark"):
        harness.parse_options(get_harness("fewshot").parse_options({}))
