"""The mmseg config a ``seg-ade20k`` protocol runs as, and running it: the shipped config file a protocol starts
from (``benchmarks/configs/mmseg/``), every knob, the model, the data root and the run options set on it as
``Config.merge_from_dict`` overrides, and mmengine's ``Runner`` on the result; also whether the OpenMMLab stack it
runs on imports at all.

One place builds and runs these configs, for the zero-shot harness (``benchmarks/segmentation.py``) and the dense
linear probe (``benchmarks/seg_linear.py``); the same files run under mmengine directly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.mm_logs import logs_to_stderr
from benchmarks.seg_dataset import class_names_source
from benchmarks.seg_layouts import layout_of
from benchmarks.seg_protocols import PROTOCOLS, dense_knob_overrides

CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "mmseg"
# The shipped config each protocol is; the harness loads it and applies the protocol to it as overrides.
CONFIG_FILES = {"ade-448": "ade20k_448.py", "ade-336": "ade20k_336.py", "synth": "synth_ade20k.py",
                "voc21": "ovss_voc21.py", "voc20": "ovss_voc20.py", "context60": "ovss_context60.py",
                "context59": "ovss_context59.py", "coco-object": "ovss_coco_object.py",
                "coco-stuff": "ovss_coco_stuff.py", "cityscapes": "ovss_cityscapes.py"}  # fmt: skip
# The parts of a loaded config that the harness runs (and records as ``extra.mmseg_config``).
RUN_KEYS = ("custom_imports", "default_scope", "model", "test_dataloader", "test_evaluator", "test_cfg")


def mm_missing() -> str | None:
    """Why the OpenMMLab stack that seg-ade20k runs on cannot be imported, in one line; None when it can."""
    try:
        import mmcv.ops  # noqa: F401  (mmseg's datasets need the compiled ops)
        import mmseg  # noqa: F401
    except ImportError as e:
        return f"seg-ade20k needs the OpenMMLab stack ({e}); install it with `bash scripts/install-mm.sh`"
    return None


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
    split, layout = protocol["split"], layout_of(protocol["dataset"])
    pipeline = cfg.test_dataloader.dataset.pipeline
    (resize,) = (i for i, step in enumerate(pipeline) if step["type"] == "Resize")
    scale = (protocol["max_long_side"], protocol["short_side"])
    overrides: dict[str, Any] = {
        "model.encoder": encoder,
        "model.class_names": class_names_source(protocol, Path(root)),
        "model.templates": protocol["templates"],
        "model.dense_mode": protocol["dense_mode"],
        **dense_knob_overrides(protocol),
        "model.crop_size": protocol["crop"],
        "model.stride": protocol["stride"],
        "model.logit_scale": protocol["logit_scale"],
        "model.bg_threshold": protocol["bg_threshold"],
        "model.max_windows_per_forward": max_windows_per_forward,
        "test_dataloader.batch_size": images_per_batch,
        "test_dataloader.num_workers": workers,
        "test_dataloader.dataset.type": protocol["dataset"],
        "test_dataloader.dataset.data_root": str(root),
        "test_dataloader.dataset.data_prefix.img_path": layout.img_dir.format(split=split),
        "test_dataloader.dataset.data_prefix.seg_map_path": layout.seg_dir.format(split=split),
        f"test_dataloader.dataset.pipeline.{resize}.scale": scale,
        "test_evaluator.type": "PerClassIoUMetric",
    }
    if layout.split_file is not None:  # the split's image list (Pascal VOC, Pascal Context)
        overrides["test_dataloader.dataset.ann_file"] = layout.split_file.format(split=split)
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


def run_config(
    cfg: dict[str, Any],
    model,
    work_dir: str | Path,
    hooks: list | None = None,
    train: dict[str, Any] | None = None,
    seed: int = 0,
):
    """``Runner.test()`` on ``cfg`` with an already built ``model``; returns (metrics without prefix, runner).
    ``train``: the Runner's training parts (``train_dataloader``, ``optim_wrapper``, ``param_scheduler``,
    ``train_cfg``), run with ``Runner.train()`` (no checkpoints written) before the test; ``seed``: mmengine's.

    Under torchrun mmengine's test loop is distributed by the default process group: its sampler gives each rank
    every world-size-th image (here without padding repeats) and the metric's results are collected on rank 0
    in dataset order, through the process group (not a folder in the working directory that all ranks share)."""
    from mmengine.runner import Runner

    loader = cfg["test_dataloader"]
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        test_dataloader={**loader, "sampler": {**loader["sampler"], "round_up": False}},
        test_evaluator={**cfg["test_evaluator"], "collect_device": "gpu"},  # mmengine's name for it
        test_cfg=cfg["test_cfg"],
        default_scope=cfg["default_scope"],
        custom_hooks=hooks or [],
        default_hooks={"logger": {"type": "LoggerHook", "interval": 50}, "checkpoint": None},
        randomness={"seed": seed},
        experiment_name=f"seg-{time.time_ns()}",  # unique: mmengine keys its logger/visualizer by this name
        log_level="WARNING",
        **(train or {}),
    )
    logs_to_stderr(runner.logger)
    if train:
        runner.train()
    metrics = {key.rpartition("/")[2]: value for key, value in runner.test().items()}  # "seg/mIoU" -> "mIoU"
    return metrics, runner
