"""The open_clip Encoder: spec parsing, loading, parity with open_clip, fingerprints, `silc-bench info`, errors."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from adapters import Encoder, load_encoder, parse_spec, weights_fingerprint
from silc.errors import UserError
from silc_bench.cli import main

TINY_MODEL_CONFIG = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"

RN_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _run_info(capsys, spec: str) -> tuple[int, str, str]:
    rc = main(["info", spec])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _assert_one_line_error(capsys, spec: str, *needles: str) -> str:
    rc, _, err = _run_info(capsys, spec)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("silc-bench: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def rn_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("rn") / "tiny-rn.json"
    path.write_text(json.dumps(RN_CONFIG))
    return path


def test_parse_spec_forms():
    s = parse_spec("clip=openclip:ViT-B-32@/w/open_clip_pytorch_model.bin")
    assert (s.alias, s.kind, s.target, s.weights) == (
        "clip",
        "openclip",
        "ViT-B-32",
        "/w/open_clip_pytorch_model.bin",
    )
    s = parse_spec("openclip:configs/m.json")
    assert (s.alias, s.kind, s.target, s.weights) == (None, "openclip", "configs/m.json", None)
    s = parse_spec("silc=runs/a/checkpoints/latest.pt")
    assert (s.alias, s.kind, s.target) == ("silc", "silc", "runs/a/checkpoints/latest.pt")
    s = parse_spec("runs/x=1/latest.pt")  # '=' inside a path is not an alias
    assert (s.alias, s.target) == (None, "runs/x=1/latest.pt")
    for bad in ["openclip:", "openclip:ViT-B-32@", "a=", "hf-hub:laion/x", "  "]:
        with pytest.raises(UserError):
            parse_spec(bad)


def test_tiny_encoder_contract(tiny_encoder):
    enc = tiny_encoder
    assert isinstance(enc, Encoder)
    assert (enc.name, enc.embed_dim, enc.image_size, enc.patch_size) == ("tiny", 64, 64, 8)
    assert enc.mean == open_clip.OPENAI_DATASET_MEAN and enc.std == open_clip.OPENAI_DATASET_STD
    assert enc.spec == f"tiny=openclip:{TINY_MODEL_CONFIG}"
    assert enc.device == torch.device("cpu")
    assert not enc.model.training
    assert enc.logit_scale == pytest.approx(float(enc.model.logit_scale.exp()))
    assert enc.dense_modes == ("naive", "maskclip", "sclip", "clearclip", "naclip")


def test_encode_image_equals_open_clip(tiny_encoder):
    image = Image.new("RGB", (90, 70), (200, 30, 40))
    x = tiny_encoder.preprocess(image)
    assert x.shape == (3, 64, 64)
    batch = torch.stack([x, torch.randn(3, 64, 64)])
    out = tiny_encoder.encode_image(batch)
    expected = tiny_encoder.model.encode_image(batch, normalize=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2), rtol=0, atol=1e-5)
    assert not out.requires_grad


def test_tokenize_and_encode_text_equal_open_clip(tiny_encoder):
    texts = ["a small red square left of a blue circle", "grass"]
    tokens = tiny_encoder.tokenize(texts)
    assert tokens.shape == (2, 32)  # context length from the config
    torch.testing.assert_close(tokens, open_clip.tokenize(texts, context_length=32), rtol=0, atol=0)
    out = tiny_encoder.encode_text(tokens)
    torch.testing.assert_close(out, tiny_encoder.model.encode_text(tokens, normalize=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2), rtol=0, atol=1e-5)


def test_name_defaults_to_config_stem():
    enc = load_encoder(f"openclip:{TINY_MODEL_CONFIG}")
    assert enc.name == "silc-tiny-vit"


def test_fingerprint_stable_and_sensitive(tmp_path, tiny_encoder):
    state = tiny_encoder.model.state_dict()
    assert tiny_encoder.fingerprint == weights_fingerprint(state)
    torch.save(state, tmp_path / "w.pt")
    reloaded = load_encoder(f"openclip:{TINY_MODEL_CONFIG}@{tmp_path / 'w.pt'}")
    assert reloaded.fingerprint == tiny_encoder.fingerprint
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(reloaded.encode_image(x), tiny_encoder.encode_image(x), rtol=0, atol=0)

    changed = {k: v.clone() for k, v in state.items()}
    changed["visual.transformer.resblocks.0.mlp.c_fc.bias"][0] += 1e-3
    save_file(changed, str(tmp_path / "w2.safetensors"))
    other = load_encoder(f"b=openclip:{TINY_MODEL_CONFIG}@{tmp_path / 'w2.safetensors'}")
    assert other.name == "b"
    assert other.fingerprint != tiny_encoder.fingerprint
    assert other.fingerprint == weights_fingerprint(changed)


def test_builtin_model_name():
    enc = load_encoder("openclip:ViT-S-32-alt")
    assert (enc.name, enc.image_size, enc.patch_size, enc.embed_dim) == ("ViT-S-32-alt", 224, 32, 256)
    assert enc.tokenize(["a cat"]).shape == (1, 77)
    assert enc.encode_dense(torch.randn(1, 3, 64, 96), "clearclip").shape == (1, 256, 2, 3)


def test_resnet_tower_loads_but_refuses_dense_modes(rn_config, capsys):
    enc = load_encoder(f"rn=openclip:{rn_config}")
    assert enc.patch_size is None and enc.dense_modes == ()
    assert enc.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 32)
    with pytest.raises(UserError, match="ModifiedResNet image tower has no patch tokens"):
        enc.encode_dense(torch.randn(1, 3, 64, 64), "naive")
    rc, out, _ = _run_info(capsys, f"openclip:{rn_config}")
    assert rc == 0
    assert "dense modes: none" in out and "patch size:  none" in out


def test_random_init_is_seeded_and_leaves_global_rng_alone(tiny_encoder):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = load_encoder(f"openclip:{TINY_MODEL_CONFIG}")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(456)
    b = load_encoder(f"openclip:{TINY_MODEL_CONFIG}")
    assert a.fingerprint == b.fingerprint == tiny_encoder.fingerprint


def test_info_prints_the_encoder(capsys, tiny_encoder):
    rc, out, err = _run_info(capsys, f"tiny=openclip:{TINY_MODEL_CONFIG}")
    assert rc == 0, err
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["name"] == "tiny"
    assert fields["embed dim"] == "64" and fields["image size"] == "64" and fields["patch size"] == "8"
    assert fields["mean"] == "0.48145466, 0.4578275, 0.40821073"
    assert fields["dense modes"] == "naive, maskclip, sclip, clearclip, naclip"
    n_params = sum(p.numel() for p in tiny_encoder.model.parameters())
    assert fields["parameters"] == f"{n_params:,}"
    # seeded random init -> the same fingerprint as the session fixture
    assert fields["fingerprint"] == f"sha256:{tiny_encoder.fingerprint}"


def test_info_errors_are_one_line(capsys, tmp_path):
    _assert_one_line_error(
        capsys, "openclip:ViT-B-32@openai", "needs a download", "openclip:ViT-B-32-quickgelu@/path/to/"
    )
    _assert_one_line_error(
        capsys,
        "openclip:ViT-B-32@laion2b_s34b_b79k",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "openclip:ViT-B-32@/path",
    )
    _assert_one_line_error(
        capsys, "openclip:ViT-B-32@nosuchtag", "neither a weights file nor a pretrained tag"
    )
    _assert_one_line_error(capsys, "openclip:NoSuchModel-1", "unknown open_clip model")
    _assert_one_line_error(capsys, "openclip:", "expected openclip:")
    _assert_one_line_error(capsys, "x=hf-hub:laion/CLIP", "unknown prefix 'hf-hub'")
    _assert_one_line_error(capsys, str(tmp_path / "missing.pt"), "no such file or directory")
    _assert_one_line_error(capsys, f"openclip:{tmp_path / 'missing.json'}", "model config file not found")
    _assert_one_line_error(
        capsys, f"openclip:{TINY_MODEL_CONFIG}@{tmp_path / 'w.bin'}", "weights file not found"
    )
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    _assert_one_line_error(capsys, f"openclip:{bad_json}", str(bad_json), "not a readable JSON")
    no_towers = tmp_path / "cfg.json"
    no_towers.write_text(json.dumps({"embed_dim": 8}))
    _assert_one_line_error(capsys, f"openclip:{no_towers}", "embed_dim, vision_cfg and text_cfg")
    bad_value = tmp_path / "badvalue.json"
    bad_value.write_text(
        json.dumps({**RN_CONFIG, "vision_cfg": {"layers": 2, "width": 30, "head_width": 64}})
    )
    _assert_one_line_error(capsys, f"openclip:{bad_value}", "cannot build an open_clip model")
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    _assert_one_line_error(capsys, f"openclip:{TINY_MODEL_CONFIG}@{corrupt}", str(corrupt), "not a readable")


def test_weights_of_another_architecture(capsys, tmp_path, rn_config):
    torch.manual_seed(0)
    rn_state = open_clip.CLIP(**RN_CONFIG).state_dict()
    path = tmp_path / "rn.pt"
    torch.save(rn_state, path)
    line = _assert_one_line_error(capsys, f"openclip:{TINY_MODEL_CONFIG}@{path}", str(path), "do not fit")
    assert "missing keys" in line and "unexpected keys" in line
