"""The F-VLM detector through mmdet: trains on the synthetic world on CPU, evaluates end to end, and its AP is
pycocotools' on the same detections; OVCocoMetric on ground truth scores 100; plain weights load safely."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.detection.cocoeval import evaluate_boxes
from benchmarks.ov_coco import VAL_FILE, load_split, write_ov_coco
from benchmarks.records import read_record
from silc_bench.cli import main
from tests.det_helpers import OracleEncoder, random_images, write_coco

pytestmark = pytest.mark.mm
TINY = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One short CPU training run through the CLI (20 iterations, 64 px), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("fvlm")
    argv = ["eval", "det-ovcoco", "--protocol", "fvlm", "--model", f"tiny=openclip:{TINY}",
            "--data", str(synth_root / "coco"), "--max-iters", "20", "--templates", "photo", "--device", "cpu",
            "--results", str(tmp / "results"), "--work-dir", str(tmp / "work"),
            "--visualize", "2"]  # fmt: skip
    torch.manual_seed(0)
    assert main(argv) == 0
    (path,) = (tmp / "results" / "tiny").glob("det-ovcoco.fvlm.*.json")
    return {"record": read_record(path), "tmp": tmp, "argv": argv}


@pytest.mark.slow
def test_training_runs_and_the_loss_falls(trained: dict) -> None:
    record = trained["record"]
    weights = torch.load(record.extra["weights"], map_location="cpu", weights_only=True)  # safe loading works
    losses = weights["meta"]["losses"]
    assert weights["meta"]["iters"] == 20 and len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert not any(
        k.startswith("backbone.encoder") for k in weights["state_dict"]
    )  # the encoder stays frozen
    assert record.extra["seconds_per_iter"] > 0 and record.protocol["split_hash"]
    for key in ("AP", "AP50", "AP_base", "AP50_base", "AP_novel", "AP50_novel"):
        assert key in record.metrics
    (artefacts,) = [p for p in (trained["tmp"] / "results" / "tiny").glob("det-ovcoco.fvlm.*") if p.is_dir()]
    assert len(list((artefacts / "visualize").glob("*.png"))) == 2


@pytest.mark.slow
def test_ap_equals_cocoeval_and_ovcocometric_on_the_same_detections(trained: dict) -> None:
    record = trained["record"]
    ann_file = Path(record.extra["work_dir"]) / "ov-coco" / VAL_FILE
    dets_file = Path(record.extra["detections_file"])
    assert record.extra["detections"] > 0
    split = load_split(Path(record.dataset_root) / record.protocol["split"])  # recorded relative to the data
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ids = {c["name"]: c["id"] for c in gt.dataset["categories"]}
        results = {}
        for subset, cat_ids in (("all", None), ("base", [ids[n] for n in split.base]),
                                ("novel", [ids[n] for n in split.novel])):  # fmt: skip
            ev = COCOeval(gt, gt.loadRes(str(dets_file)), "bbox")
            if cat_ids is not None:
                ev.params.catIds = cat_ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            results[subset] = ev.stats
    m = record.metrics
    assert m["AP"] == pytest.approx(results["all"][0] * 100, abs=1e-6)
    assert m["AP50"] == pytest.approx(results["all"][1] * 100, abs=1e-6)
    for subset in ("base", "novel"):
        assert m[f"AP_{subset}"] == pytest.approx(max(results[subset][0], 0) * 100, abs=1e-6)
        assert m[f"AP50_{subset}"] == pytest.approx(max(results[subset][1], 0) * 100, abs=1e-6)
    mm = record.extra["mmdet_ovcocometric"]
    assert mm["coco/base_ap50"] == pytest.approx(m["AP50_base"] / 100, abs=1e-6)
    assert mm["coco/novel_ap50"] == pytest.approx(m["AP50_novel"] / 100, abs=1e-6)
    assert mm["coco/bbox_mAP_50"] == pytest.approx(m["AP50"] / 100, abs=1e-3)  # mmdet rounds to 3 decimals


@pytest.mark.slow
def test_saved_plain_weights_evaluate_to_the_same_numbers(trained: dict, tmp_path: Path) -> None:
    record = trained["record"]
    argv = list(trained["argv"])
    argv[argv.index("--results") + 1] = str(tmp_path / "results")
    argv[argv.index("--work-dir") + 1] = str(tmp_path / "work")
    argv += ["--det-weights", record.extra["weights"]]
    assert main(argv) == 0
    (path,) = (tmp_path / "results" / "tiny").glob("det-ovcoco.fvlm.*.json")
    again = read_record(path)
    assert again.protocol["det_weights_sha256"] and "train_seconds" not in again.extra
    assert again.metrics == pytest.approx(record.metrics, abs=1e-9)


def test_mmengine_checkpoints_are_not_what_we_load(tmp_path: Path) -> None:
    """A pickled object that safe loading refuses is a one-line error, never executed."""
    from adapters.mmdet import load_detector_weights

    bad = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {}, "message_hub": Path("x")}, bad)  # a non-tensor object, like HistoryBuffer
    with pytest.raises(Exception, match="not a plain detector state dict"):
        load_detector_weights(torch.nn.Linear(1, 1), bad)


def _ov_world(tmp_path: Path) -> Path:
    coco = write_coco(tmp_path / "coco")
    out = tmp_path / "ov"
    write_ov_coco(coco, out, load_split(coco / "annotations" / "ov_split.json"))
    return out


def _metric_on(out: Path, jitter: float, seed: int, prefix: Path | None = None) -> dict:
    """OVCocoMetric on predictions made from the ground truth (boxes jittered by ``jitter`` px, random scores)."""
    from mmdet.evaluation import OVCocoMetric
    from mmdet.registry import DATASETS

    import adapters.mmdet  # noqa: F401 - registers OVCocoDataset

    split_file = str(out / "annotations/ov_split.json")
    dataset = DATASETS.build(dict(type="OVCocoDataset", split_file=split_file, data_root=str(out),
                                  ann_file=VAL_FILE, data_prefix=dict(img="val2017/"), test_mode=True,
                                  pipeline=[]))  # fmt: skip
    labels = json.loads((out / "annotations/ov_split.json").read_text())["labels"]
    assert dataset.metainfo["classes"] == tuple(labels) == ("alpha", "delta", "echo", "bravo", "charlie")
    metric = OVCocoMetric(ann_file=str(out / VAL_FILE), metric="bbox", outfile_prefix=prefix and str(prefix))
    metric.dataset_meta = dataset.metainfo
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for info in dataset:
        kept = [i for i in info["instances"] if not i["ignore_flag"]]
        boxes = torch.tensor([i["bbox"] for i in kept], dtype=torch.float32).reshape(-1, 4)
        boxes = boxes + jitter * torch.randn(boxes.shape, generator=gen)
        scores = torch.rand(len(kept), generator=gen) if jitter else torch.ones(len(kept))
        pred = {"bboxes": boxes, "labels": torch.tensor([i["bbox_label"] for i in kept]), "scores": scores}
        samples.append(
            {"img_id": info["img_id"], "ori_shape": (info["height"], info["width"]), "pred_instances": pred}
        )
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_ground_truth_through_ovcocodataset_and_ovcocometric_gives_ap_100(tmp_path: Path) -> None:
    result = _metric_on(_ov_world(tmp_path), jitter=0.0, seed=0)
    assert result["coco/base_ap50"] == pytest.approx(1.0) and result["coco/novel_ap50"] == pytest.approx(1.0)
    assert result["coco/bbox_mAP"] == pytest.approx(1.0)


def test_ovcocometric_base_novel_equal_ours_on_the_same_detections(tmp_path: Path) -> None:
    """Holds because our files list categories by ascending id: OVCocoMetric indexes COCOeval's precision
    columns (sorted ids) by the file's category order."""
    out = _ov_world(tmp_path)
    result = _metric_on(out, jitter=3.0, seed=1, prefix=tmp_path / "dets")
    gt = json.loads((out / VAL_FILE).read_text())
    split = load_split(out / "annotations/ov_split.json")
    ids = {c["name"]: c["id"] for c in gt["categories"]}
    ours, _ = evaluate_boxes(gt, json.loads((tmp_path / "dets.bbox.json").read_text()),
                             [ids[n] for n in split.base], [ids[n] for n in split.novel])  # fmt: skip
    assert 0 < ours["AP"] < 100
    for subset in ("base", "novel"):
        assert result[f"coco/{subset}_ap"] == pytest.approx(ours[f"AP_{subset}"] / 100, abs=1e-6)
        assert result[f"coco/{subset}_ap50"] == pytest.approx(ours[f"AP50_{subset}"] / 100, abs=1e-6)
    assert result["coco/bbox_mAP"] == pytest.approx(ours["AP"] / 100, abs=1e-3)  # mmdet rounds to 3 decimals


def test_ovcocodataset_refuses_a_file_in_another_category_order(tmp_path: Path) -> None:
    from mmdet.registry import DATASETS

    import adapters.mmdet  # noqa: F401

    out = _ov_world(tmp_path)
    path = out / VAL_FILE
    obj = json.loads(path.read_text())
    obj["categories"] = sorted(obj["categories"], key=lambda c: c["name"], reverse=True)
    path.write_text(json.dumps(obj))
    with pytest.raises(Exception, match="in the order of its 'labels'"):
        DATASETS.build(dict(type="OVCocoDataset", split_file=str(out / "annotations/ov_split.json"),
                            data_root=str(out), ann_file=VAL_FILE, data_prefix=dict(img="val2017/"),
                            test_mode=True, pipeline=[]))  # fmt: skip


def test_ensemble_is_the_geometric_mean_with_alpha_for_base_and_beta_for_novel() -> None:
    from adapters.mmdet import TextEmbeddingBBoxHead

    head = TextEmbeddingBBoxHead(
        embed_dim=3, in_channels=4, fc_out_channels=8, roi_feat_size=2, num_classes=2
    )
    text = torch.eye(3)[:2]  # base class 0, novel class 1
    dense = torch.zeros(1, 3, 4, 4)
    dense[0, 0] = 0.8
    dense[0, 1] = 0.6  # every location: 0.8 * class 0 + 0.6 * class 1
    vlm = dict(
        dense=dense, stride=8.0, novel=torch.tensor([False, True]), alpha=0.25, beta=0.75, logit_scale=10.0
    )
    head.use_vocabulary(text, vlm)
    det = torch.tensor([[0.5, 0.3, 0.2]])
    out = head._ensemble(det, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), 0)
    p_vlm = torch.softmax(torch.tensor([0.8, 0.6]) * 10.0, dim=0)
    expected = torch.tensor([0.5**0.75 * p_vlm[0] ** 0.25, 0.3**0.25 * p_vlm[1] ** 0.75, 0.2])
    assert torch.allclose(out[0], expected, atol=1e-6)


@pytest.mark.slow
def test_with_the_oracle_encoder_the_detector_learns_the_base_categories(tmp_path: Path) -> None:
    """Features that name the category make base detection learnable in 60 CPU iterations: the whole path
    (pyramid, RPN, text-embedding head, label order, box rescaling, metric) must be right for AP50 to rise."""
    from benchmarks.detection.harness import DetOVCocoHarness
    from benchmarks.runner import run_harness

    root = write_coco(
        tmp_path / "world", {"train2017": random_images(64, 0, "t"), "val2017": random_images(16, 1, "v")}
    )
    harness = DetOVCocoHarness()
    protocol = harness.resolve_protocol("fvlm", {"max_iters": 60, "templates": "photo"})
    torch.manual_seed(0)
    record, _, _ = run_harness(harness, OracleEncoder(), root, "fvlm", protocol, tmp_path / "results",
                               options={"work_dir": str(tmp_path / "work")})  # fmt: skip
    assert record.metrics["AP50_base"] > 20
    assert record.extra["loss_end"] < record.extra["loss_start"] / 2


CONFIGS = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "mmdet"


def test_shipped_synth_config_runs_with_mmengines_runner_directly(tmp_path: Path) -> None:
    """As the README shows: Config.fromfile + the encoder spec string + Runner.train/test, no harness."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    out = _ov_world(tmp_path)
    split_file = str(out / "annotations/ov_split.json")
    cfg = Config.fromfile(str(CONFIGS / "fvlm_synth_cpu.py"))
    cfg.merge_from_dict({
        "model.backbone.encoder": f"tiny=openclip:{TINY}", "model.split_file": split_file, "model.templates": "photo",
        "train_dataloader.dataset.data_root": f"{out}/", "train_dataloader.dataset.split_file": split_file,
        "test_dataloader.dataset.data_root": f"{out}/", "test_dataloader.dataset.split_file": split_file,
        "test_evaluator.ann_file": str(out / VAL_FILE), "train_cfg.max_iters": 2, "work_dir": str(tmp_path / "w"),
    })  # fmt: skip
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert {"coco/base_ap50", "coco/novel_ap50"} <= set(metrics)
    saved = torch.load(tmp_path / "w" / "fvlm_detector.pt", weights_only=True)
    assert saved["meta"]["iters"] == 2


def test_coco_gpu_config_builds_the_65_category_detector(tmp_path: Path) -> None:
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import adapters.mmdet  # noqa: F401

    cfg = Config.fromfile(str(CONFIGS / "fvlm_coco_gpu.py"))
    assert cfg.test_evaluator.type == "OVCocoMetric" and cfg.train_cfg.max_iters == 36000
    split = json.loads(
        (Path(__file__).resolve().parents[1] / "benchmarks/data/ov_coco_split.json").read_text()
    )
    split_file = tmp_path / "ov_split.json"
    split_file.write_text(json.dumps(split))
    cfg.model.split_file = str(split_file)
    cfg.model.templates = "photo"
    cfg.model.backbone.encoder = f"tiny=openclip:{TINY}"
    model = MODELS.build(cfg.model)
    assert (
        model.test_text.shape == (65, 64)
        and model.train_text.shape == (48, 64)
        and int(model.novel.sum()) == 17
    )
    assert model.rpn_head.prior_generator.strides == [(2.0, 2.0), (4.0, 4.0), (8.0, 8.0), (16.0, 16.0)]


def test_config_hash_is_that_of_the_built_config_base_file_included(tmp_path: Path) -> None:
    """The recorded ``config_sha256`` changes with ``_fvlm_base.py`` (where the shared blocks live), not with
    a comment."""
    from benchmarks.detection.harness import config_sha256

    for name in ("_fvlm_base.py", "fvlm_synth_cpu.py"):
        (tmp_path / name).write_text((CONFIGS / name).read_text())
    config = tmp_path / "fvlm_synth_cpu.py"
    before = config_sha256(config)
    assert before == config_sha256(CONFIGS / "fvlm_synth_cpu.py")
    config.write_text("# another header line\n" + config.read_text())
    assert config_sha256(config) == before
    base = tmp_path / "_fvlm_base.py"
    base.write_text(base.read_text().replace("min_size=32", "min_size=16"))
    assert config_sha256(config) == before  # the synth config sets its own min_size
    base.write_text(base.read_text().replace("drop_last=False", "drop_last=True"))
    assert config_sha256(config) != before


def test_fvlm_does_not_import_the_harness() -> None:
    """No cycle: the harness imports fvlm (lazily), fvlm imports nothing of the harness."""
    import ast

    source = Path(__file__).resolve().parents[1] / "benchmarks" / "detection" / "fvlm.py"
    imported = {
        f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(name.startswith("benchmarks.detection.harness") for name in imported), imported
