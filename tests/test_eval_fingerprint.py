"""The eval-path fingerprint: reruns and kernel-level noise pass, one-line mutations of the eval path move exactly
the keys of the path they touch, and a key missing on either side fails."""

from __future__ import annotations

import inspect
import math
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

import adapters.dense
import adapters.loading
import silc.kernel.vit
from adapters import DENSE_MODES, load_encoder
from benchmarks.eval_fingerprint import compare_eval_fingerprints, eval_fingerprint, fingerprint_table
from silc.data.synth import PRESETS, generate_world
from silc.data.synth.writers import Preset
from silc.errors import UserError
from tests.conftest import TINY_MODEL_CONFIG

SPEC = f"tiny=openclip:{TINY_MODEL_CONFIG}"
RTOL = 1e-4
MODEL_GROUPS = {"image", "text", *(f"dense/{mode}" for mode in DENSE_MODES)}


# A few images per dataset at 128 px (one val image per ImageNet class), so the 64 px model's eval transform resizes.
WORLD = Preset(
    128, pretrain=4, shard_size=4, imagenet_per_class=(1, 1), flickr=(1, 1, 1), ade=(1, 2), coco=(1, 1)
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world-128")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PRESETS, "fingerprint", WORLD)
        generate_world(out, seed=0, preset="fingerprint")
    return out


@pytest.fixture(scope="module")
def reference(world: Path) -> dict[str, float]:
    return eval_fingerprint(load_encoder(SPEC), world)


def _moved(reference: dict[str, float], current: dict[str, float]) -> set[str]:
    """The tensors (key prefixes) with a failed finding at RTOL."""
    return {f.key.rsplit("/", 1)[0] for f in compare_eval_fingerprints(reference, current, RTOL) if f.failed}


def _mutated(module, name: str, old: str, new: str):
    """``module.name`` recompiled with ``old`` replaced by ``new`` in its source: a one-line code mutation."""
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    assert source.count(old) == 1, f"{module.__name__}.{name} no longer reads {old!r}: update the mutation"
    namespace = dict(vars(module))
    exec(source.replace(old, new), namespace)
    return namespace[name]


def test_rerun_is_identical_and_covers_every_path(world: Path, reference: dict[str, float]) -> None:
    current = eval_fingerprint(load_encoder(SPEC), world)
    assert current == reference
    groups = {key.rsplit("/", 1)[0] for key in reference}
    assert groups == {"pixels", *MODEL_GROUPS}
    for group in groups:
        assert {f"{group}/rms", *(f"{group}/proj{k}" for k in range(4))} <= reference.keys()
    findings = compare_eval_fingerprints(reference, current, RTOL)
    assert {f.status for f in findings} == {"ok"} and {f.deviation for f in findings} == {0.0}
    table = fingerprint_table(findings)
    assert table.empty and list(table.columns) == ["key", "reference", "current", "deviation", "status"]


@pytest.mark.parametrize(("noise", "moved"), [(1e-6, set()), (1e-2, MODEL_GROUPS)])
def test_relative_weight_noise(
    world: Path, reference: dict[str, float], noise: float, moved: set[str]
) -> None:
    encoder = load_encoder(SPEC)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in encoder.model.parameters():
            param.mul_(1 + noise * torch.randn(param.shape, generator=generator))
    assert _moved(reference, eval_fingerprint(encoder, world)) == moved


def test_two_threads_pass(world: Path, reference: dict[str, float]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        current = eval_fingerprint(load_encoder(SPEC), world)
    finally:
        torch.set_num_threads(threads)
    assert _moved(reference, current) == set()


def test_bilinear_eval_resize_moves_the_image_keys(
    world: Path, reference: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = adapters.loading.preprocess_cfg_for
    monkeypatch.setattr(
        adapters.loading,
        "preprocess_cfg_for",
        lambda model, overlay=None: {**real(model, overlay), "interpolation": "bilinear"},
    )
    encoder = load_encoder(SPEC)
    assert "interpolation=bilinear" in repr(encoder.preprocess)
    assert _moved(reference, eval_fingerprint(encoder, world)) == {"pixels", "image"}


def test_one_dense_mode_changed_moves_only_its_keys(
    world: Path, reference: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SCLIP's k-k attention term becomes plain q-k attention
    mutated = _mutated(adapters.dense, "_last_block", "k @ k.transpose", "q @ k.transpose")
    monkeypatch.setattr(adapters.dense, "_last_block", mutated)
    assert _moved(reference, eval_fingerprint(load_encoder(SPEC), world)) == {"dense/sclip"}


def test_position_embedding_interpolation_moves_every_dense_mode(
    world: Path, reference: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    mutated = _mutated(silc.kernel.vit, "resize_pos_embed", 'mode="bicubic"', 'mode="bilinear"')
    monkeypatch.setattr(silc.kernel.vit, "resize_pos_embed", mutated)
    dense = {f"dense/{mode}" for mode in DENSE_MODES}
    assert _moved(reference, eval_fingerprint(load_encoder(SPEC), world)) == dense


def test_missing_keys_fail_on_either_side(reference: dict[str, float]) -> None:
    current = dict(reference)
    dropped = current.pop("dense/maskclip/proj2")
    current["image/proj9"] = 1.0
    failed = {f.key: f for f in compare_eval_fingerprints(reference, current, RTOL) if f.failed}
    assert failed.keys() == {"dense/maskclip/proj2", "image/proj9"}
    assert {f.status for f in failed.values()} == {"missing"}
    assert (failed["dense/maskclip/proj2"].reference, failed["dense/maskclip/proj2"].current) == (
        dropped,
        None,
    )
    assert list(fingerprint_table(list(failed.values()))["status"]) == ["missing", "missing"]


def test_deviation_is_relative_to_the_tensor_rms() -> None:
    reference = {"t/rms": 0.5, "t/proj0": 1.0, "u/proj0": 1.0}
    current = {"t/rms": 0.5, "t/proj0": 1.0 + 0.5 * 3e-4, "u/proj0": 1.0}
    findings = {f.key: f for f in compare_eval_fingerprints(reference, current, RTOL)}
    assert findings["t/proj0"].deviation == pytest.approx(3e-4) and findings["t/proj0"].status == "moved"
    assert findings["u/proj0"].status == "ok"  # equal values pass even without a scale
    current["u/proj0"] = math.nan
    assert compare_eval_fingerprints(reference, current, RTOL)[-1].status == "moved"


def test_world_at_the_model_size_is_refused(tmp_path: Path, tiny_encoder) -> None:
    folder = tmp_path / "imagenet" / "val" / "circle"
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(folder / "a.png")
    with pytest.raises(UserError, match="resizes"):
        eval_fingerprint(tiny_encoder, tmp_path)
