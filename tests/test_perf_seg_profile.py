"""The segmentation profile (``python -m silc_bench.perf.seg_profile``): encoder forwards counted through the whole
mmseg path, windows of differently sized images in one forward, the ade-448 recipe on a folder with its own
names, and bad input in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmseg.datasets import ADE20KDataset  # noqa: E402

from benchmarks.registry import get_harness  # noqa: E402
from silc_bench.perf.seg_profile import DenseTimer, main, profile_run, protocol_for  # noqa: E402
from tests.seg_fixtures import ColourOracle, stripe_labels, write_ade  # noqa: E402

VALUES = [1, 2, 3]  # ADE label values (classes 0, 1, 2 after reduce_zero_label), colours 1, 2, 3


def _three_images(root: Path) -> Path:
    """Colour-coded images at short side 448 (no resize): 2, 2 and 3 slide windows of 448 px."""
    rng = np.random.default_rng(0)
    maps = {
        "ADE_val_00000001": stripe_labels(rng, 448, 672, 32, VALUES, vertical=True),
        "ADE_val_00000002": stripe_labels(rng, 672, 448, 32, VALUES, vertical=False),
        "ADE_val_00000003": stripe_labels(rng, 448, 896, 32, VALUES, vertical=True),
    }
    return write_ade(root, maps, {v: v for v in VALUES}).parent


def test_profile_counts_one_forward_for_windows_of_differently_sized_images(tmp_path):
    harness = get_harness("seg-ade20k")
    root = _three_images(tmp_path)
    names = [[str(c).strip()] for c in ADE20KDataset.METAINFO["classes"]]
    oracle = ColourOracle(names, [c + 1 if c < len(VALUES) else 0 for c in range(len(names))])
    timer = DenseTimer(oracle)
    protocol = harness.resolve_protocol("ade-448", {"templates": "identity"})
    run = profile_run(
        harness, oracle, timer, root, protocol, harness.parse_options({"workers": 0, "no_cache": True})
    )
    assert run["images"] == 3 and run["windows"] == 7
    assert run["forwards"] == 1 and run["windows_per_forward"] == {7: 1}  # all three images' windows together
    assert oracle.dense_calls == [(7, 3, 448, 448)]
    assert 0 < run["encoder_share_of_wall"] <= run["encoder_share_of_test_loop"] <= 1
    assert run["metrics"]["mIoU"] == 100.0  # the oracle is exact: batching moved no window


def test_ade_recipe_on_a_folder_with_its_own_names_runs_as_synth(tmp_path):
    harness = get_harness("seg-ade20k")
    root = _three_images(tmp_path)
    assert protocol_for(harness, "ade-448", root, {}) == ("ade-448", harness.resolve_protocol("ade-448"))
    (root / "ADEChallengeData2016" / "classnames.txt").write_text("sky\ngrass\nwater\n")
    name, protocol = protocol_for(harness, "ade-448", root, {"templates": "identity"})
    assert name == "synth"
    assert protocol == harness.resolve_protocol(
        "synth", {"short_side": 448, "crop": 448, "stride": 224, "templates": "identity"}
    )


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["--world", str(tmp_path), "--model", "openclip:ViT-B-16"]) == 2
    assert capsys.readouterr().err == (
        f"seg_profile: error: {tmp_path}: expected ADEChallengeData2016/{{images,annotations}}/<split>/ with "
        "<stem>.jpg images and <stem>.png label maps\n"
    )
