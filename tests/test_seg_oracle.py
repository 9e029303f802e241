"""The oracle test: an encoder whose dense features are the one-hot ground truth at patch resolution gets mIoU 100
through the whole mmseg path (dataset, pipeline, resize, slide stitching, reduce_zero_label, IoUMetric); breaking
the channel order or the label reduction makes it fail."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmseg.datasets import ADE20KDataset  # noqa: E402

from adapters.mmseg import ZeroShotSegmentor  # noqa: E402
from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.runner import run_harness  # noqa: E402
from benchmarks.seg_config import load_config, run_config  # noqa: E402
from silc.errors import UserError  # noqa: E402
from tests.seg_fixtures import COLOURS, ColourOracle, colourise_ade, stripe_labels, write_ade  # noqa: E402

ADE_VALUES = [0, 1, 3, 13, 21, 88, 150]  # ADE label values used by the fixture (0 = "other", ignored)
ADE_NAMES = [[str(c).strip()] for c in ADE20KDataset.METAINFO["classes"]]
# Colours whose red and blue differ, so that reading BGR as RGB changes every class's colour.
ADE_COLOURS = dict(zip(ADE_VALUES, [i for i, c in enumerate(COLOURS) if c[0] != c[2]], strict=False))


def _ade_fixture(root: Path) -> Path:
    """Two colour-coded images in the ADE20K layout, 32-px stripes (patch-aligned at scale 1): vertical stripes in
    a landscape image, horizontal ones in a portrait image (slide windows along x, then along y)."""
    rng = np.random.default_rng(0)
    maps = {
        "ADE_val_00000001": stripe_labels(rng, 448, 672, 32, ADE_VALUES, vertical=True),
        "ADE_val_00000002": stripe_labels(rng, 672, 448, 32, ADE_VALUES, vertical=False),
    }
    return write_ade(root, maps, ADE_COLOURS).parent


def _ade_oracle(patch: int = 16) -> ColourOracle:
    return ColourOracle(ADE_NAMES, [ADE_COLOURS.get(c + 1, 0) for c in range(150)], patch_size=patch)


def _evaluate(encoder, root: Path, protocol_name: str, tmp_path: Path, save_predictions=False, **overrides):
    harness = get_harness("seg-ade20k")
    protocol = harness.resolve_protocol(protocol_name, {"templates": "identity", **overrides})
    options = {"workers": 0, "no_cache": True, "save_predictions": save_predictions}
    record, _, _ = run_harness(
        harness, encoder, root, protocol_name, protocol, tmp_path / "results", options=options
    )
    return record


def test_oracle_is_perfect_on_ade_layout_with_mmseg_ade20k_dataset(tmp_path):
    oracle = _ade_oracle()
    record = _evaluate(oracle, _ade_fixture(tmp_path), "ade-448", tmp_path)
    assert record.metrics["mIoU"] == 100.0 and record.metrics["aAcc"] == 100.0
    present = {ADE_NAMES[v - 1][0] for v in ADE_VALUES if v}
    assert {k for k, v in record.extra["per_class_iou"].items() if v is not None} == present
    assert record.num_samples == 2 and record.extra["timing"]["windows"] == 4  # 2 windows per image
    assert record.protocol["names_count"] == 150 and record.protocol["templates_count"] == 1
    assert oracle.dense_calls == [
        (4, 3, 448, 448)
    ]  # both images (padded into one batch), all windows, one forward


def test_oracle_detects_wrong_channel_order_and_label_shift(tmp_path):
    root = _ade_fixture(tmp_path) / "ADEChallengeData2016"
    protocol = get_harness("seg-ade20k").resolve_protocol("ade-448", {"templates": "identity"})
    base = load_config(protocol, "oracle", root, workers=0)
    for breakage in ("bgr", "labels"):
        cfg = copy.deepcopy(base)
        if breakage == "bgr":
            cfg["model"]["data_preprocessor"]["bgr_to_rgb"] = False
        else:
            cfg["test_dataloader"]["dataset"]["reduce_zero_label"] = False
        kwargs = {k: v for k, v in cfg["model"].items() if k != "type"} | {"encoder": _ade_oracle()}
        model = ZeroShotSegmentor(**kwargs)
        if breakage == "bgr":
            metrics, _ = run_config(cfg, model, tmp_path / breakage)
            assert metrics["mIoU"] < 20
        else:  # unreduced ADE labels: 1..150 for 150 classes, so class 150 is out of range (and the rest shifted)
            with pytest.raises(UserError, match=r"label value\(s\) \[150\] out of range"):
                run_config(cfg, model, tmp_path / breakage)


def test_oracle_survives_resizing_and_overlapping_windows(tmp_path):
    """Non-patch-aligned scale (400 -> 336), 224/112 windows, patch 4: a pixel may only be wrong within half a
    patch (in the resized image) of a ground-truth boundary, so windows and both resizes are placed right."""
    rng = np.random.default_rng(1)
    maps = {
        "ADE_val_00000001": stripe_labels(rng, 400, 560, 40, ADE_VALUES, vertical=True),
        "ADE_val_00000002": stripe_labels(rng, 560, 400, 40, ADE_VALUES, vertical=False),
    }
    root = write_ade(tmp_path, maps, ADE_COLOURS).parent
    record = _evaluate(_ade_oracle(patch=4), root, "ade-336", tmp_path, save_predictions=True)
    assert record.extra["timing"]["windows"] == 2 * 2 * 4  # 336 x 470: 2 rows x 4 columns of windows
    tolerance = (4 / 2) / (336 / 400) + 1  # half a patch, in original pixels, plus the pixel itself
    for stem, labels in maps.items():
        pred = np.asarray(Image.open(Path(record.extra["predictions_dir"]) / f"{stem}.png")).astype(int)
        profile_gt, profile_pred = (labels[0], pred) if stem.endswith("1") else (labels[:, 0], pred.T)
        edges = np.flatnonzero(np.diff(profile_gt)) + 0.5  # boundary positions between pixel centres
        wrong = np.flatnonzero(((profile_pred != profile_gt) & (profile_gt != 0)).any(axis=0))
        distance = np.abs(wrong[:, None] - edges[None, :]).min(axis=1) if len(wrong) else np.zeros(0)
        assert distance.max(initial=0) <= tolerance, (stem, wrong[distance > tolerance])
    assert record.metrics["aAcc"] > 97.0


def test_oracle_on_synthetic_world_annotations(tmp_path, synth_root):
    """The synthetic world's own ADE annotations (SynthADE20KDataset, classnames.txt, reduce_zero_label), painted
    in oracle colours; 32-px windows every 16 px on its 64-px images; a names file with synonyms."""
    colours = colourise_ade(synth_root, tmp_path / "world")
    names = (synth_root / "ADEChallengeData2016" / "classnames.txt").read_text().split("\n")
    names = [n for n in names if n]
    names_file = tmp_path / "names.txt"
    names_file.write_text("".join(f"{n}, a {n}\n" for n in names))
    oracle = ColourOracle(
        [[n, f"a {n}"] for n in names], [colours[c + 1] for c in range(len(names))], patch_size=1
    )
    record = _evaluate(
        oracle, tmp_path / "world", "synth", tmp_path, crop=32, stride=16, names=str(names_file)
    )
    assert record.metrics["mIoU"] == 100.0
    assert record.num_samples == len(
        list((synth_root / "ADEChallengeData2016/images/validation").glob("*.jpg"))
    )
    assert record.extra["timing"]["windows"] == record.num_samples * 9
