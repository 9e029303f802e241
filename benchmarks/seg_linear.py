"""Dense linear probing on ``seg-ade20k`` (protocols with a ``method``): the checks, the pinned protocol and the run.

``method: linear`` (protocols ``linear``, ``linear-synth``) is DINOv2's linear segmentation protocol through mmseg:
the shipped config (``benchmarks/configs/mmseg/linear_*.py``: ``LinearProbeSegmentor`` = a frozen
``encode_dense`` backbone + ``BNHead``, mmseg's training pipeline, AdamW with linear warmup then poly decay) with
every protocol knob set on it as an override, trained by mmengine's Runner on the training split for a fixed
number of iterations, then tested on the validation split with the same ``PerClassIoUMetric`` (IoUMetric) as the
zero-shot protocols, so that the record holds the same metrics, per-class values and per-image outcomes.
``method: patch-linear`` (protocol ``linear-fast``) is the plain-torch probe of :mod:`benchmarks.patch_probe`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.registry import Evaluation, collect_problems
from benchmarks.seg_areas import (
    area_outcomes,
    metrics_from_areas,
    per_class_extra,
    per_class_from_areas,
    seg_outcomes,
)
from benchmarks.seg_config import CONFIG_DIR, mm_missing, run_config
from benchmarks.seg_dataset import (
    LAYOUT,
    ade_root,
    check_label_sample,
    check_pairs,
    dataset_classes,
    decode_check,
)
from silc.errors import UserError

if TYPE_CHECKING:
    from adapters.encoder import Encoder
    from benchmarks.options import HarnessOptions

METHODS = ("linear", "patch-linear")
# The shipped config each dataset's linear protocol starts from; the harness sets every knob on it.
LINEAR_CONFIG_FILES = {"ADE20KDataset": "linear_ade20k_512.py", "SynthADE20KDataset": "linear_synth.py"}
_POSITIVE_INTS = ("short_side", "max_long_side", "crop", "stride", "batch", "iters", "steps")
_TRAIN_KEYS = ("train_dataloader", "optim_wrapper", "param_scheduler", "train_cfg")
_RUN_KEYS = ("custom_imports", "default_scope", "model", "test_dataloader", "test_evaluator", "test_cfg")


def check_probe_knobs(protocol: dict[str, Any]) -> None:
    """Reject knob values no run could use: an unknown method or dense mode, non-positive sizes and counts, a
    learning rate or warmup out of range."""
    from adapters.encoder import DENSE_MODES

    if protocol["method"] not in METHODS:
        raise UserError(f"protocol knob method {protocol['method']!r}: expected one of {', '.join(METHODS)}")
    if protocol["dense_mode"] not in DENSE_MODES:
        raise UserError(f"--dense-mode {protocol['dense_mode']!r}: expected one of {', '.join(DENSE_MODES)}")
    for key in _POSITIVE_INTS:
        if key in protocol and (not isinstance(protocol[key], int) or protocol[key] < 1):
            raise UserError(f"protocol knob {key}: expected a positive integer, got {protocol[key]!r}")
    if not (isinstance(protocol["lr"], int | float) and protocol["lr"] > 0):
        raise UserError(f"protocol knob lr: expected a positive number, got {protocol['lr']!r}")
    if "warmup_iters" in protocol and not 0 <= protocol["warmup_iters"] < protocol["iters"]:
        raise UserError(
            f"protocol knob warmup_iters: expected 0 <= warmup_iters < iters ({protocol['iters']}), "
            f"got {protocol['warmup_iters']!r}"
        )
    if protocol["train_split"] == protocol["split"]:
        raise UserError(
            f"protocol knob train_split: the head must not train on the evaluated split {protocol['split']!r}"
        )


def check_train_split(root: Path, protocol: dict[str, Any]) -> int:
    """Number of training images; a dataset without its training split is a UserError saying what is needed."""
    split = protocol["train_split"]
    if not (root / "images" / split).is_dir() or not (root / "annotations" / split).is_dir():
        raise UserError(
            f"{root / 'images' / split}: no {split!r} split; protocol method {protocol['method']!r} trains its "
            f"head on it (expected {LAYOUT})"
        )
    return check_pairs(root, split)


def preflight_probe(data_root: Path, protocol: dict[str, Any]) -> list[str]:
    """Every problem of a probe run: the knobs, the OpenMMLab stack, both splits' image/label pairs, and the
    label values of a sample of each split's label maps."""
    mm = mm_missing()
    problems = collect_problems(lambda: check_probe_knobs(protocol)) + ([mm] if mm else [])
    try:
        root = ade_root(data_root)
    except UserError as e:
        return [*problems, str(e)]
    problems += collect_problems(
        lambda: check_pairs(root, protocol["split"]), lambda: check_train_split(root, protocol)
    )
    if mm or problems:
        return problems
    try:
        classes = dataset_classes(protocol, root)
    except UserError as e:
        return [str(e)]
    return collect_problems(
        *(
            lambda s=s: check_label_sample(root, s, len(classes))
            for s in (protocol["train_split"], protocol["split"])
        )
    )


def pin_probe(protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
    """``protocol`` with the count and hash of the classes the head is trained on (the dataset's own)."""
    from adapters.class_queries import names_sha256

    check_probe_knobs(protocol)
    classes = dataset_classes(protocol, ade_root(data_root))
    return {**protocol, "names_count": len(classes), "names_sha256": names_sha256(classes)}


def linear_config(
    protocol: dict[str, Any], encoder: str, root: str | Path, width: int, num_classes: int, workers: int = 2
) -> dict[str, Any]:
    """The dataset's shipped linear config with every protocol knob, the model spec, the encoder's width, the
    class count, the data root and the workers set on it: its runnable and training parts as a plain dict."""
    from mmengine.config import Config

    cfg = Config.fromfile(CONFIG_DIR / LINEAR_CONFIG_FILES.get(protocol["dataset"], "linear_ade20k_512.py"))
    crop, stride, scale = (
        protocol["crop"],
        protocol["stride"],
        (protocol["max_long_side"], protocol["short_side"]),
    )
    train_pipeline = []
    for step in cfg.train_dataloader.dataset.pipeline:
        step = dict(step)
        if step["type"] == "RandomResize":
            step.update(scale=scale, ratio_range=tuple(protocol["ratio_range"]))
        elif step["type"] == "RandomCrop":
            step.update(crop_size=(crop, crop), cat_max_ratio=protocol["cat_max_ratio"])
        elif step["type"] == "RandomFlip":
            step.update(prob=protocol["flip_prob"])
        elif step["type"] == "PhotoMetricDistortion" and not protocol["photometric"]:
            continue
        train_pipeline.append(step)
    test_pipeline = [
        dict(s, scale=scale) if s["type"] == "Resize" else dict(s)
        for s in cfg.test_dataloader.dataset.pipeline
    ]
    warmup, iters = protocol["warmup_iters"], protocol["iters"]
    cfg.merge_from_dict(
        {
            "model.backbone.encoder": encoder,
            "model.backbone.dense_mode": protocol["dense_mode"],
            "model.decode_head.in_channels": width,
            "model.decode_head.channels": width,
            "model.decode_head.num_classes": num_classes,
            "model.data_preprocessor.size": (crop, crop),
            "model.test_cfg.crop_size": (crop, crop),
            "model.test_cfg.stride": (stride, stride),
            "optim_wrapper.optimizer.lr": protocol["lr"],
            "optim_wrapper.optimizer.weight_decay": protocol["weight_decay"],
            "train_cfg.max_iters": iters,
            "test_evaluator.type": "PerClassIoUMetric",
        }
    )
    cfg = cfg.to_dict()
    cfg["param_scheduler"] = [
        {"type": "LinearLR", "start_factor": 1e-6, "by_epoch": False, "begin": 0, "end": warmup},
        {
            "type": "PolyLR",
            "power": protocol["poly_power"],
            "eta_min": 0.0,
            "by_epoch": False,
            "begin": warmup,
            "end": iters,
        },
    ][0 if warmup else 1 :]
    for part, split, pipeline in (
        ("train_dataloader", protocol["train_split"], train_pipeline),
        ("test_dataloader", protocol["split"], test_pipeline),
    ):
        loader = cfg[part]
        loader["num_workers"] = workers
        loader["persistent_workers"] = False
        loader["dataset"].update(
            type=protocol["dataset"],
            data_root=str(root),
            data_prefix={"img_path": f"images/{split}", "seg_map_path": f"annotations/{split}"},
            pipeline=pipeline,
        )
    cfg["train_dataloader"]["batch_size"] = protocol["batch"]
    return {key: cfg[key] for key in _RUN_KEYS + _TRAIN_KEYS}


def evaluate_probe(
    encoder: Encoder, data_root: Path, protocol: dict[str, Any], options: HarnessOptions
) -> Evaluation:
    """Train the probe of a pinned probe ``protocol`` on the training split and score the validation split."""
    root = ade_root(data_root)
    check_train_split(root, protocol)
    check_pairs(root, protocol["split"])
    if encoder.patch_size is None or protocol["dense_mode"] not in encoder.dense_modes:
        raise UserError(f"encoder {encoder.name!r} does not support dense mode {protocol['dense_mode']!r}")
    names = [synonyms[0] for synonyms in dataset_classes(protocol, root)]
    train, _, _ = decode_check(root, protocol["train_split"], False)
    kept, skipped, check_s = decode_check(root, protocol["split"], options.skip_bad_images)
    if skipped:
        raise UserError(
            f"{root}: --skip-bad-images is not supported by probe protocols ({len(skipped)} files do not decode)"
        )
    workers = options.workers if options.workers is not None else min(4, os.cpu_count() or 1)
    if protocol["method"] == "patch-linear":
        return _patch_probe(encoder, root, protocol, names, train, kept, check_s)
    return _linear(encoder, root, protocol, names, workers, check_s)


def _linear(
    encoder: Encoder, root: Path, protocol: dict[str, Any], names: list[str], workers: int, check_s: float
) -> Evaluation:
    """The mmseg linear probe: train, test, and the record's metrics, per-class values and outcomes."""
    from mmengine.registry import DefaultScope

    import adapters.mmseg_probe  # noqa: F401  (registers the backbone, head and segmentor)
    import benchmarks.seg_mmseg  # noqa: F401  (registers datasets and metric)
    from adapters.mmseg_probe import LinearProbeSegmentor

    cfg = linear_config(protocol, encoder.spec, root, encoder.embed_dim, len(names), workers)
    with DefaultScope.overwrite_default_scope("mmseg"):
        model = LinearProbeSegmentor(
            backbone={**cfg["model"]["backbone"], "encoder": encoder},
            **{k: v for k, v in cfg["model"].items() if k not in ("type", "backbone")},
        )
    train = {key: cfg[key] for key in _TRAIN_KEYS}
    with tempfile.TemporaryDirectory(prefix="silc-seg-linear-") as work_dir:
        start = time.perf_counter()
        metrics, runner = run_config(cfg, model, work_dir, train=train, seed=protocol["seed"])
        loop_s = time.perf_counter() - start
    metric = runner.test_evaluator.metrics[0]
    outcomes = seg_outcomes(metric, root, names)
    backbone = model.backbone.timing
    extra = {
        **per_class_extra(names, metric.per_class),
        "iou_metric_rounded": {key: float(metrics[key]) for key in ("mIoU", "aAcc", "mAcc")},
        "mmseg_config": cfg,
        "timing": {
            "decode_check_s": round(check_s, 3),
            "train_and_test_s": round(loop_s, 3),
            "encoder_s": round(backbone["encoder_s"], 3),
            "encoder_images": backbone["images"],
        },
    }
    return Evaluation(
        metrics={key: metric.unrounded[key] for key in ("mIoU", "aAcc", "mAcc")},
        split=protocol["split"],
        num_samples=len(outcomes.units),
        images_processed=backbone["images"],
        extra=extra,
        outcomes=outcomes,
    )


def _patch_probe(
    encoder: Encoder,
    root: Path,
    protocol: dict[str, Any],
    names: list[str],
    train: list[str],
    val: list[str],
    check_s: float,
) -> Evaluation:
    """The plain-torch patch probe (:mod:`benchmarks.patch_probe`) and its record parts."""
    import numpy as np

    from benchmarks.patch_probe import ProbeSettings, patch_probe

    settings = ProbeSettings(**{k: protocol[k] for k in ProbeSettings.__dataclass_fields__})
    result = patch_probe(
        encoder, root, len(names), settings, protocol["train_split"], train, protocol["split"], val
    )
    outcomes = area_outcomes(result.units, result.areas, names)
    ones = np.ones((1, len(val)), np.int64)
    metrics = {k: float(v[0]) for k, v in metrics_from_areas(outcomes.arrays, ones).items()}
    per_class = {
        key: [None if np.isnan(v) else float(v) for v in per_class_from_areas(outcomes.arrays, ones, key)[0]]
        for key in ("IoU", "Acc")
    }
    per_class["pixels"] = [int(v) for v in result.areas["label"].sum(axis=0)]
    extra = {
        **per_class_extra(names, per_class),
        "train_patches": result.train_patches,
        "final_loss": result.final_loss,
        "timing": {"decode_check_s": round(check_s, 3), **{k: round(v, 3) for k, v in result.timing.items()}},
    }
    return Evaluation(
        metrics=metrics,
        split=protocol["split"],
        num_samples=len(val),
        images_processed=len(train) + len(val),
        extra=extra,
        outcomes=outcomes,
    )
