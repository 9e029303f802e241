"""Zero-shot semantic segmentation on ADE20K (benchmark ``seg-ade20k``) through mmsegmentation.

Loads the protocol's shipped mmseg config (``benchmarks/configs/mmseg/``: mmseg's ``ADE20KDataset`` with
``reduce_zero_label``, its test pipeline, our registered ``ZeroShotSegmentor``, ``IoUMetric``) with mmengine's
``Config.fromfile``, sets the protocol's knobs, the model, the data root and the run options on it as overrides
(``Config.merge_from_dict``), and runs ``mmengine.runner.Runner.test()``. The same files run under mmengine directly.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.encoder import DENSE_MODES
from benchmarks.mm_logs import logs_to_stderr
from benchmarks.options import HarnessOptions, option
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError

if TYPE_CHECKING:
    from adapters.encoder import Encoder

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
CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "mmseg"
# The shipped config each protocol is; the harness loads it and applies the protocol to it as overrides.
CONFIG_FILES = {"ade-448": "ade20k_448.py", "ade-336": "ade20k_336.py", "synth": "synth_ade20k.py"}
# The parts of a loaded config that the harness runs (and records as ``extra.mmseg_config``).
RUN_KEYS = ("custom_imports", "default_scope", "model", "test_dataloader", "test_evaluator", "test_cfg")


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


def config_file(protocol: dict[str, Any]) -> Path:
    """The shipped config to start from: that of the named protocol (of the same dataset) which ``protocol``
    agrees with on the most knobs, the first on a tie. Every knob is set as an override, so the choice changes
    only how much is overridden, never the resulting config."""
    names = [n for n in CONFIG_FILES if PROTOCOLS[n]["dataset"] == protocol["dataset"]] or list(CONFIG_FILES)
    best = max(names, key=lambda n: sum(protocol.get(k) == v for k, v in PROTOCOLS[n].items()))
    return CONFIG_DIR / CONFIG_FILES[best]


def config_overrides(
    cfg,
    protocol: dict[str, Any],
    encoder: str,
    root: str | Path,
    *,
    workers: int = 2,
    max_windows_per_forward: int | None = None,
    images_per_batch: int = 1,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """What the harness sets on ``cfg`` (the ``mmengine.config.Config`` loaded from ``config_file``), as
    ``Config.merge_from_dict`` keys: every protocol knob, the model spec, the data root and the run options
    (workers, images per batch, windows per forward, where predictions go) and the per-class metric."""
    split = protocol["split"]
    pipeline = cfg.test_dataloader.dataset.pipeline
    (resize,) = (i for i, step in enumerate(pipeline) if step["type"] == "Resize")
    scale = (protocol["max_long_side"], protocol["short_side"])
    overrides: dict[str, Any] = {
        "model.encoder": encoder,
        "model.class_names": class_names_source(protocol, Path(root)),
        "model.templates": protocol["templates"],
        "model.dense_mode": protocol["dense_mode"],
        "model.crop_size": protocol["crop"],
        "model.stride": protocol["stride"],
        "model.logit_scale": protocol["logit_scale"],
        "model.bg_threshold": protocol["bg_threshold"],
        "model.max_windows_per_forward": max_windows_per_forward,
        "test_dataloader.batch_size": images_per_batch,
        "test_dataloader.num_workers": workers,
        "test_dataloader.dataset.type": protocol["dataset"],
        "test_dataloader.dataset.data_root": str(root),
        "test_dataloader.dataset.data_prefix.img_path": f"images/{split}",
        "test_dataloader.dataset.data_prefix.seg_map_path": f"annotations/{split}",
        f"test_dataloader.dataset.pipeline.{resize}.scale": scale,
        "test_evaluator.type": "PerClassIoUMetric",
    }
    if output_dir:
        overrides["test_evaluator.output_dir"] = output_dir
    return overrides


def load_config(protocol: dict[str, Any], encoder: str, root: str | Path, **run: Any) -> dict[str, Any]:
    """The protocol's shipped config with ``config_overrides`` applied: its runnable parts (``RUN_KEYS``) as a
    plain dict. ``run``: the keyword options of ``config_overrides``."""
    from mmengine.config import Config

    cfg = Config.fromfile(config_file(protocol))
    cfg.merge_from_dict(config_overrides(cfg, protocol, encoder, root, **run))
    cfg = cfg.to_dict()
    return {key: cfg[key] for key in RUN_KEYS}


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


@dataclass
class SegOptions(HarnessOptions):
    """Options of ``seg-ade20k`` (``batch_size``: slide windows per encoder forward, default 64)."""

    dense_mode: str | None = option(None, "dense feature mode", knob=True, choices=DENSE_MODES)
    names: str | None = option(
        None, "class names file, one class per line, synonyms comma-separated", knob=True, metavar="FILE"
    )
    templates: str | None = option(None, "openai80, simple7, identity or a templates file", knob=True)
    short_side: int | None = option(None, "resize the short side to this", knob=True)
    crop: int | None = option(None, "slide window size in pixels", knob=True)
    stride: int | None = option(None, "slide window step in pixels", knob=True)
    logit_scale: float | None = option(None, "cosine logit multiplier", knob=True)
    bg_threshold: float | None = option(
        None, "top-class probability below which a pixel is class 0", knob=True
    )
    visualize: int = option(
        0, "write N image | ground truth | prediction PNGs into the record's folder", metavar="N"
    )
    save_predictions: bool = option(
        False, "write every prediction as a label PNG (dataset label values) into the record's folder"
    )


class SegADE20K(Harness):
    name = "seg-ade20k"
    description = "zero-shot semantic segmentation: mIoU, aAcc, mAcc (mmseg ADE20KDataset + IoUMetric)"
    protocols = PROTOCOLS
    default_protocol = "ade-448"
    options_type = SegOptions
    key_metrics = ("mIoU", "aAcc", "mAcc")
    table_order = 40
    metric_scale = "percent"

    def preflight(self, data_root: Path) -> list[str]:
        try:
            check_pairs(ade_root(data_root), "validation")
        except UserError as e:
            return [str(e)]
        return []

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        """Add the template and class-name hashes (what the prompts were) to the protocol."""
        _require_mm()
        from adapters.class_queries import names_sha256
        from adapters.mmseg import class_names_from
        from silc.kernel import resolve_templates

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
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: SegOptions,
        artefacts: Path,
    ) -> Evaluation:
        _require_mm()
        import adapters.mmseg  # noqa: F401  (registers ZeroShotSegmentor)
        import benchmarks.seg_mmseg  # noqa: F401  (registers datasets, metric, hook)
        from adapters.mmseg import ZeroShotSegmentor, class_names_from
        from benchmarks.features import encode_texts, settings_from_options
        from benchmarks.seg_mmseg import SegPanelHook

        protocol = self.pin_protocol(protocol, encoder, data_root)
        root = ade_root(data_root)
        count = check_pairs(root, protocol["split"])
        if protocol["dense_mode"] not in encoder.dense_modes:
            raise UserError(
                f"encoder {encoder.name!r} does not support dense mode {protocol['dense_mode']!r}"
            )
        workers = options.workers
        windows = options.batch_size or 64
        cfg = load_config(
            protocol,
            encoder.spec,
            root,
            workers=int(workers) if workers is not None else min(4, os.cpu_count() or 1),
            max_windows_per_forward=windows,
            images_per_batch=images_per_batch(protocol, windows),
            output_dir=str(artefacts / "predictions") if options.save_predictions else None,
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
        hooks = [SegPanelHook(str(artefacts / "visualize"), options.visualize)] if options.visualize else []
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
        if options.save_predictions:
            extra["predictions_dir"] = str(artefacts / "predictions")
        return Evaluation(
            metrics={key: float(metrics[key]) for key in ("mIoU", "aAcc", "mAcc")},
            split=protocol["split"],
            num_samples=count,
            images_processed=timing["images"],
            extra=extra,
        )


register(SegADE20K())
