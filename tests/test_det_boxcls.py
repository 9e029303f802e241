"""Training-free box classification: the oracle encoder scores 100, a wrong one does not; COCO's edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapters.open_vocab import region_embeddings
from benchmarks.detection import boxcls
from benchmarks.detection.harness import DetOVCocoHarness
from benchmarks.ov_coco import load_coco, load_split
from benchmarks.records import read_record
from benchmarks.runner import run_harness
from tests.det_helpers import OracleEncoder, write_coco


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coco(tmp_path_factory.mktemp("det-world"))


def _run(world: Path, tmp_path: Path, encoder=None, **overrides):
    harness = DetOVCocoHarness()
    protocol = harness.resolve_protocol("boxcls", {"input_size": 64, "templates": "photo", **overrides})
    record, path, _ = run_harness(harness, encoder or OracleEncoder(), world, "boxcls", protocol, tmp_path)
    return record, path


def test_oracle_encoder_scores_100_on_base_novel_and_all(world: Path, tmp_path: Path) -> None:
    record, path = _run(world, tmp_path)
    for source in ("dense", "crop"):
        for k in (1, 5):
            for subset in ("base", "novel", "all"):
                assert record.metrics[f"{source}_top{k}_{subset}"] == 100.0, (source, k, subset)
    # 6 non-crowd boxes of the 5 split categories; the crowd box, foxtrot and the empty image are left out
    assert record.num_samples == 6 and record.extra["images"] == 3
    assert set(record.extra["per_class"]) == {"alpha", "bravo", "charlie", "delta", "echo"}
    assert record.extra["per_class"]["alpha"]["boxes"] == 1  # its crowd box is ignored
    assert record.protocol["split"] == "annotations/ov_split.json"  # relative to the dataset: portable
    assert read_record(path).metrics == record.metrics


def test_all_vocabulary_adds_categories_outside_the_split(world: Path, tmp_path: Path) -> None:
    record, _ = _run(world, tmp_path, vocabulary="all")
    assert record.num_samples == 7 and "foxtrot" in record.extra["per_class"]
    assert record.metrics["dense_top1_all"] == 100.0 and record.metrics["crop_top1_novel"] == 100.0


def test_wrong_text_embeddings_score_zero_top1(world: Path, tmp_path: Path) -> None:
    record, _ = _run(world, tmp_path, encoder=OracleEncoder(permute_text=True))
    assert record.metrics["dense_top1_all"] == 0.0 and record.metrics["crop_top1_all"] == 0.0
    assert record.metrics["dense_top5_all"] == 100.0  # 5 candidates among 5 classes


def test_mean_per_class_accuracy_weights_classes_equally() -> None:
    counts = boxcls.BoxclsCounts(3)
    labels = torch.tensor([0, 0, 0, 1])
    counts.totals.index_add_(0, labels, torch.ones_like(labels))
    logits = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]])
    for source in boxcls.SOURCES:
        counts.add(source, logits, labels)
    metrics, detail = boxcls.summarize(counts, ["a", "b", "c"], ["a"], ["b", "c"])
    assert metrics["dense_top1_base"] == pytest.approx(200 / 3)
    assert metrics["dense_top1_novel"] == 100.0  # c has no boxes: not part of the mean
    assert metrics["dense_top1_all"] == pytest.approx((200 / 3 + 100) / 2)
    assert "c" not in detail["per_class"]


def test_region_embeddings_pool_the_box_area() -> None:
    dense = torch.zeros(1, 2, 8, 8)
    dense[0, 0, :, :4] = 1.0  # left half is dimension 0
    dense[0, 1, :, 4:] = 1.0
    boxes = torch.tensor([[0.0, 0.0, 24.0, 64.0], [40.0, 0.0, 64.0, 64.0], [0.0, 0.0, 64.0, 64.0]])
    emb = region_embeddings(dense, [boxes], stride=8)
    assert torch.allclose(emb[:2], torch.eye(2), atol=1e-6)  # inside one half (bilinear samples stay there)
    assert torch.allclose(emb[2], torch.full((2,), 0.5**0.5), atol=1e-6)  # the whole map: both halves equally


def test_visualize_writes_pngs(world: Path, tmp_path: Path) -> None:
    harness = DetOVCocoHarness()
    protocol = harness.resolve_protocol("boxcls", {"input_size": 64, "templates": "photo"})
    options = {"visualize": 2}
    _, path, _ = run_harness(
        harness, OracleEncoder(), world, "boxcls", protocol, tmp_path / "res", options=options
    )
    vis = path.with_name(path.name.removesuffix(".json")) / "visualize"  # the record's artefacts folder
    pngs = sorted(vis.glob("*.png"))
    assert [p.name for p in pngs] == ["000000000021.png", "000000000024.png"]
    from PIL import Image

    with Image.open(pngs[0]) as im:
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert (40, 200, 70) in colours and (250, 110, 20) in colours  # base green and novel orange labels


def test_gather_boxes_skips_crowd_degenerate_and_out_of_vocabulary(world: Path) -> None:
    coco = load_coco(world / "annotations" / "instances_val2017.json")
    coco["annotations"][0]["bbox"] = [8, 8, 0.5, 16]  # thinner than a pixel: skipped, as mmdet does
    split = load_split(world / "annotations" / "ov_split.json")
    samples = boxcls.gather_boxes(coco, world / "val2017", split.names)
    assert [s.image_id for s in samples] == [21, 24, 30]
    assert [len(s.labels) for s in samples] == [2, 2, 1]


TINY = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"


def test_eval_cli_runs_boxcls_with_a_real_encoder(world: Path, tmp_path: Path, capsys) -> None:
    from silc_bench.cli import main

    argv = ["eval", "det-ovcoco", "--model", f"tiny=openclip:{TINY}", "--data", str(world), "--protocol", "boxcls",
            "--input-size", "64", "--templates", "photo", "--device", "cpu", "--results", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dense_top1_novel:" in out and "crop_top5_all:" in out
    (path,) = (tmp_path / "tiny").glob("det-ovcoco.boxcls.*.json")
    record = read_record(path)
    assert record.num_samples == 6 and record.protocol["input_size"] == 64
    assert all(0 <= v <= 100 for v in record.metrics.values())


def test_eval_cli_split_naming_an_unknown_category(world: Path, tmp_path: Path, capsys) -> None:
    from silc_bench.cli import main

    split = tmp_path / "split.json"
    split.write_text('{"base": ["alpha"], "novel": ["zulu"]}')
    argv = ["eval", "det-ovcoco", "--model", f"tiny=openclip:{TINY}", "--data", str(world), "--split", str(split),
            "--device", "cpu", "--results", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "instances_val2017.json" in err and "'zulu'" in err
