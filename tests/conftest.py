"""Shared fixtures: the synthetic world (generated once per test process) and a tiny random encoder; the gate of
the tests that need the OpenMMLab stack (marker ``mm``)."""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

import pytest
import torch

# Two xdist workers share two cores: one intra-op thread each keeps them from oversubscribing.
torch.set_num_threads(int(os.environ.get("SILC_TEST_THREADS", "1")))

TINY_MODEL_CONFIG = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"

MM_MODULES = ("mmseg", "mmcv.ops", "mmdet")  # what the `mm` tests need: mmseg, mmcv's compiled ops, mmdet
SKIP_MM_ENV = "SILC_SKIP_MM"


@functools.cache
def mm_missing() -> str | None:
    """Why the OpenMMLab stack cannot be imported here (the first failing import), or None when it can."""
    for name in MM_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # missing, a broken build of the ops, a version assertion: all unusable
            return f"import {name}: {type(exc).__name__}: {exc}"
    return None


def require_mm() -> None:
    """Fail the calling test (or test module) when the OpenMMLab stack is missing, unless SILC_SKIP_MM=1 asks to
    skip it: an `mm` test never skips silently."""
    problem = mm_missing()
    if problem is None:
        return
    if os.environ.get(SKIP_MM_ENV) == "1":
        pytest.skip(
            f"{SKIP_MM_ENV}=1 and the OpenMMLab stack is missing ({problem})", allow_module_level=True
        )
    pytest.fail(
        f"the OpenMMLab stack is missing ({problem}): install it with `bash scripts/setup.sh` (without "
        f"{SKIP_MM_ENV}=1), or set {SKIP_MM_ENV}=1 to skip the tests marked mm",
        pytrace=False,
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``mm`` need the OpenMMLab stack (see :func:`require_mm`)."""
    if item.get_closest_marker("mm") is not None:
        require_mm()


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
