"""SiLC checkpoints and run directories behind the Encoder contract (tiny random checkpoints written here)."""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from adapters import load_encoder, weights_fingerprint
from silc_bench.cli import main

TINY_MODEL_CONFIG = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"
MODEL_CFG = json.loads(TINY_MODEL_CONFIG.read_text())


def _checkpoint(state_dict: dict, model_cfg: dict = MODEL_CFG, **extra) -> dict:
    """A checkpoint dict in the SiLC format (every value weights_only-loadable)."""
    return {
        "state_dict": state_dict,
        "model_cfg": model_cfg,
        "model_name": "silc-tiny-vit",
        "teacher": {"visual.conv1.weight": state_dict["visual.conv1.weight"].clone()},
        "head": {"mlp.0.weight": torch.randn(8, 64)},
        "center": torch.zeros(1, 8),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
        "scaler": None,
        "scheduler": {"step": 3},
        "step": 3,
        "epoch": 0,
        "samples_seen": 96,
        "rng": {"torch": torch.get_rng_state()},
        "data_position": {"shard": 0, "sample": 96},
        "config": {"model": {"name": "silc-tiny-vit"}, "loss": {"objective": "silc"}},
        **extra,
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, dict, torch.nn.Module]:
    """A run directory RUN/ with config.yaml, open_clip_config.json and checkpoints/{step_00000003,latest}.pt."""
    torch.manual_seed(7)
    model = open_clip.CLIP(**MODEL_CFG).eval()
    state = model.state_dict()
    run = tmp_path_factory.mktemp("runs") / "tiny-silc"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  name: silc-tiny-vit\n")
    (run / "open_clip_config.json").write_text(json.dumps(MODEL_CFG))
    torch.save(_checkpoint(state), run / "checkpoints" / "step_00000003.pt")
    os.link(run / "checkpoints" / "step_00000003.pt", run / "checkpoints" / "latest.pt")
    return run, state, model


def _error_line(capsys, spec: str) -> str:
    rc = main(["info", spec])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("silc-bench: error: "), err
    return err


def test_checkpoint_file_loads_the_student(run_dir):
    run, state, model = run_dir
    enc = load_encoder(str(run / "checkpoints" / "step_00000003.pt"))
    assert enc.name == "tiny-silc-step_00000003"
    assert enc.fingerprint == weights_fingerprint(state)
    assert (enc.embed_dim, enc.image_size, enc.patch_size) == (64, 64, 8)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model.encode_image(x, normalize=True)
    torch.testing.assert_close(enc.encode_image(x), expected, rtol=0, atol=1e-6)
    tokens = enc.tokenize(["a red circle"])
    assert tokens.shape == (1, 32)
    with torch.inference_mode():
        torch.testing.assert_close(
            enc.encode_text(tokens), model.encode_text(tokens, normalize=True), rtol=0, atol=1e-6
        )


def test_run_dir_alias_and_exported_safetensors_agree(run_dir, tmp_path):
    run, state, _ = run_dir
    from_dir = load_encoder(str(run))
    assert from_dir.name == "tiny-silc"
    aliased = load_encoder(f"silc={run}")
    assert aliased.name == "silc" and aliased.spec == f"silc={run}"
    export = tmp_path / "tiny-silc.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(export))
    exported = load_encoder(f"openclip:{run / 'open_clip_config.json'}@{export}")
    # open_clip's own loader reads the SiLC checkpoint too (its state_dict key)
    via_open_clip = load_encoder(f"openclip:{TINY_MODEL_CONFIG}@{run / 'checkpoints' / 'latest.pt'}")
    fingerprints = {e.fingerprint for e in (from_dir, aliased, exported, via_open_clip)}
    assert fingerprints == {weights_fingerprint(state)}
    x = torch.randn(1, 3, 96, 64)
    torch.testing.assert_close(
        from_dir.encode_dense(x, "sclip"), exported.encode_dense(x, "sclip"), rtol=0, atol=0
    )


def test_info_on_a_run_dir(run_dir, capsys):
    run, state, _ = run_dir
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "name:        tiny-silc" in out
    assert f"fingerprint: sha256:{weights_fingerprint(state)}" in out


def test_bad_checkpoints_fail_in_one_line_naming_the_file(run_dir, tmp_path, capsys):
    run, state, _ = run_dir
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(random.Random(0).randbytes(2048))  # seeded: the same garbage on every run
    assert str(garbage) in _error_line(capsys, str(garbage))
    # b"Q" (BINPERSID on an empty stack) sends torch's legacy-pickle fallback into an IndexError
    legacy_garbage = tmp_path / "legacy-garbage.pt"
    legacy_garbage.write_bytes(b"Q" + bytes(range(256)))
    assert "not a torch zip archive" in _error_line(capsys, str(legacy_garbage))

    truncated = tmp_path / "truncated.pt"
    data = (run / "checkpoints" / "latest.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert "not a readable SiLC checkpoint" in _error_line(capsys, str(truncated))

    code = tmp_path / "code.pt"
    torch.save(_checkpoint(state, config=argparse.Namespace(lr=1.0)), code)
    assert "not a readable SiLC checkpoint" in _error_line(capsys, str(code))

    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    assert "not a SiLC checkpoint" in _error_line(capsys, str(plain))

    other_cfg = json.loads(json.dumps(MODEL_CFG))
    other_cfg["vision_cfg"]["width"] = 64
    other_state = open_clip.CLIP(**other_cfg).state_dict()
    wrong = tmp_path / "wrong-arch.pt"
    torch.save(_checkpoint(other_state), wrong)
    line = _error_line(capsys, str(wrong))
    assert str(wrong) in line and "shape mismatches" in line

    bad_cfg = tmp_path / "bad-cfg.pt"
    torch.save(_checkpoint(state, model_cfg={"embed_dim": 64}), bad_cfg)
    assert "vision_cfg and text_cfg" in _error_line(capsys, str(bad_cfg))

    not_a_run = tmp_path / "empty-run"
    not_a_run.mkdir()
    assert "not a SiLC run directory" in _error_line(capsys, str(not_a_run))

    bare = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(bare))
    assert "openclip:<config.json>@" in _error_line(capsys, str(bare))
