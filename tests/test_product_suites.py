"""Suite files: the shipped suites resolve against the registry; bad files and missing data are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.suites import known_suites, load_suite
from silc.errors import UserError


@pytest.mark.parametrize("name", ["default", "paper", "ablations"])
def test_shipped_suites_resolve(name: str) -> None:
    suite = load_suite(name)
    resolved = suite.resolve()
    expected = {"zeroshot-cls", "retrieval", "seg-ade20k", "fewshot"}
    # the ablation regression leaves box classification out: it carries no signal at that scale (the suite says why)
    expected |= set() if name == "ablations" else {"det-ovcoco"}
    assert {r.entry.benchmark for r in resolved} >= expected
    assert (suite.world is None) == (name == "paper")
    assert name in known_suites()


def test_paper_preflight_lists_everything_missing_with_layouts(tmp_path: Path) -> None:
    suite = load_suite("paper")
    failed = suite.preflight(tmp_path, "cpu")
    assert [f.entry for f in failed] == [
        "zeroshot-cls",
        "fewshot",
        "retrieval",
        "seg-ade20k (ade-448)",
        "det-ovcoco (boxcls)",
        "det-ovcoco (fvlm)",
    ]
    problems = [p for f in failed for p in f.problems]
    assert len(problems) == len(set(problems))  # each missing path once
    assert f"{tmp_path / 'coco' / 'train2017'}: not found" in failed[-1].problems
    assert "wnid" in failed[0].layout and failed[0].lines()[0] == f"zeroshot-cls on {tmp_path / 'imagenet'}:"
    (tmp_path / "flickr30k" / "images").mkdir(parents=True)
    (retrieval,) = [f for f in suite.preflight(tmp_path, "cpu") if f.entry == "retrieval"]
    assert (
        retrieval.problems
        == (  # the harness's own line about the folder stays (it is not the missing path)
            f"{tmp_path / 'flickr30k' / 'dataset_flickr30k.json'}: not found",
            f"{tmp_path / 'flickr30k'}: no Karpathy caption file(s) dataset_*.json found; expected exactly one (or pass "
            "the JSON file itself as --data)",
        )
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("benchmarks: []\n", "a non-empty 'benchmarks' list"),
        (
            "benchmarks:\n  - {benchmark: retrieval, data: x, protocl: a}\n",
            "unknown key 'protocl' (did you mean 'protocol'?)",
        ),
        ("benchmarks:\n  - {benchmark: retrieval}\n", "'data' must be a non-empty string"),
        ("benchmarks:\n  - {benchmark: retrieval, data: x}\nworld: [1]\n", "'world' must be a mapping"),
        ("benchmarks: [\n", "not valid YAML"),
    ],
)
def test_bad_suite_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_suite(str(path))
    assert needle in str(e.value) and str(path) in str(e.value)


def test_unknown_benchmark_protocol_and_knob(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    for entry, needle in (
        ("{benchmark: nope, data: x}", "unknown benchmark 'nope'"),
        ("{benchmark: retrieval, protocol: nope, data: x}", "has no protocol 'nope'"),
        ("{benchmark: retrieval, data: x, overrides: {nope: 1}}", "has no knob 'nope'"),
        (
            "{benchmark: retrieval, data: x, options: {image_dri: y}}",
            "unknown option 'image_dri' (closest: image_dir)",
        ),
        (
            "{benchmark: seg-ade20k, data: x, options: {dense_mode: fancy}}",
            "--dense-mode 'fancy': expected one of",
        ),
        ("{benchmark: fewshot, data: x, options: {batch_size: 0}}", "--batch-size must be >= 1"),
    ):
        path.write_text(f"benchmarks:\n  - {entry}\n")
        with pytest.raises(UserError) as e:
            load_suite(str(path)).resolve()
        assert needle in str(e.value)


def test_regress_sections_must_be_mappings(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nbenchmarks: [{benchmark: zeroshot-cls, data: imagenet}]\nchecks: [a, b]\n")
    with pytest.raises(UserError, match="'checks' must be a mapping"):
        load_suite(str(suite))
