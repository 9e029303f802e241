"""Shared fixtures: the synthetic world (generated once per test process) and a tiny random encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two xdist workers share two cores: one intra-op thread each keeps them from oversubscribing.
torch.set_num_threads(int(os.environ.get("SILC_TEST_THREADS", "1")))

TINY_MODEL_CONFIG = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` synthetic world (seed 0), written once per test process."""
    from silc.data.synth import generate_world

    out = tmp_path_factory.mktemp("synth-world")
    generate_world(out, seed=0, preset="tiny")
    return out


@pytest.fixture(scope="session")
def tiny_encoder():
    """A randomly initialised tiny open_clip ViT behind the Encoder contract (seeded)."""
    from adapters import load_encoder

    torch.manual_seed(0)
    return load_encoder(f"tiny=openclip:{TINY_MODEL_CONFIG}", device="cpu")
