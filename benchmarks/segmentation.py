"""Zero-shot semantic segmentation on ADE20K (benchmark ``seg-ade20k``) through mmsegmentation.

Builds a plain mmseg config for the protocol (mmseg's ``ADE20KDataset`` with ``reduce_zero_label``, its test
pipeline, our registered ``ZeroShotSegmentor``, ``IoUMetric``) and runs ``mmengine.runner.Runner.test()``.
The same config is what ``benchmarks/configs/mmseg/ade20k_*.py`` ship for running under mmengine directly.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.encoder import DENSE_MODES, Encoder
from benchmarks.features import encode_texts, settings_from_options
from benchmarks.mm_logs import logs_to_stderr
from benchmarks.records import protocol_hash
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError

CUSTOM_IMPORTS = ["adapters.mmseg", "benchmarks.seg_mmseg"]
_ADE = {"dataset": "ADE20KDataset", "split": "validation", "max_long_side": 2048, "names": "dataset",
        "templates": "openai80", "dense_mode": "naive", "logit_scale": 100.0, "bg_threshold": None}  # fmt: skip
PROTOCOLS: dict[str, dict[str, Any]] = {
    # TCL / ClearCLIP: short side 448, 448 windows every 224 px.
    "ade-448": {**_ADE, "short_side": 448, "crop": 448, "stride": 224},
    # SCLIP / NACLIP: short side 336, 224 windows every 112 px.
    "ade-336": {**_ADE, "short_side": 336, "crop": 224, "stride": 112},
    # The synthetic world's ADE20K (64-px images, its own classnames.txt): the ade-448 recipe at its scale.
    "synth": {**_ADE, "dataset": "SynthADE20KDataset", "short_side": 64, "crop": 64, "stride": 32},
}
LAYOUT = "ADEChallengeData2016/{images,annotations}/<split>/ with <stem>.jpg images and <stem>.png label maps"


def _require_mm() -> None:
    try:
        import mmcv.ops  # noqa: F401  (mmseg's datasets need the compiled ops)
        import mmseg  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"seg-ade20k needs the OpenMMLab stack ({e}); install it with `bash scripts/install-mm.sh`"
        ) from e


def ade_root(data_root: Path) -> Path:
    """``data_root`` itself or its ``ADEChallengeData2016/`` child, whichever holds ``images/`` + ``annotations/``."""
    for root in (data_root / "ADEChallengeData2016", data_root):
        if (root / "images").is_dir() and (root / "annotations").is_dir():
            return root
    raise UserError(f"{data_root}: expected {LAYOUT}")


def check_pairs(root: Path, split: str, img_suffix: str = ".jpg", seg_suffix: str = ".png") -> int:
    """Number of images of ``split``; every image needs its label map (a UserError names what is missing)."""
    img_dir, ann_dir = root / "images" / split, root / "annotations" / split
    for folder in (img_dir, ann_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: folder missing; expected {LAYOUT}")
    stems = sorted(p.name[: -len(img_suffix)] for p in img_dir.rglob(f"*{img_suffix}"))
    if not stems:
        raise UserError(f"{img_dir}: no *{img_suffix} images; expected {LAYOUT}")
    missing = [s for s in stems if not (ann_dir / f"{s}{seg_suffix}").is_file()]
    if missing:
        raise UserError(
            f"{ann_dir}: no label map for {len(missing)} of {len(stems)} images, e.g. {missing[0]}{seg_suffix}"
        )
    return len(stems)


def check_knobs(protocol: dict[str, Any]) -> None:
    """Reject knob values no run could use (unknown dense mode, non-positive sizes)."""
    if protocol["dense_mode"] not in DENSE_MODES:
        raise UserError(f"--dense-mode {protocol['dense_mode']!r}: expected one of {', '.join(DENSE_MODES)}")
    for key in ("short_side", "crop", "stride"):
        if not isinstance(protocol[key], int) or protocol[key] < 1:
            raise UserError(f"protocol knob {key}: expected a positive integer, got {protocol[key]!r}")
    if protocol["bg_threshold"] is not None and not 0 < protocol["bg_threshold"] < 1:
        raise UserError(
            f"protocol knob bg_threshold: expected a probability in (0, 1), got {protocol['bg_threshold']}"
        )


def class_names_source(protocol: dict[str, Any], root: Path) -> str | dict:
    """What the segmentor reads its class names from: the dataset's own list or a names file."""
    if protocol["names"] != "dataset":
        return str(protocol["names"])
    if protocol["dataset"] == "SynthADE20KDataset":
        return str(root / "classnames.txt")
    return {"dataset": protocol["dataset"]}


def build_config(
    protocol: dict[str, Any],
    encoder: str,
    root: str | Path,
    *,
    workers: int = 2,
    max_windows_per_forward: int | None = None,
    images_per_batch: int = 1,
    output_dir: str | None = None,
    metric: str = "PerClassIoUMetric",
) -> dict[str, Any]:
    """The plain mmseg config (model, test pipeline, dataloader, evaluator) for ``protocol`` on ``root``."""
    split = protocol["split"]
    pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": (protocol["max_long_side"], protocol["short_side"]), "keep_ratio": True},
        {"type": "LoadAnnotations"},
        {"type": "PackSegInputs"},
    ]
    model = {
        "type": "ZeroShotSegmentor",
        "encoder": encoder,
        "class_names": class_names_source(protocol, Path(root)),
        "templates": protocol["templates"],
        "dense_mode": protocol["dense_mode"],
        "crop_size": protocol["crop"],
        "stride": protocol["stride"],
        "logit_scale": protocol["logit_scale"],
        "bg_threshold": protocol["bg_threshold"],
        "max_windows_per_forward": max_windows_per_forward,
        # Pads a batch of differently sized images to the largest; the segmentor crops each image back to its
        # own size before windowing, so batching never changes a prediction.
        "data_preprocessor": {"type": "PaddedSegDataPreProcessor", "bgr_to_rgb": True},
    }
    dataset = {
        "type": protocol["dataset"],
        "data_root": str(root),
        "data_prefix": {"img_path": f"images/{split}", "seg_map_path": f"annotations/{split}"},
        "pipeline": pipeline,
    }
    evaluator = {"type": metric, "iou_metrics": ["mIoU"]}
    if output_dir:
        evaluator["output_dir"] = output_dir
    return {
        "custom_imports": {"imports": CUSTOM_IMPORTS, "allow_failed_imports": False},
        "default_scope": "mmseg",
        "model": model,
        "test_dataloader": {
            "batch_size": images_per_batch,
            "num_workers": workers,
            "persistent_workers": False,
            "sampler": {"type": "DefaultSampler", "shuffle": False},
            "dataset": dataset,
        },
        "test_evaluator": evaluator,
        "test_cfg": {"type": "TestLoop"},
    }


def images_per_batch(protocol: dict[str, Any], windows: int, most: int = 16) -> int:
    """Images per test iteration: as many 4:3 images at the protocol's short side as have ``windows`` slide
    windows in all (at most ``most``), so that mmengine's per-iteration cost is shared on small images."""
    from adapters.mmseg import window_starts

    short, crop, stride = protocol["short_side"], protocol["crop"], protocol["stride"]
    per_image = len(window_starts(short, crop, stride)) * len(window_starts(short * 4 // 3, crop, stride))
    return max(1, min(most, windows // per_image))


def run_config(cfg: dict[str, Any], model, work_dir: str | Path, hooks: list | None = None):
    """``Runner.test()`` on ``cfg`` with an already built ``model``; returns (metrics without prefix, runner)."""
    from mmengine.runner import Runner

    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        test_dataloader=cfg["test_dataloader"],
        test_evaluator=cfg["test_evaluator"],
        test_cfg=cfg["test_cfg"],
        default_scope=cfg["default_scope"],
        custom_hooks=hooks or [],
        default_hooks={"logger": {"type": "LoggerHook", "interval": 50}},
        randomness={"seed": 0},
        experiment_name=f"seg-{time.time_ns()}",  # unique: mmengine keys its logger/visualizer by this name
        log_level="WARNING",
    )
    logs_to_stderr(runner.logger)
    metrics = {key.rpartition("/")[2]: value for key, value in runner.test().items()}  # "seg/mIoU" -> "mIoU"
    return metrics, runner


class SegADE20K(Harness):
    name = "seg-ade20k"
    description = "zero-shot semantic segmentation: mIoU, aAcc, mAcc (mmseg ADE20KDataset + IoUMetric)"
    protocols = PROTOCOLS
    default_protocol = "ade-448"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--dense-mode", metavar="MODE", help=f"one of {', '.join(DENSE_MODES)} (protocol knob)"
        )
        parser.add_argument(
            "--names",
            metavar="FILE",
            help="class names file, one class per line, synonyms comma-separated (protocol knob)",
        )
        parser.add_argument(
            "--templates", help="openai80, simple7, identity or a templates file (protocol knob)"
        )
        parser.add_argument("--short-side", type=int, help="resize the short side to this (protocol knob)")
        parser.add_argument("--crop", type=int, help="slide window size in pixels (protocol knob)")
        parser.add_argument("--stride", type=int, help="slide window step in pixels (protocol knob)")
        parser.add_argument("--logit-scale", type=float, help="cosine logit multiplier (protocol knob)")
        parser.add_argument(
            "--bg-threshold",
            type=float,
            help="top-class probability below which a pixel is class 0 (protocol knob)",
        )
        parser.add_argument(
            "--visualize",
            type=int,
            default=0,
            metavar="N",
            help="write N image | ground truth | prediction PNGs next to the record",
        )
        parser.add_argument("--save-predictions", action="store_true",
                            help="write every prediction as a label PNG (dataset label values) next to the record")  # fmt: skip

    def protocol_overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        if args.dense_mode is not None and args.dense_mode not in DENSE_MODES:
            raise UserError(f"--dense-mode {args.dense_mode!r}: expected one of {', '.join(DENSE_MODES)}")
        return {
            "dense_mode": args.dense_mode,
            "names": args.names,
            "templates": args.templates,
            "short_side": args.short_side,
            "crop": args.crop,
            "stride": args.stride,
            "logit_scale": args.logit_scale,
            "bg_threshold": args.bg_threshold,
        }

    def preflight(self, data_root: Path) -> list[str]:
        try:
            check_pairs(ade_root(data_root), "validation")
        except UserError as e:
            return [str(e)]
        return []

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        """Add the template and class-name hashes (what the prompts were) to the protocol."""
        _require_mm()
        from adapters.class_queries import names_sha256, resolve_templates
        from adapters.mmseg import class_names_from

        check_knobs(protocol)
        classes = class_names_from(class_names_source(protocol, ade_root(data_root)))
        templates = resolve_templates(protocol["templates"])
        return {
            **protocol,
            "templates_count": len(templates.texts),
            "templates_sha256": templates.sha256,
            "names_count": len(classes),
            "names_sha256": names_sha256(classes),
        }

    def evaluate(
        self, encoder: Encoder, data_root: Path, protocol: dict[str, Any], options: dict[str, Any]
    ) -> Evaluation:
        _require_mm()
        import adapters.mmseg  # noqa: F401  (registers ZeroShotSegmentor)
        import benchmarks.seg_mmseg  # noqa: F401  (registers datasets, metric, hook)
        from adapters.mmseg import ZeroShotSegmentor, class_names_from
        from benchmarks.seg_mmseg import SegPanelHook

        protocol = self.pin_protocol(protocol, encoder, data_root)
        root = ade_root(data_root)
        count = check_pairs(root, protocol["split"])
        supported = getattr(encoder, "dense_modes", DENSE_MODES)
        if protocol["dense_mode"] not in supported:
            raise UserError(
                f"encoder {encoder.name!r} does not support dense mode {protocol['dense_mode']!r}"
            )
        out_dir = Path(options.get("results_dir") or "results") / encoder.name
        out_dir = out_dir / f"{self.name}.{protocol_hash(protocol)}"
        workers = options.get("workers")
        windows = int(options.get("batch_size") or 64)
        cfg = build_config(
            protocol,
            encoder.spec,
            root,
            workers=int(workers) if workers is not None else min(4, os.cpu_count() or 1),
            max_windows_per_forward=windows,
            images_per_batch=images_per_batch(protocol, windows),
            output_dir=str(out_dir / "predictions") if options.get("save_predictions") else None,
        )
        dataset_classes = class_names_from(class_names_source({**protocol, "names": "dataset"}, root))
        settings = settings_from_options(options, "fp32")  # prompt embeddings come from the shared cache
        start = time.perf_counter()
        model = ZeroShotSegmentor(
            **{k: v for k, v in cfg["model"].items() if k not in ("type", "encoder")},
            encoder=encoder,
            text_embedder=lambda texts: encode_texts(encoder, texts, settings, desc="prompts").tensor,
        )
        text_s = time.perf_counter() - start
        if len(model.classes) != len(dataset_classes):
            raise UserError(
                f"{protocol['names']}: {len(model.classes)} classes, but the dataset has {len(dataset_classes)}"
            )
        hooks = (
            [SegPanelHook(str(out_dir / "visualize"), int(options["visualize"]))]
            if options.get("visualize")
            else []
        )
        with tempfile.TemporaryDirectory(prefix="silc-seg-") as work_dir:
            start = time.perf_counter()
            metrics, runner = run_config(cfg, model, work_dir, hooks)
            loop_s = time.perf_counter() - start
        per_class = runner.test_evaluator.metrics[0].per_class
        names = [synonyms[0] for synonyms in dataset_classes]
        timing = model.timing
        extra = {
            "per_class_iou": dict(zip(names, per_class["IoU"], strict=True)),
            "per_class_acc": dict(zip(names, per_class["Acc"], strict=True)),
            "per_class_pixels": dict(zip(names, per_class["pixels"], strict=True)),
            "mmseg_config": cfg,
            "timing": {
                "text_embeddings_s": round(text_s, 3),
                "test_loop_s": round(loop_s, 3),
                "encoder_s": round(timing["encoder_s"], 3),
                "decode_s": round(timing["decode_s"], 3),
                "predict_s": round(timing["predict_s"], 3),
                "encoder_share_of_loop": round(timing["encoder_s"] / loop_s, 4) if loop_s else None,
                "windows": timing["windows"],
                "images_per_s_loop": round(timing["images"] / loop_s, 3) if loop_s else None,
            },
        }
        if hooks:
            extra["visualizations"] = [str(p) for p in hooks[0].written]
        if options.get("save_predictions"):
            extra["predictions_dir"] = str(out_dir / "predictions")
        return Evaluation(
            metrics={key: float(metrics[key]) for key in ("mIoU", "aAcc", "mAcc")},
            split=protocol["split"],
            num_samples=count,
            images_processed=timing["images"],
            extra=extra,
        )


register(SegADE20K())
