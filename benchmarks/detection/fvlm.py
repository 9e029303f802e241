"""Protocol ``fvlm`` of det-ovcoco: train (or load) the F-VLM detector with mmengine's Runner on base boxes, test
it with mmdet's OVCocoMetric, and compute our AP with pycocotools on the same detections file."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.runner import Runner

from adapters.encoder import Encoder
from adapters.mmdet import WEIGHTS_FILE, live_encoder, load_detector_weights
from benchmarks.detection.boxcls import load_rgb
from benchmarks.detection.cocoeval import evaluate_boxes_with_outcomes
from benchmarks.detection.visualize import draw_boxes, save_png
from benchmarks.mm_logs import logs_to_stderr
from benchmarks.ov_coco import SPLIT_FILE, TRAIN_FILE, VAL_FILE, OVSplit, load_coco, write_ov_coco
from benchmarks.readers.images import find_bad_images, settle_bad_images
from benchmarks.registry import Evaluation
from benchmarks.uncertainty import Outcomes
from silc.io import atomic_write_text

log = logging.getLogger(__name__)
VIS_SCORE = 0.3  # --visualize draws detections at least this confident (at most VIS_MAX per image)
VIS_MAX = 20


def configure(cfg: Config, encoder_key: str, ov_root: Path, work: Path, protocol: dict[str, Any]) -> None:
    """Point a shipped config at the encoder, the OV annotation files under ``ov_root`` and ``work``."""
    root = f"{ov_root}/"
    split_file = str(ov_root / SPLIT_FILE)
    overrides: dict[str, Any] = {
        "work_dir": str(work / "mmdet"),
        "model.backbone.encoder": encoder_key,
        "model.backbone.dense_mode": protocol["dense_mode"],
        "model.templates": protocol["templates"],
        "model.alpha": protocol["alpha"],
        "model.beta": protocol["beta"],
        "model.split_file": split_file,
        "test_evaluator.ann_file": str(ov_root / VAL_FILE),
        "test_evaluator.outfile_prefix": str(work / "dets"),
    }
    for loader in ("train_dataloader", "test_dataloader"):
        overrides[f"{loader}.dataset.data_root"] = root
        overrides[f"{loader}.dataset.split_file"] = split_file
    if protocol["max_iters"]:
        overrides["train_cfg.max_iters"] = int(protocol["max_iters"])
        overrides["train_cfg.val_interval"] = int(protocol["max_iters"]) + 1
    cfg.merge_from_dict(overrides)


def evaluate_fvlm(
    encoder: Encoder,
    data_root: Path,
    split: OVSplit,
    protocol: dict[str, Any],
    artefacts: Path,
    work_dir: str | None = None,
    visualize: int = 0,
    skip_bad_images: bool = False,
) -> Evaluation:
    """Train on ``split.base`` boxes (unless ``det_weights``), detect on val, AP overall / base / novel."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="det-ovcoco-fvlm-"))
    ov_root = work / "ov-coco"
    write_ov_coco(data_root, ov_root, split)
    subsets = ("val2017",) if protocol["det_weights"] else ("train2017", "val2017")
    skipped = check_images(data_root, ov_root, subsets, skip_bad_images)
    cfg = Config.fromfile(protocol["config"])
    extra: dict[str, Any] = {"work_dir": str(work), "base": list(split.base), "novel": list(split.novel)}
    with live_encoder(encoder) as key:
        configure(cfg, key, ov_root, work, protocol)
        runner = Runner.from_cfg(cfg)
        logs_to_stderr(runner.logger)
        if protocol["det_weights"]:
            load_detector_weights(runner.model, protocol["det_weights"])
        else:
            start = time.perf_counter()
            runner.train()
            extra["train_seconds"] = round(time.perf_counter() - start, 3)
            weights = Path(cfg.work_dir) / WEIGHTS_FILE
            meta = load_detector_weights(runner.model, weights)  # what we save is what we load back
            extra.update(_training_summary(meta), weights=str(weights))
        start = time.perf_counter()
        mm_metrics = runner.test()
        test_seconds = time.perf_counter() - start
    gt = load_coco(ov_root / VAL_FILE)
    dets_path = work / "dets.bbox.json"
    detections = json.loads(dets_path.read_text()) if dets_path.is_file() else []
    ids = {c["name"]: c["id"] for c in gt["categories"]}
    metrics, detail, matches = evaluate_boxes_with_outcomes(
        gt, detections, [ids[n] for n in split.base], [ids[n] for n in split.novel]
    )
    outcomes = None  # without detections no COCOeval runs: no intervals
    if matches is not None:
        files = {image["id"]: image["file_name"] for image in gt["images"]}
        units = [f"val2017/{files[i]}" for i in sorted(files)]  # COCOeval's image order
        outcomes = Outcomes("image", units, matches)
    extra.update(detail, detections=len(detections), detections_file=str(dets_path))
    extra["mmdet_ovcocometric"] = {k: float(v) for k, v in mm_metrics.items()}
    extra["test_images_per_s"] = round(len(gt["images"]) / test_seconds, 3) if test_seconds > 0 else None
    if visualize:
        extra["visualizations"] = _visualize(
            gt, detections, set(split.novel), data_root, visualize, artefacts / "visualize"
        )
    log.info(
        "fvlm: AP50 base %s novel %s all %s", metrics["AP50_base"], metrics["AP50_novel"], metrics["AP50"]
    )
    n = len(gt["images"])
    return Evaluation(
        metrics,
        split="val2017",
        num_samples=n,
        images_processed=n,
        extra=extra,
        outcomes=outcomes,
        skipped_images=skipped,
    )


def check_images(data_root: Path, ov_root: Path, subsets: tuple[str, ...], skip: bool) -> list[str]:
    """Decode every image of ``subsets`` that the annotation files under ``ov_root`` list, fully, with PIL (mmdet
    decodes with cv2, which reads a truncated JPEG as grey without a word): stop with one line naming the bad
    ones, or with ``skip`` drop them and their boxes from those files. Returns the names skipped."""
    files = {"train2017": ov_root / TRAIN_FILE, "val2017": ov_root / VAL_FILE}
    cocos = {subset: json.loads(files[subset].read_text()) for subset in subsets}
    names = [f"{subset}/{image['file_name']}" for subset in subsets for image in cocos[subset]["images"]]
    found = find_bad_images([data_root / name for name in names])
    bad = {names[i]: why for i, why in found.items()}
    left = min(sum(f"{s}/{i['file_name']}" not in bad for i in cocos[s]["images"]) for s in subsets)
    skipped = settle_bad_images(bad, data_root, skip, left)
    for subset, coco in cocos.items():
        drop = {i["id"] for i in coco["images"] if f"{subset}/{i['file_name']}" in bad}
        if drop:
            coco["images"] = [i for i in coco["images"] if i["id"] not in drop]
            coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in drop]
            atomic_write_text(files[subset], json.dumps(coco, separators=(",", ":")))
    return skipped


def _training_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """First/last tenth mean loss and mean seconds per iteration from the saved training meta."""
    losses, seconds = meta.get("losses", []), meta.get("seconds_per_iter", [])
    tenth = max(1, len(losses) // 10)
    return {
        "iters": meta.get("iters"),
        "loss_start": sum(losses[:tenth]) / tenth if losses else None,
        "loss_end": sum(losses[-tenth:]) / tenth if losses else None,
        "seconds_per_iter": sum(seconds) / len(seconds) if seconds else None,
    }


def _visualize(
    gt: dict, detections: list[dict], novel: set[str], data_root: Path, count: int, out_dir: Path
) -> list[str]:
    names = {c["id"]: c["name"] for c in gt["categories"]}
    written = []
    for image in sorted(gt["images"], key=lambda i: i["id"])[:count]:
        dets = sorted((d for d in detections if d["image_id"] == image["id"] and d["score"] >= VIS_SCORE),
                      key=lambda d: -d["score"])[:VIS_MAX]  # fmt: skip
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in dets)]
        labels = [f"{names[d['category_id']]} {d['score']:.2f}" for d in dets]
        flags = [names[d["category_id"]] in novel for d in dets]
        canvas = draw_boxes(load_rgb(data_root / "val2017" / image["file_name"]), boxes, labels, flags)
        written.append(str(save_png(canvas, out_dir / f"{image['id']:012d}.png")))
    return written
