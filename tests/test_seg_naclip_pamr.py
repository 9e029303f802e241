"""Dense mode ``naclip`` (NACLIP's Gaussian neighbourhood prior on key-key attention) and PAMR refinement in the
zero-shot segmentor: against float64 computations written out here, the protocol knobs that record them (only when
used, so that earlier records keep their protocol hash) and bad values as one-line errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmseg.structures import SegDataSample  # noqa: E402

import adapters.dense  # noqa: E402
from adapters.dense import gaussian_prior  # noqa: E402
from adapters.mmseg import ZeroShotSegmentor  # noqa: E402
from adapters.pamr import NACLIP_DILATIONS, pamr  # noqa: E402
from benchmarks.records import protocol_hash, read_record  # noqa: E402
from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.seg_config import config_overrides  # noqa: E402
from benchmarks.seg_protocols import PROTOCOLS, check_knobs  # noqa: E402
from silc.errors import UserError  # noqa: E402
from silc_bench.cli import main  # noqa: E402
from tests.conftest import TINY_MODEL_CONFIG  # noqa: E402
from tests.test_encoder_dense import _reference_dense, naclip_prior  # noqa: E402

TINY = f"tiny=openclip:{TINY_MODEL_CONFIG}"
REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "ablations" / "metrics.jsonl"


@pytest.fixture(scope="module")
def visual64(tiny_encoder):
    return copy.deepcopy(tiny_encoder.model.visual).double()


# -- dense mode naclip -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid,std", [((8, 8), 5.0), ((12, 8), 1.5), ((3, 7), 0.4)])
def test_gaussian_prior_is_its_definition(grid, std):
    torch.testing.assert_close(
        gaussian_prior(grid, std, torch.float64), naclip_prior(*grid, std), rtol=0, atol=1e-15
    )


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
@pytest.mark.parametrize("std", [0.7, 2.0, 5.0])
def test_naclip_matches_the_step_by_step_reference_at_any_std(tiny_encoder, visual64, size, std):
    torch.manual_seed(5)
    images = torch.randn(2, 3, *size)
    out = tiny_encoder.encode_dense(images, "naclip", naclip_std=std)
    ref = _reference_dense(visual64, images.double(), "naclip", naclip_std=std).float()
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-5)


def _patch_prior(variant: str):
    """gaussian_prior with one bug: the prior dropped, the class token given a prior or masked out, or the
    patches' prior laid out from token 0 (the class token's offset forgotten)."""

    def prior(grid, std, dtype, device=None):
        right = gaussian_prior(grid, std, dtype, device)
        if variant == "dropped":
            return torch.zeros_like(right)
        if variant == "class token as a neighbour":
            return right.index_fill(0, torch.tensor([0]), 1.0).index_fill(1, torch.tensor([0]), 1.0)
        if variant == "class token masked":
            masked = right.clone()
            masked[1:, 0] = -math.inf
            return masked
        assert variant == "no class-token offset"
        shifted = torch.zeros_like(right)
        shifted[:-1, :-1] = right[1:, 1:]
        return shifted

    return prior


@pytest.mark.parametrize(
    "variant", ["dropped", "class token as a neighbour", "class token masked", "no class-token offset"]
)
def test_the_reference_catches_a_wrong_prior(tiny_encoder, visual64, monkeypatch, variant):
    """Each of these bugs moves the features far outside the reference test's tolerance (2e-5)."""
    torch.manual_seed(6)
    images = torch.randn(2, 3, 64, 96)
    ref = _reference_dense(visual64, images.double(), "naclip", naclip_std=2.0).float()
    monkeypatch.setattr(adapters.dense, "gaussian_prior", _patch_prior(variant))
    wrong = tiny_encoder.encode_dense(images, "naclip", naclip_std=2.0)
    assert (wrong - ref).abs().max() > 1e-3, variant


@pytest.mark.parametrize("std", [0.0, -1.0, math.nan, math.inf, "5"])
def test_bad_naclip_std_is_a_one_line_user_error(tiny_encoder, std):
    with pytest.raises(UserError, match="naclip_std: expected a positive number of patches") as err:
        tiny_encoder.encode_dense(torch.randn(1, 3, 64, 64), "naclip", naclip_std=std)
    assert "\n" not in str(err.value)


# -- PAMR ---------------------------------------------------------------------------------------------------------


def _pamr_loop(image: np.ndarray, logits: np.ndarray, iterations: int, dilations) -> np.ndarray:
    """PAMR's definition pixel by pixel in float64 (adapters/pamr.py's module docstring)."""
    channels, height, width = image.shape

    def clamp(y: int, x: int) -> tuple[int, int]:
        return min(max(y, 0), height - 1), min(max(x, 0), width - 1)

    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    weights: dict[tuple[int, int], list[tuple[tuple[int, int], float]]] = {}
    for y in range(height):
        for x in range(width):
            window = [clamp(y + dy * d, x + dx * d) for d in dilations for dy, dx in steps]
            neighbours = [
                clamp(y + dy * d, x + dx * d) for d in dilations for dy, dx in steps if (dy, dx) != (0, 0)
            ]
            std = []
            for k in range(channels):
                values = [image[k, yy, xx] for yy, xx in window]
                mean = sum(values) / len(values)
                std.append(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))
            scores = []
            for yy, xx in neighbours:
                terms = [
                    abs(image[k, y, x] - image[k, yy, xx]) / (1e-8 + 0.1 * std[k]) for k in range(channels)
                ]
                scores.append(-sum(terms) / channels)
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            weights[y, x] = [(n, e / sum(exps)) for n, e in zip(neighbours, exps, strict=True)]
    out = logits.astype(np.float64)
    for _ in range(iterations):
        new = np.zeros_like(out)
        for (y, x), pairs in weights.items():
            for (yy, xx), weight in pairs:
                new[:, y, x] += weight * out[:, yy, xx]
        out = new
    return out


@pytest.mark.parametrize(
    "size,iterations,dilations", [((12, 10), 1, (1, 2)), ((9, 13), 10, (8, 16)), ((7, 9), 3, (1, 3, 5))]
)
def test_pamr_is_its_definition(size, iterations, dilations):
    generator = torch.Generator().manual_seed(7)
    image = torch.randn(3, *size, generator=generator, dtype=torch.float64)
    image[:, :3, :3] = 0.25  # a flat corner: the standard deviation is 0 there
    logits = torch.randn(4, *size, generator=generator, dtype=torch.float64) * 20
    expected = _pamr_loop(image.numpy(), logits.numpy(), iterations, dilations)
    torch.testing.assert_close(
        pamr(image, logits, iterations, dilations), torch.from_numpy(expected), rtol=0, atol=1e-10
    )
    out32 = pamr(image.float(), logits.float(), iterations, dilations)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), torch.from_numpy(expected), rtol=0, atol=1e-4)


def test_pamr_commutes_with_the_logit_scale_and_keeps_constants():
    generator = torch.Generator().manual_seed(8)
    image = torch.randn(3, 20, 24, generator=generator, dtype=torch.float64)
    logits = torch.randn(5, 20, 24, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(pamr(image, 40 * logits, 10, (8, 16)), 40 * pamr(image, logits, 10, (8, 16)))
    flat = torch.full((2, 20, 24), 3.5, dtype=torch.float64)
    torch.testing.assert_close(pamr(image, flat, 10, (8, 16)), flat)


@pytest.mark.parametrize(
    "iterations,dilations,message",
    [(0, (8, 16), "pamr_iterations: expected a positive integer, got 0"),
     (2.5, (8, 16), "pamr_iterations: expected a positive integer, got 2.5"),
     (10, (), "pamr_dilations: expected a non-empty list of positive integers, got ()"),
     (10, (8, 0), "pamr_dilations: expected a non-empty list of positive integers, got (8, 0)")],
)  # fmt: skip
def test_bad_pamr_settings_are_one_line_user_errors(iterations, dilations, message):
    with pytest.raises(UserError) as err:
        pamr(torch.zeros(3, 4, 4), torch.zeros(2, 4, 4), iterations, dilations)
    assert str(err.value) == message


# -- the segmentor -------------------------------------------------------------------------------------------------

NAMES = [["circle", "round shape"], "square", "grass", ["sky", "heaven"], "water"]
QUERIES = [["circle"], ["round shape"], ["square"], ["grass"], ["sky"], ["heaven"], ["water"]]
OWNER = torch.tensor([0, 0, 1, 2, 3, 3, 4])


def _segmentor(encoder, names, **kw) -> ZeroShotSegmentor:
    return ZeroShotSegmentor(
        encoder=encoder, class_names=names, templates="identity", crop_size=32, stride=24, **kw
    )


def _predict(seg: ZeroShotSegmentor, inputs: torch.Tensor, metas: list[dict]) -> list[torch.Tensor]:
    return [s.pred_sem_seg.data[0] for s in seg.predict(inputs, [SegDataSample(metainfo=m) for m in metas])]


@pytest.mark.parametrize("mode", ["naive", "naclip"])
@pytest.mark.parametrize("bg_threshold", [None, 0.5])
def test_segmentor_pamr_refines_its_own_logits_as_defined(tiny_encoder, mode, bg_threshold):
    """Labels with PAMR = the argmax over queries (then their class; the background threshold on the softmax over
    queries) of the float64 loop PAMR of the segmentor's unrefined query logits at the original shape, guided by the
    normalised image cropped to its own shape and resized bilinearly there (NACLIP's order)."""
    torch.manual_seed(9)
    inputs = torch.randn(2, 3, 40, 56)  # a batch padded to the larger image
    metas = [{"img_shape": (40, 56), "ori_shape": (30, 42)}, {"img_shape": (36, 48), "ori_shape": (45, 60)}]
    knobs = {"dense_mode": mode, "bg_threshold": bg_threshold, "logit_scale": 50.0}
    refined = _segmentor(tiny_encoder, NAMES, pamr_iterations=3, pamr_dilations=(2, 4), **knobs)
    plain = _segmentor(tiny_encoder, NAMES, **knobs)
    per_query = _segmentor(tiny_encoder, QUERIES, **knobs)  # the same queries, one class each
    assert refined.query_owner.tolist() == OWNER.tolist()
    labels, unrefined = _predict(refined, inputs, metas), _predict(plain, inputs, metas)
    changed = 0
    for i, meta in enumerate(metas):
        (h, w), out = meta["img_shape"], meta["ori_shape"]
        logits = per_query.class_logits(inputs[i : i + 1], [(h, w)], [out])[0]
        guide = F.interpolate(inputs[i : i + 1, :, :h, :w], size=out, mode="bilinear", align_corners=False)[0]
        expected = torch.from_numpy(_pamr_loop(guide.double().numpy(), logits.double().numpy(), 3, (2, 4)))
        probs = expected.softmax(dim=0)
        top = probs.topk(2, dim=0).values
        want = OWNER[expected.argmax(dim=0)]
        if bg_threshold is not None:
            want[probs.max(dim=0).values < bg_threshold] = 0
        clear = (top[0] - top[1] > 1e-5) & ((probs.max(dim=0).values - (bg_threshold or 0)).abs() > 1e-5)
        assert clear.float().mean() > 0.99
        assert torch.equal(labels[i][clear], want[clear])
        changed += int((labels[i] != unrefined[i]).sum())
    assert changed > 0  # PAMR changed some labels: the comparison is not between two unrefined maps


def test_pamr_off_predicts_as_without_the_knobs(tiny_encoder):
    torch.manual_seed(10)
    inputs = torch.randn(1, 3, 40, 56)
    metas = [{"img_shape": (40, 56), "ori_shape": (50, 70)}]
    default = _predict(_segmentor(tiny_encoder, NAMES, dense_mode="sclip"), inputs, metas)[0]
    off = _segmentor(tiny_encoder, NAMES, dense_mode="sclip", naclip_std=2.0, pamr_iterations=None)
    assert off.pamr is None and off.dense_options == {}  # naclip_std reaches only mode naclip
    assert torch.equal(_predict(off, inputs, metas)[0], default)
    logits = off.class_logits(inputs, [(40, 56)], [(50, 70)])[0]
    assert torch.equal(default, logits.argmax(dim=0))


def test_segmentor_passes_the_std_to_naclip_only(tiny_encoder, monkeypatch):
    calls = []
    encode = tiny_encoder.encode_dense
    monkeypatch.setattr(
        tiny_encoder, "encode_dense", lambda x, mode, **kw: calls.append((mode, kw)) or encode(x, mode, **kw)
    )
    inputs = torch.randn(1, 3, 32, 32)
    for mode in ("naclip", "clearclip"):
        _segmentor(tiny_encoder, NAMES, dense_mode=mode, naclip_std=2.5).class_logits(
            inputs, [(32, 32)], [(32, 32)]
        )
    assert calls == [("naclip", {"naclip_std": 2.5}), ("clearclip", {})]


# -- the harness and its protocol --------------------------------------------------------------------------------


def _pinned(root: Path, protocol: str = "synth", **knobs) -> dict:
    harness = get_harness("seg-ade20k")
    return harness.pin_protocol(harness.resolve_protocol(protocol, knobs), None, root)


def test_default_protocols_keep_the_hash_of_the_committed_reference_records(synth_root):
    (hash_,) = {
        line["protocol_hash"]
        for line in map(json.loads, REFERENCE.read_text().splitlines())
        if line["benchmark"] == "seg-ade20k" and line["protocol_name"] == "synth"
    }
    pinned = _pinned(synth_root)
    assert protocol_hash(pinned) == hash_
    assert not {"naclip_std", "pamr_iterations", "pamr_dilations"} & set(pinned)
    assert _pinned(synth_root, dense_mode="clearclip").keys() == pinned.keys()


def test_the_protocol_records_the_new_knobs_only_when_used(synth_root):
    default = _pinned(synth_root)
    naclip = _pinned(synth_root, dense_mode="naclip")
    assert naclip == {**default, "dense_mode": "naclip", "naclip_std": 5.0}
    assert _pinned(synth_root, dense_mode="naclip", naclip_std=2) == {**naclip, "naclip_std": 2.0}
    refined = _pinned(synth_root, pamr_iterations=10)
    assert refined == {**default, "pamr_iterations": 10, "pamr_dilations": [8, 16]}
    assert _pinned(synth_root, pamr_iterations=3, pamr_dilations=[4]) == {
        **default, "pamr_iterations": 3, "pamr_dilations": [4]
    }  # fmt: skip
    harness = get_harness("seg-ade20k")
    assert harness.pin_protocol(refined, None, synth_root) == refined  # pinning twice changes nothing
    assert harness.pin_protocol(naclip, None, synth_root) == naclip
    assert len({protocol_hash(p) for p in (default, naclip, refined)}) == 3
    assert PROTOCOLS["ade-448"]["pamr_dilations"] == list(NACLIP_DILATIONS)


@pytest.mark.parametrize(
    "knobs,message",
    [({"dense_mode": "fancy"}, "--dense-mode 'fancy': expected one of naive, maskclip, sclip, clearclip, naclip"),
     ({"dense_mode": "naclip", "naclip_std": -1.0}, "naclip_std: expected a positive number of patches, got -1.0"),
     ({"dense_mode": "maskclip", "naclip_std": 3.0}, "--naclip-std 3: applies to --dense-mode naclip only"),
     ({"pamr_iterations": 0}, "pamr_iterations: expected a positive integer, got 0"),
     ({"pamr_iterations": 10, "pamr_dilations": [8, -16]}, "pamr_dilations: expected a non-empty list of positive"),
     ({"pamr_dilations": [4, 8]}, "--pamr-dilations: applies with --pamr-iterations N only (PAMR is off)")],
)  # fmt: skip
def test_bad_knobs_are_one_line_user_errors(knobs, message):
    with pytest.raises(UserError) as err:
        check_knobs({**PROTOCOLS["synth"], **knobs})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_overrides_carry_the_new_knobs_only_when_used():
    from mmengine.config import Config

    from benchmarks.seg_config import config_file

    def overrides(**knobs):
        protocol = {**PROTOCOLS["synth"], **knobs}
        return config_overrides(Config.fromfile(config_file(protocol)), protocol, "ENCODER", "/data")

    default = overrides()
    assert not any("naclip" in key or "pamr" in key for key in default)
    assert overrides(dense_mode="naclip", naclip_std=3) == {**default, "model.dense_mode": "naclip",
                                                            "model.naclip_std": 3.0}  # fmt: skip
    assert overrides(pamr_iterations=10) == {
        **default,
        "model.pamr_iterations": 10,
        "model.pamr_dilations": [8, 16],
    }


def _eval(data: Path, results: Path, *extra: str) -> int:
    return main(["eval", "seg-ade20k", "--model", TINY, "--data", str(data), "--results", str(results),
                 "--workers", "0", "--protocol", "synth", "--cache-dir", f"{results}-cache", *extra])  # fmt: skip


def test_naclip_with_pamr_end_to_end(synth_root, tmp_path):
    assert (
        _eval(synth_root, tmp_path, "--dense-mode", "naclip", "--naclip-std", "3", "--pamr-iterations", "2")
        == 0
    )
    assert _eval(synth_root, tmp_path, "--dense-mode", "naclip", "--naclip-std", "3") == 0
    records = {
        r.protocol.get("pamr_iterations"): r for r in map(read_record, tmp_path.rglob("seg-ade20k.*.json"))
    }
    refined, plain = records[2], records[None]
    assert refined.protocol == {**plain.protocol, "pamr_iterations": 2, "pamr_dilations": [8, 16]}
    assert plain.protocol["naclip_std"] == 3.0 and plain.protocol["dense_mode"] == "naclip"
    model = refined.extra["mmseg_config"]["model"]
    assert (model["naclip_std"], model["pamr_iterations"], model["pamr_dilations"]) == (3.0, 2, [8, 16])
    assert refined.num_samples == plain.num_samples == 40
    assert refined.extra["per_class_iou"] != plain.extra["per_class_iou"]  # PAMR reached the predictions


@pytest.mark.parametrize(
    "extra,message",
    [(["--naclip-std", "-2", "--dense-mode", "naclip"], "naclip_std: expected a positive number of patches"),
     (["--pamr-iterations", "0"], "pamr_iterations: expected a positive integer, got 0"),
     (["--protocol", "linear-synth", "--pamr-iterations", "3"], "has no knob 'pamr_iterations'")],
)  # fmt: skip
def test_bad_values_on_the_command_line_are_one_line(synth_root, tmp_path, capsys, extra, message):
    capsys.readouterr()
    assert _eval(synth_root, tmp_path / "results", *extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
