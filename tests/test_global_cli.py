"""``silc-bench eval`` and ``silc-bench clip-benchmark`` end to end on a tiny open_clip model with fixed weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import silc_bench.cli
from adapters import load_encoder
from benchmarks.records import read_record
from tests.conftest import TINY_MODEL_CONFIG
from tests.global_fixtures import write_imagefolder, write_karpathy, write_wds

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return _random_weights(tmp_path_factory.mktemp("weights") / "tiny.pt", seed=0)


def _random_weights(path: Path, seed: int) -> Path:
    """The tiny model's (deterministic) initial weights, perturbed by seeded noise, saved as a state_dict."""
    g = torch.Generator().manual_seed(seed)
    sd = load_encoder(f"openclip:{TINY_MODEL_CONFIG}").model.state_dict()
    torch.save(
        {
            k: v + 0.02 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
            for k, v in sd.items()
        },
        path,
    )
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """``silc-bench`` with the feature cache in tmp."""
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))
    return lambda *args: silc_bench.cli.main([str(a) for a in args])


def _spec(weights: Path, alias: str = "tiny") -> str:
    return f"{alias}=openclip:{TINY_MODEL_CONFIG}@{weights}"


def _eval_args(benchmark: str, weights: Path, data: Path, results: Path, *extra) -> list:
    """``silc-bench eval BENCHMARK`` arguments for the test weights on CPU without loader workers (model at [3])."""
    common = ["--data", data, "--results", results, "--device", "cpu", "--workers", "0"]
    return ["eval", benchmark, "--model", _spec(weights), *common, *extra]


def _printed_metrics(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("("))


def test_eval_zeroshot_writes_pinned_record_and_reuses_it(cli, capsys, tmp_path, weights):
    data = write_imagefolder(tmp_path / "ds", NAMES, {"val": 3})
    args = _eval_args("zeroshot-cls", weights, data, tmp_path / "res", "--batch-size", 5)
    assert cli(*args) == 0
    out = capsys.readouterr().out
    printed = _printed_metrics(out)
    record = read_record(printed["record"])
    assert record.benchmark == "zeroshot-cls" and record.num_samples == 18 and record.split == "val"
    assert float(printed["acc1"]) == pytest.approx(record.metrics["acc1"], abs=1e-6)
    assert record.images_per_s > 0 and record.versions["open_clip_torch"]
    p = record.protocol
    assert (
        p["precision"] == "fp32"
        and "Resize(size=64" in p["transform"]
        and "Normalize(mean=" in p["transform"]
    )
    assert (
        p["num_templates"] == 2
        and p["templates_source"] == "templates.txt"
        and len(p["classnames_sha256"]) == 64
    )
    assert cli(*args) == 0
    assert "existing record reused" in capsys.readouterr().out
    args[3] = _spec(_random_weights(tmp_path / "other.pt", seed=1))
    assert cli(*args) == 2  # same alias, other weights: the stored number is not this model's
    assert "other weights or data" in capsys.readouterr().err


def test_eval_retrieval_and_fewshot(cli, capsys, tmp_path, weights):
    ann = write_karpathy(tmp_path / "flickr", NAMES, {"train": 2, "test": 8})
    assert cli(*_eval_args("retrieval", weights, ann, tmp_path / "r")) == 0
    printed = _printed_metrics(capsys.readouterr().out)
    for k in (1, 5, 10):
        assert 0.0 <= float(printed[f"image_retrieval_recall@{k}"]) <= 1.0
    assert float(printed["text_retrieval_recall@10"]) == 1.0  # only 8 images: every image is in the top 10
    data = write_imagefolder(tmp_path / "ds", NAMES, {"train": 4, "val": 2})
    args = _eval_args("fewshot", weights, data, tmp_path / "r", "--shots", 1, 3, "--seeds", 0, 1)
    assert cli(*args) == 0
    printed = _printed_metrics(capsys.readouterr().out)
    rec = read_record(printed["record"])
    assert set(rec.metrics) == {"acc1_1shot_mean", "acc1_1shot_std", "acc1_3shot_mean", "acc1_3shot_std"}
    assert rec.protocol["shots"] == [1, 3] and rec.protocol["seeds"] == [0, 1]
    assert {r["k"] for r in rec.extra["runs"]} == {1, 3} and rec.extra["runs"][-1]["cv_accuracy"]
    assert cli(*_eval_args("fewshot", weights, data, tmp_path / "r", "--shots", 5)) == 2
    assert "fewer than the 5 shots" in capsys.readouterr().err


def test_clip_benchmark_cli_with_silc_model_type_matches_eval(cli, capsys, tmp_path, weights):
    root = write_wds(tmp_path / "wds", "test", NAMES, 3)
    out_json = tmp_path / "cb.json"
    assert (
        cli(
            "clip-benchmark",
            "--",
            "eval",
            "--model_type",
            "silc",
            "--model",
            _spec(weights),
            "--dataset",
            "wds/synthetic",
            "--dataset_root",
            root,
            "--split",
            "test",
            "--no_amp",
            "--num_workers",
            "0",
            "--batch_size",
            "7",
            "--output",
            out_json,
            "--quiet",
        )
        == 0
    )
    cb = json.loads(out_json.read_text())["metrics"]
    assert cli(*_eval_args("zeroshot-cls", weights, root, tmp_path / "res", "--split", "test")) == 0
    ours = read_record(_printed_metrics(capsys.readouterr().out)["record"]).metrics
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[key] == pytest.approx(cb[key], abs=1e-6)


def test_cli_usage_errors(cli, capsys, tmp_path):
    assert cli("clip-benchmark") == 2
    assert "after '--'" in capsys.readouterr().err
    assert cli("eval") == 2
    with pytest.raises(SystemExit):
        cli("eval", "zeroshot-cls", "--model", "m", "--data", tmp_path, "--protocol", "nope")
