"""Zero-shot semantic segmentation on ADE20K (benchmark ``seg-ade20k``) through mmsegmentation; its protocols also
cover the ovss8 suite's Pascal VOC, Pascal Context, COCO-Object, COCO-Stuff and Cityscapes, each read from its
public layout (``benchmarks/seg_layouts.py``).

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

from adapters.encoder import DENSE_MODES, NACLIP_STD, check_naclip_std
from benchmarks.identity import ADE20K_CLASSES, ADE20K_VAL_IMAGES, PublicDataset
from benchmarks.mm_logs import logs_to_stderr
from benchmarks.options import HarnessOptions, option
from benchmarks.readers.images import (
    BadImage,
    bomb_warnings_silenced,
    decode_label_map,
    find_bad_images,
    settle_bad_images,
)
from benchmarks.registry import Evaluation, Harness, collect_problems, register
from benchmarks.seg_layouts import ADE as ADE_LAYOUT
from benchmarks.seg_layouts import SegLayout, layout_of, public_claims, reduces_zero_label
from benchmarks.seg_names import SHIPPED_NAMES, SHIPPED_PREFIX, names_file
from silc.errors import UserError, listed
from silc.io import atomic_write_text

if TYPE_CHECKING:
    import numpy as np

    from adapters.encoder import Encoder
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes

# naclip_std is recorded only with dense mode naclip, pamr_* only with PAMR on (pamr_iterations set),
# area_threshold (a knob of the protocols with a background class only) only when set: the records of before these
# knobs keep their protocol hash (pinned_knobs).
_ADE = {"dataset": "ADE20KDataset", "split": "validation", "max_long_side": 2048, "names": "dataset",
        "templates": "openai80", "dense_mode": "naive", "logit_scale": 100.0, "bg_threshold": None,
        "naclip_std": NACLIP_STD, "pamr_iterations": None, "pamr_dilations": [8, 16]}  # fmt: skip
_LINEAR = {"method": "linear", "dataset": "ADE20KDataset", "train_split": "training", "split": "validation",
           "max_long_side": 2048, "dense_mode": "naive", "short_side": 512, "crop": 512, "stride": 341,
           "ratio_range": [0.5, 2.0], "cat_max_ratio": 0.75, "flip_prob": 0.5, "photometric": True, "batch": 16,
           "iters": 40000, "warmup_iters": 1500, "lr": 1e-3, "weight_decay": 1e-4, "poly_power": 1.0,
           "seed": 0}  # fmt: skip
_OVSS = {**_ADE, "short_side": 336, "crop": 224, "stride": 112}
PROTOCOLS: dict[str, dict[str, Any]] = {
    # TCL / ClearCLIP: short side 448, 448 windows every 224 px.
    "ade-448": {**_ADE, "short_side": 448, "crop": 448, "stride": 224},
    # SCLIP / NACLIP: short side 336, 224 windows every 112 px.
    "ade-336": {**_ADE, "short_side": 336, "crop": 224, "stride": 112},
    # The synthetic world's ADE20K (64-px images, its own classnames.txt): the ade-448 recipe at its scale.
    "synth": {**_ADE, "dataset": "SynthADE20KDataset", "short_side": 64, "crop": 64, "stride": 32},
    # Dense linear probing (benchmarks/seg_linear.py): DINOv2's linear protocol through mmseg, trained on the
    # training split; its schedule at the synthetic world's scale; and the fast patch-level probe in plain torch
    # (benchmarks/patch_probe.py).
    "linear": _LINEAR,
    "linear-synth": {**_LINEAR, "dataset": "SynthADE20KDataset", "short_side": 64, "crop": 64, "stride": 32,
                     "batch": 8, "iters": 600, "warmup_iters": 60},
    "linear-fast": {"method": "patch-linear", "dataset": "SynthADE20KDataset", "train_split": "training",
                    "split": "validation", "max_long_side": 2048, "short_side": 64, "dense_mode": "naive",
                    "steps": 300, "lr": 0.01, "weight_decay": 1e-4, "seed": 0},
    # The ovss8 suite (benchmarks/suites/ovss8.yaml, with ade-336): the open-vocabulary segmentation benchmarks of
    # SCLIP / NACLIP at NACLIP's settings: short side 336 (Cityscapes 560), 224 windows every 112 px (VOC: whole
    # images, one window up to the longest side); with a background class, logit scale 40 and background where the
    # top class probability is below 0.1; names: mmseg's classes, with SCLIP/NACLIP's synonyms where they list some.
    # With a background class, area_threshold: SCLIP's area filter (off: None; the ovss8_sclip suite sets it).
    "voc21": {**_OVSS, "dataset": "PascalVOCDataset", "split": "val", "names": "shipped:voc21", "crop": 2048,
              "stride": 2048, "logit_scale": 40.0, "bg_threshold": 0.1, "area_threshold": None},
    "voc20": {**_OVSS, "dataset": "PascalVOC20Dataset", "split": "val", "names": "shipped:voc20", "crop": 2048,
              "stride": 2048},
    "context60": {**_OVSS, "dataset": "PascalContextDataset", "split": "val", "logit_scale": 40.0,
                  "bg_threshold": 0.1, "area_threshold": None},
    "context59": {**_OVSS, "dataset": "PascalContextDataset59", "split": "val"},
    "coco-object": {**_OVSS, "dataset": "COCOObjectDataset", "split": "val2017", "names": "shipped:coco-object",
                    "logit_scale": 40.0, "bg_threshold": 0.1, "area_threshold": None},
    "coco-stuff": {**_OVSS, "dataset": "COCOStuffDataset", "split": "val2017"},
    "cityscapes": {**_OVSS, "dataset": "CityscapesDataset", "split": "val", "short_side": 560},
}  # fmt: skip
LAYOUT = ADE_LAYOUT.text
CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "mmseg"
LABEL_SAMPLE = 20  # label maps whose values the preflight reads (evenly spaced by name)
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


def _require_mm() -> None:
    missing = mm_missing()
    if missing:
        raise UserError(missing)


def ade_root(data_root: Path) -> Path:
    """``data_root`` itself or its ``ADEChallengeData2016/`` child, whichever holds ``images/`` + ``annotations/``."""
    return ADE_LAYOUT.root(data_root)


def dataset_root(data_root: Path, protocol: dict[str, Any]) -> Path:
    """The root of the protocol's dataset under ``data_root``, in the layout its mmseg dataset class reads
    (``benchmarks/seg_layouts.py``: ADE20K, Pascal VOC / Context, COCO-Stuff / -Object, Cityscapes)."""
    return layout_of(protocol["dataset"]).root(data_root)


def check_pairs(root: Path, split: str, layout: SegLayout = ADE_LAYOUT) -> int:
    """Number of images of ``split`` in ``layout``; every image needs its label map (a UserError names what is
    missing)."""
    return layout.check_pairs(root, split)


def find_bad_pairs(
    root: Path, split: str, layout: SegLayout = ADE_LAYOUT
) -> tuple[dict[str, str], list[str]]:
    """Decode every image of ``split`` and its label map fully with PIL (mmseg decodes images with cv2, which
    reads a truncated JPEG as grey without a word). Returns ``{file relative to root: why}`` of the files that do
    not decode, and the names (as mmseg names them: under the image folder, without the suffix, in its order) of
    the images that decode with their label maps."""
    names = layout.names(root, split)
    paths = [p for pair in layout.pairs(root, split, names) for p in pair]
    found = find_bad_images(paths)
    bad = {paths[i].relative_to(root).as_posix(): why for i, why in found.items()}
    kept = [n for j, n in enumerate(names) if 2 * j not in found and 2 * j + 1 not in found]
    return bad, kept


def check_knobs(protocol: dict[str, Any]) -> None:
    """Reject knob values no run could use (unknown dense mode, non-positive sizes, a std or PAMR setting that is
    unusable or set where it does nothing, a threshold that is not a fraction)."""
    mode = protocol["dense_mode"]
    if mode not in DENSE_MODES:
        raise UserError(f"--dense-mode {mode!r}: expected one of {', '.join(DENSE_MODES)}")
    std = check_naclip_std(protocol.get("naclip_std", NACLIP_STD))
    if mode != "naclip" and std != NACLIP_STD:
        raise UserError(
            f"--naclip-std {std:g}: applies to --dense-mode naclip only (the dense mode is {mode})"
        )
    if protocol.get("pamr_iterations") is not None:
        from adapters.pamr import check_pamr

        check_pamr(protocol["pamr_iterations"], protocol.get("pamr_dilations", _ADE["pamr_dilations"]))
    elif protocol.get("pamr_dilations", _ADE["pamr_dilations"]) != _ADE["pamr_dilations"]:
        raise UserError("--pamr-dilations: applies with --pamr-iterations N only (PAMR is off)")
    for key in ("short_side", "crop", "stride"):
        if not isinstance(protocol[key], int) or protocol[key] < 1:
            raise UserError(f"protocol knob {key}: expected a positive integer, got {protocol[key]!r}")
    if protocol["bg_threshold"] is not None and not 0 < protocol["bg_threshold"] < 1:
        raise UserError(
            f"protocol knob bg_threshold: expected a probability in (0, 1), got {protocol['bg_threshold']}"
        )
    area = protocol.get("area_threshold")
    if area is not None and (isinstance(area, bool) or not isinstance(area, int | float) or not 0 < area < 1):
        raise UserError(f"protocol knob area_threshold: expected a fraction in (0, 1), got {area!r}")


def pinned_knobs(protocol: dict[str, Any]) -> dict[str, Any]:
    """``protocol`` with ``naclip_std`` kept (as a float) only for dense mode naclip, ``pamr_iterations`` /
    ``pamr_dilations`` only with PAMR on and ``area_threshold`` (as a float) only when set, so that the records of
    every other run keep the protocol hash they had before these knobs existed (:func:`check_knobs` has accepted
    ``protocol``)."""
    pinned = dict(protocol)
    area = pinned.pop("area_threshold", None)
    if area is not None:
        pinned["area_threshold"] = float(area)
    std = pinned.pop("naclip_std", NACLIP_STD)
    if pinned["dense_mode"] == "naclip":
        pinned["naclip_std"] = float(std)
    dilations = pinned.pop("pamr_dilations", _ADE["pamr_dilations"])
    if pinned.pop("pamr_iterations", None) is not None:
        pinned |= {
            "pamr_iterations": protocol["pamr_iterations"],
            "pamr_dilations": list(dilations),
        }
    return pinned


def own_vocabulary(root: Path) -> list[str] | None:
    """The classes (first names) of the folder's own classnames.txt when they are not mmseg ADE20KDataset's 150
    in its order; None without such a file or when it lists exactly those."""
    own = root / "classnames.txt"
    if not own.is_file():
        return None
    from adapters.class_queries import read_names_file
    from adapters.mmseg import class_names_from

    theirs = [synonyms[0] for synonyms in read_names_file(own)]
    ade = [synonyms[0] for synonyms in class_names_from({"dataset": "ADE20KDataset"})]
    return None if theirs == ade else theirs


def check_vocabulary(protocol: dict[str, Any], root: Path) -> None:
    """A folder that ships its own classnames.txt is never scored with ADE20K's 150 names silently: a protocol
    that would (ADE20KDataset with the dataset's names) on such a folder is a UserError saying what to use."""
    if protocol["dataset"] != "ADE20KDataset" or protocol["names"] != "dataset":
        return
    theirs = own_vocabulary(root)
    if theirs is None:
        return
    own, renamed = root / "classnames.txt", len(theirs) == ADE20K_CLASSES
    what = f"{ADE20K_CLASSES} classes named otherwise" if renamed else f"{len(theirs)} classes"
    names = f"--names {own} or " if renamed else ""
    raise UserError(
        f"{own}: the folder's own {what}, but this protocol scores with ADE20K's {ADE20K_CLASSES} names (mmseg "
        f"ADE20KDataset); use {names}--protocol synth, which reads that file (--short-side 448 --crop 448 "
        "--stride 224 for the ade-448 recipe)"
    )


def check_names_match(protocol: dict[str, Any], root: Path, classes: list[list[str]]) -> None:
    """The names the protocol prompts with (a names file, or the dataset's own) are one per class of the dataset
    (``classes``: :func:`dataset_classes`), whose label values index them."""
    from adapters.mmseg import class_names_from

    names = class_names_from(class_names_source(protocol, root))
    if len(names) != len(classes):
        raise UserError(f"{protocol['names']}: {len(names)} classes, but the dataset has {len(classes)}")


def check_label_sample(
    root: Path,
    split: str,
    num_classes: int,
    sample: int = LABEL_SAMPLE,
    layout: SegLayout = ADE_LAYOUT,
    reduce_zero_label: bool = True,
) -> None:
    """Label values of the label maps of ``sample`` evenly spaced images (in mmseg's order) of ``split`` in
    ``layout``: only 0..classes-1 (with reduce_zero_label, as ADE20K's 0 "other": 0..classes) and 255 are labels;
    IoUMetric would drop any other value without a word."""
    import numpy as np

    ann_dir = layout.dirs(root, split)[1]
    names = layout.names(root, split)
    picks = sorted({names[round(i)] for i in np.linspace(0, len(names) - 1, min(sample, len(names)))})
    top = num_classes if reduce_zero_label else num_classes - 1
    bad = []
    for _, path in layout.pairs(root, split, picks):
        try:
            with bomb_warnings_silenced():
                labels = decode_label_map(path)
        except BadImage:  # the decode check names it (find_bad_pairs, --skip-bad-images)
            continue
        if labels.ndim != 2:
            bad.append(f"{path.name} ({labels.shape[-1]} channels, not a label map)")
            continue
        values = np.unique(labels)
        wrong = values[(values > top) & (values != 255)].tolist()
        if wrong:
            bad.append(f"{path.name} (values {listed(wrong, 5)})")
    if bad:
        reduced = ", reduce_zero_label" if reduce_zero_label else ""
        raise UserError(
            f"{ann_dir}: {len(bad)} of {len(picks)} sampled label maps hold values other than 0..{top} "
            f"and 255 ({num_classes} classes{reduced}): {listed(bad, 3)}"
        )


def dataset_classes(protocol: dict[str, Any], root: Path) -> list[list[str]]:
    """The dataset's own class list (mmseg METAINFO, or the synthetic layout's classnames.txt): what the label
    values index, whatever names the protocol prompts with."""
    from adapters.mmseg import class_names_from

    return class_names_from(class_names_source({**protocol, "names": "dataset"}, root))


def ade20k_differences(data_root: Path, protocol: dict[str, Any]) -> list[str]:
    """How ``data_root`` under ``protocol`` differs from ADE20K-150 validation: the dataset and class names
    (mmseg ADE20KDataset's 150; a classnames.txt with another vocabulary), 2,000 images with their label maps."""
    root = ade_root(data_root)
    out = []
    if protocol["dataset"] != "ADE20KDataset":
        out.append(f"protocol dataset {protocol['dataset']} (expected ADE20KDataset)")
    if protocol.get("names", "dataset") != "dataset":
        out.append(f"class names from {protocol['names']} (expected mmseg ADE20KDataset's {ADE20K_CLASSES})")
    theirs = own_vocabulary(root)
    if theirs is not None:
        out.append(f"classnames.txt lists {len(theirs)} classes other than ADE20K's {ADE20K_CLASSES}")
    if protocol["split"] != "validation":
        out.append(f"split {protocol['split']!r} (expected validation)")
    images = check_pairs(root, protocol["split"])
    labels = sum(1 for _ in (root / "annotations" / protocol["split"]).rglob("*.png"))
    if images != ADE20K_VAL_IMAGES or labels != ADE20K_VAL_IMAGES:
        out.append(f"{images:,} images and {labels:,} label maps (expected {ADE20K_VAL_IMAGES:,} each)")
    return out


def class_names_source(protocol: dict[str, Any], root: Path) -> str | dict:
    """What the segmentor reads its class names from: the dataset's own list or a names file (a shipped one for
    ``shipped:<name>``, benchmarks/seg_names.py)."""
    if protocol["names"] != "dataset":
        return names_file(str(protocol["names"]))
    if protocol["dataset"] == "SynthADE20KDataset":
        return str(root / "classnames.txt")
    import benchmarks.seg_mmseg  # noqa: F401  (registers the dataset classes mmseg lacks: VOC-20, COCO-Object)

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


def dense_knob_overrides(protocol: dict[str, Any]) -> dict[str, Any]:
    """The segmentor's ``naclip_std`` (with dense mode naclip), PAMR settings (with PAMR on) and area threshold
    (when set) as config overrides; none otherwise, so that the other protocols' configs are their shipped files."""
    overrides: dict[str, Any] = {}
    if protocol.get("area_threshold") is not None:
        overrides["model.area_threshold"] = float(protocol["area_threshold"])
    if protocol["dense_mode"] == "naclip":
        overrides["model.naclip_std"] = float(protocol.get("naclip_std", NACLIP_STD))
    if protocol.get("pamr_iterations") is not None:
        overrides["model.pamr_iterations"] = protocol["pamr_iterations"]
        overrides["model.pamr_dilations"] = list(protocol.get("pamr_dilations", _ADE["pamr_dilations"]))
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


def decode_check(
    root: Path, split: str, skip: bool, layout: SegLayout = ADE_LAYOUT
) -> tuple[list[str], list[str], float]:
    """Every image of ``split`` and its label map decoded before mmseg reads them (:func:`find_bad_pairs`); bad
    files stop the run in one line or, with ``skip``, leave their images out. Returns the names of the images
    evaluated (mmseg's order), the files skipped and the seconds the check took."""
    start = time.perf_counter()
    bad, kept = find_bad_pairs(root, split, layout)
    check_s = time.perf_counter() - start
    return kept, settle_bad_images(bad, root, skip, len(kept)), check_s


def subset_ann_file(artefacts: Path, kept: list[str]) -> str:
    """mmseg's way to evaluate a subset: an ``ann_file`` listing the images ``kept`` (in its order), written into
    ``artefacts``. Its absolute path: mmengine joins a relative ``ann_file`` onto the data root."""
    images_file = atomic_write_text(artefacts / "images.txt", "".join(f"{n}\n" for n in kept))
    return str(images_file.resolve())


def run_timing(timing: dict[str, Any], check_s: float, text_s: float, loop_s: float) -> dict[str, Any]:
    """The record's ``extra.timing``: the decode check, the prompt embeddings and mmengine's test loop (seconds),
    and the segmentor's own ``timing`` inside the loop (encoder, decode, predict, windows, images)."""
    return {
        "decode_check_s": round(check_s, 3),
        "text_embeddings_s": round(text_s, 3),
        "test_loop_s": round(loop_s, 3),
        "encoder_s": round(timing["encoder_s"], 3),
        "decode_s": round(timing["decode_s"], 3),
        "predict_s": round(timing["predict_s"], 3),
        "encoder_share_of_loop": round(timing["encoder_s"] / loop_s, 4) if loop_s else None,
        "windows": timing["windows"],
        "images_per_s_loop": round(timing["images"] / loop_s, 3) if loop_s else None,
    }


@dataclass
class SegOptions(HarnessOptions):
    """Options of ``seg-ade20k`` (``batch_size``: slide windows per encoder forward, default 64)."""

    dense_mode: str | None = option(None, "dense feature mode", knob=True, choices=DENSE_MODES)
    naclip_std: float | None = option(
        None,
        f"std in patches of dense mode naclip's Gaussian attention prior (default {NACLIP_STD:g})",
        knob=True,
    )
    pamr_iterations: int | None = option(
        None,
        "refine the logits with N PAMR steps guided by the image (NACLIP: 10; default: no PAMR)",
        knob=True,
        metavar="N",
    )
    pamr_dilations: list[int] | None = option(
        None, "PAMR neighbourhood dilations in pixels (default 8 16)", knob=True, metavar="D"
    )
    names: str | None = option(
        None,
        "class names file, one class per line, synonyms comma-separated, or a shipped list: "
        + ", ".join(f"{SHIPPED_PREFIX}{name}" for name in SHIPPED_NAMES),
        knob=True,
        metavar="FILE",
    )
    templates: str | None = option(None, "openai80, simple7, identity or a templates file", knob=True)
    short_side: int | None = option(None, "resize the short side to this", knob=True)
    crop: int | None = option(None, "slide window size in pixels", knob=True)
    stride: int | None = option(None, "slide window step in pixels", knob=True)
    logit_scale: float | None = option(None, "cosine logit multiplier", knob=True)
    bg_threshold: float | None = option(
        None, "top-class probability below which a pixel is class 0", knob=True
    )
    area_threshold: float | None = option(
        None,
        "SCLIP's area filter (protocols with a background class): a class predicted on at most this fraction of "
        "the non-background pixels is dropped",
        knob=True,
        metavar="F",
    )
    visualize: int = option(
        0, "write N image | ground truth | prediction PNGs into the record's folder", metavar="N"
    )
    save_predictions: bool = option(
        False, "write every prediction as a label PNG (dataset label values) into the record's folder"
    )


class SegADE20K(Harness):
    name = "seg-ade20k"
    description = (
        "semantic segmentation, zero-shot or dense linear probing: mIoU, aAcc, mAcc (mmseg IoUMetric)"
    )
    protocols = PROTOCOLS
    default_protocol = "ade-448"
    options_type = SegOptions
    key_metrics = ("mIoU", "aAcc", "mAcc")
    table_order = 40
    metric_scale = "percent"
    public_datasets = {"ade20k": PublicDataset("ADE20K-150", ade20k_differences), **public_claims()}

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """The knobs, the OpenMMLab stack, the templates, the image/label pairs, the class names (never ADE20K's on a
        folder with its own vocabulary) and the label values of a sample of label maps (a probe protocol: also of
        its training split)."""
        from silc.kernel import resolve_templates

        if protocol.get("method"):
            from benchmarks.seg_linear import preflight_probe

            return preflight_probe(data_root, protocol)

        mm = mm_missing()
        problems = collect_problems(lambda: check_knobs(protocol)) + ([mm] if mm else [])
        problems += collect_problems(lambda: resolve_templates(protocol["templates"]))
        try:
            layout = layout_of(protocol["dataset"])
            root = layout.root(data_root)
            check_pairs(root, protocol["split"], layout)
        except UserError as e:
            return [*problems, str(e)]
        if mm:  # the class lists below come from mmseg
            return problems
        try:
            classes = dataset_classes(protocol, root)
        except UserError as e:
            return [*problems, str(e)]
        return problems + collect_problems(
            lambda: check_vocabulary(protocol, root),
            lambda: check_names_match(protocol, root, classes),
            lambda: check_label_sample(
                root,
                protocol["split"],
                len(classes),
                layout=layout,
                reduce_zero_label=reduces_zero_label(protocol["dataset"]),
            ),
        )

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        """Add the template and class-name hashes (what the prompts were) to the protocol (a probe protocol: the
        hash of the classes its head is trained on)."""
        _require_mm()
        if protocol.get("method"):
            from benchmarks.seg_linear import pin_probe

            return pin_probe(protocol, encoder, data_root)
        from adapters.class_queries import names_sha256
        from adapters.mmseg import class_names_from
        from silc.kernel import resolve_templates

        check_knobs(protocol)
        root = dataset_root(data_root, protocol)
        check_vocabulary(protocol, root)
        classes = class_names_from(class_names_source(protocol, root))
        templates = resolve_templates(protocol["templates"])
        return {
            **pinned_knobs(protocol),
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
        if protocol.get("method"):
            from benchmarks.seg_linear import evaluate_probe

            return evaluate_probe(
                encoder, data_root, self.pin_protocol(protocol, encoder, data_root), options
            )
        import adapters.mmseg  # noqa: F401  (registers ZeroShotSegmentor)
        import benchmarks.seg_mmseg  # noqa: F401  (registers datasets, metric, hook)
        from adapters.mmseg import ZeroShotSegmentor
        from benchmarks import sharding
        from benchmarks.features import encode_texts, settings_from_options
        from benchmarks.seg_mmseg import SegPanelHook, write_panels

        protocol = self.pin_protocol(protocol, encoder, data_root)
        layout = layout_of(protocol["dataset"])
        root = layout.root(data_root)
        check_pairs(root, protocol["split"], layout)
        if protocol["dense_mode"] not in encoder.dense_modes:
            raise UserError(
                f"encoder {encoder.name!r} does not support dense mode {protocol['dense_mode']!r}"
            )
        classes = dataset_classes(protocol, root)
        check_names_match(protocol, root, classes)
        kept, skipped, check_s = decode_check(root, protocol["split"], options.skip_bad_images, layout)
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
        if skipped:  # written by rank 0, read by every rank
            cfg["test_dataloader"]["dataset"]["ann_file"] = sharding.on_main(
                lambda: subset_ann_file(artefacts, kept)
            )
        settings = settings_from_options(options, "fp32")  # prompt embeddings come from the shared cache
        start = time.perf_counter()
        model = ZeroShotSegmentor(
            **{k: v for k, v in cfg["model"].items() if k not in ("type", "encoder")},
            encoder=encoder,
            text_embedder=lambda texts: encode_texts(encoder, texts, settings, desc="prompts").tensor,
        )
        text_s = time.perf_counter() - start
        hooks = [SegPanelHook(options.visualize)] if options.visualize else []
        with tempfile.TemporaryDirectory(prefix="silc-seg-") as work_dir:
            start = time.perf_counter()
            metrics, runner = run_config(cfg, model, work_dir, hooks)
            loop_s = time.perf_counter() - start
        # under torchrun each rank ran its share of the images: their panels and counts are gathered
        panels = (
            [panel for part in sharding.gather_objects(hooks[0].panels) for panel in part] if hooks else None
        )
        counted = sharding.gather_objects({key: model.timing[key] for key in ("images", "windows")})
        timing = {**model.timing, **{key: sum(part[key] for part in counted) for key in counted[0]}}
        # rank 0's metric holds every image's areas (mmengine collects them there): every rank takes a copy
        metric = sharding.on_main(lambda: runner.test_evaluator.metrics[0])
        names = [synonyms[0] for synonyms in classes]
        outcomes = seg_outcomes(metric, root, names)
        if len(outcomes.units) != len(kept):
            raise RuntimeError(
                f"{self.name}: {len(outcomes.units)} per-image outcomes for {len(kept)} images"
            )
        extra = {
            **per_class_extra(names, metric.per_class),
            "iou_metric_rounded": {key: float(metrics[key]) for key in ("mIoU", "aAcc", "mAcc")},
            "mmseg_config": cfg,
            "timing": run_timing(timing, check_s=check_s, text_s=text_s, loop_s=loop_s),
        }
        if panels is not None:  # of every rank, drawn by rank 0
            meta = runner.test_dataloader.dataset.metainfo
            written = sharding.on_main(
                lambda: write_panels(panels, artefacts / "visualize", meta["classes"], meta["palette"])
            )
            extra["visualizations"] = [str(p) for p in written]
        if options.save_predictions:
            extra["predictions_dir"] = str(artefacts / "predictions")
        return Evaluation(
            metrics={key: metric.unrounded[key] for key in ("mIoU", "aAcc", "mAcc")},
            split=protocol["split"],
            num_samples=len(kept),
            images_processed=timing["images"],
            extra=extra,
            outcomes=outcomes,
            skipped_images=skipped,
        )

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """mIoU, aAcc and mAcc (percent, unrounded: mmseg's IoUMetric values before its 2-decimal rounding) of
        each resample, from the count-weighted sums over images of the intersection, union and label areas (see
        :func:`metrics_from_areas`; not a mean of per-image IoUs)."""
        return metrics_from_areas(arrays, counts)

    def per_class_from_counts(
        self, arrays: dict[str, np.ndarray], counts: np.ndarray, metric: str = "IoU"
    ) -> np.ndarray:
        """Per-class IoU (``metric="Acc"``: accuracy) in percent, unrounded, of each resample: ``[B, C]`` with
        NaN where a class's denominator is 0, classes in the order of ``arrays["classes"]``. With all counts 1
        it equals the record's ``extra["per_class_iou"]`` (``per_class_acc``), None there being NaN here. For
        per-class intervals and paired per-class deltas (same ``counts`` for both models)."""
        return per_class_from_areas(arrays, counts, metric)

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """Uniform random labels for the valid pixels, in percent: with C classes and p_c each class's share of
        the label pixels (the outcomes' summed label areas), aAcc = 1/C; mAcc = 1/C (the mean over the labelled
        classes; the metric's ``nan_to_num`` for the others when it has one); mIoU = the mean over all C classes
        of E[I]/E[U] = p_c / (C p_c + 1 - p_c), 0 for a class with predictions but no label pixels."""
        import numpy as np

        if outcomes is None:
            return {}
        label = outcomes.arrays["label"].astype(np.float64).sum(axis=0)
        if label.sum() == 0:
            return {}
        c, share = label.size, label / label.sum()
        acc = np.where(share > 0, 1 / c, float(outcomes.arrays["nan_to_num"]))
        return {
            "mIoU": float(np.mean(share / (c * share + 1 - share))) * 100,
            "aAcc": 100 / c,
            "mAcc": float(np.nanmean(acc)) * 100,
        }


def per_class_extra(names: list[str], per_class: dict[str, list]) -> dict[str, dict[str, Any]]:
    """The record's per-class values by class name: IoU and Acc (percent, None where undefined) and label pixels
    (``per_class``: lists ``IoU``, ``Acc``, ``pixels`` in class order, as ``PerClassIoUMetric.per_class``)."""
    return {
        f"per_class_{key.lower()}": dict(zip(names, per_class[key], strict=True))
        for key in ("IoU", "Acc", "pixels")
    }


def seg_outcomes(metric, root: Path, classes: list[str]) -> Outcomes:
    """The per-sample outcomes of a run: per image (units: image paths relative to the dataset root, in dataset
    order), per class, the pixel counts mmseg's IoUMetric summed (``intersect``, ``union``, ``pred_label``,
    ``label``: integer ``[n_images, C]``), the class names, and the metric's ``nan_to_num`` (NaN: none)."""
    units = [os.path.relpath(os.path.abspath(p), os.path.abspath(root)) for p in metric.image_paths]
    return area_outcomes(units, metric.per_image, classes, metric.nan_to_num)


def area_outcomes(
    units: list[str], areas: dict[str, np.ndarray], classes: list[str], nan_to_num: float | None = None
) -> Outcomes:
    """Per-image outcomes from the per-image areas (:data:`AREA_KEYS`: integer
    ``[n_images, C]``) of the images ``units``, with the class names and the metric's ``nan_to_num``."""
    import numpy as np

    from benchmarks.uncertainty import Outcomes

    arrays = dict(areas)
    arrays["classes"] = np.asarray(classes, dtype=str)
    arrays["nan_to_num"] = np.asarray(np.nan if nan_to_num is None else nan_to_num, np.float64)
    return Outcomes("image", units, arrays)


AREA_KEYS = ("intersect", "union", "pred_label", "label")  # the order of IoUMetric.intersect_and_union


def image_areas(pred, label, num_classes: int, ignore_index: int = 255) -> dict[str, np.ndarray]:
    """One image's per-class pixel counts as mmseg's ``IoUMetric.intersect_and_union`` computes them (pixels whose
    label is ``ignore_index`` left out; union = predicted + labelled - intersection), as int64 ``[C]`` arrays
    named by ``AREA_KEYS``, from integer tensors ``pred`` and ``label`` of one shape: the same outcomes without
    mmseg (the parity test holds them equal)."""
    import torch

    keep = label != ignore_index
    pred, label = pred[keep].long(), label[keep].long()
    intersect = torch.bincount(pred[pred == label], minlength=num_classes)
    area_pred = torch.bincount(pred, minlength=num_classes)
    area_label = torch.bincount(label, minlength=num_classes)
    counts = (intersect, area_pred + area_label - intersect, area_pred, area_label)
    return {key: value[:num_classes].numpy() for key, value in zip(AREA_KEYS, counts, strict=True)}


# The totals of float32 areas that mmseg adds up stay exact while they are at most 2**24.
_FLOAT32_EXACT = 2**24


def summed_areas(areas: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[B, C]`` float32: for each resample, the areas ``[n, C]`` of its images summed as IoUMetric sums them
    (``sum()`` of float32 tensors, one image after another in dataset order, an image drawn k times added k
    times). Exact integer sums where they are at most 2**24 (float32 adds integers exactly up to there); the
    classes and resamples beyond that are added up in float32 in that order, so that the rounding is mmseg's."""
    import numpy as np

    exact = counts.astype(np.float64) @ areas.astype(np.float64)  # integers < 2**53: exact in any order
    out = exact.astype(np.float32)
    over = exact > _FLOAT32_EXACT
    if over.any():
        rows, cols = np.flatnonzero(over.any(axis=1)), np.flatnonzero(over.any(axis=0))
        drawn, values = counts[rows], areas[:, cols].astype(np.float32)
        total = np.zeros((len(rows), len(cols)), np.float32)
        for i in range(areas.shape[0]):
            for k in range(int(drawn[:, i].max(initial=0))):
                total = np.where((drawn[:, i] > k)[:, None], total + values[i], total)
        out[np.ix_(rows, cols)] = total
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray, nan_to_num: float) -> np.ndarray:
    """float32 ``numerator / denominator`` (0/0 is NaN), as torch divides the float32 totals."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = numerator / denominator
    return ratio if np.isnan(nan_to_num) else np.nan_to_num(ratio, nan=nan_to_num)


def per_class_from_areas(
    arrays: dict[str, np.ndarray], counts: np.ndarray, metric: str = "IoU"
) -> np.ndarray:
    """Per-class ``IoU`` (intersection / union) or ``Acc`` (intersection / label area) of the summed areas of
    each resample, in percent (float32 ratio times 100 in float64, as the record's per-class values), unrounded:
    ``[B, C]``, NaN where the denominator is 0 (unless the metric had a ``nan_to_num``)."""
    import numpy as np

    if metric not in ("IoU", "Acc"):
        raise ValueError(f"per-class metric {metric!r}: expected IoU or Acc")
    denominator = arrays["union"] if metric == "IoU" else arrays["label"]
    ratio = _ratio(
        summed_areas(arrays["intersect"], counts),
        summed_areas(denominator, counts),
        float(arrays["nan_to_num"]),
    )
    return ratio.astype(np.float64) * 100


def metrics_from_areas(arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
    """mIoU, aAcc, mAcc ``[B]`` of each resample, computed as mmseg's ``IoUMetric.compute_metrics`` and
    ``total_area_to_metrics`` compute them from the summed areas: per-class IoU = ΣI / ΣU and Acc = ΣI / Σlabel
    and aAcc = ΣI / Σlabel over all classes (float32, as torch), means = ``np.nanmean`` over the classes (NaN for
    a 0 denominator), times 100 in float32 — IoUMetric's value before its ``np.round(..., 2)``, which is left out
    (the record keeps full precision; tables round). The reductions over classes run per resample on fresh 1-D
    arrays, as mmseg's do, so that with all counts 1 the result is the record's metric bit for bit."""
    import warnings

    import numpy as np
    import torch

    nan_to_num = float(arrays["nan_to_num"])
    intersect = summed_areas(arrays["intersect"], counts)
    union = summed_areas(arrays["union"], counts)
    label = summed_areas(arrays["label"], counts)
    iou, acc = _ratio(intersect, union, nan_to_num), _ratio(intersect, label, nan_to_num)
    out = {key: np.full(len(counts), np.nan) for key in ("mIoU", "aAcc", "mAcc")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with every class undefined: NaN
        for b in range(len(counts)):
            # torch's float32 sum over the classes, on a fresh tensor as mmseg's totals are
            all_acc = (torch.tensor(intersect[b]).sum() / torch.tensor(label[b]).sum()).numpy()
            if not np.isnan(nan_to_num):
                all_acc = np.nan_to_num(all_acc, nan=nan_to_num)
            for key, value in (("aAcc", all_acc), ("mIoU", iou[b].copy()), ("mAcc", acc[b].copy())):
                out[key][b] = np.nanmean(value) * 100
    return out


register(SegADE20K())
