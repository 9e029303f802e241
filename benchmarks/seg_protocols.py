"""The named protocols of ``seg-ade20k`` and what their knobs may be: every knob that changes a number, per
protocol (ADE20K's zero-shot recipes, the synthetic world's, the dense linear probes, the ovss8 suite's
benchmarks); the values a run can use (:func:`check_knobs`); the knobs a record's protocol keeps
(:func:`pinned_knobs`); and the dense-feature knobs as segmentor overrides (:func:`dense_knob_overrides`).

Kept apart from the harness (``benchmarks/segmentation.py``) and the mmseg config it builds
(``benchmarks/seg_config.py``): a protocol's definition and its validation read in one place, importable without
mmseg.
"""

from __future__ import annotations

from typing import Any

from adapters.encoder import DENSE_MODES, NACLIP_STD, check_naclip_std
from silc.errors import UserError

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
