"""A small real harness for orchestration tests of ``silc-bench run``: it encodes the images of a folder.

Importing this module registers ``test-embed``. Its metric is the mean cosine similarity between the folder's
images and one text prompt, so its number depends on the weights and the data, as a real harness's does.
Setting ``INTERRUPT_AFTER`` makes the n-th evaluation after it raise KeyboardInterrupt (a user's Ctrl-C).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.options import HarnessOptions
from benchmarks.registry import _REGISTRY, Evaluation, Harness, register

CALLS_ENV = "PRODUCT_HARNESS_CALLS"  # a file that gets one JSON line per evaluation (for counting)
INTERRUPT_ENV = "PRODUCT_HARNESS_INTERRUPT_AFTER"


class EmbedHarness(Harness):
    name = "test-embed"
    description = "mean image-text cosine over a folder of PNGs (orchestration tests)"
    default_protocol = "short"
    protocols = {"short": {"prompt": "a photo", "limit": 2}, "long": {"prompt": "a drawing", "limit": 4}}

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        if not data_root.is_dir():
            return [f"{data_root}: folder does not exist"]
        return [] if any(data_root.glob("*.png")) else [f"{data_root}: no *.png images"]

    def evaluate(
        self, encoder, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, artefacts: Path
    ) -> Evaluation:
        calls = Path(os.environ[CALLS_ENV]) if os.environ.get(CALLS_ENV) else None
        done = len(calls.read_text().splitlines()) if calls and calls.exists() else 0
        limit = os.environ.get(INTERRUPT_ENV)
        if limit is not None and done >= int(limit):
            raise KeyboardInterrupt
        paths = sorted(data_root.glob("*.png"))[: protocol["limit"]]
        images = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths]).to(
            encoder.device
        )
        with torch.inference_mode():
            img = encoder.encode_image(images)
            txt = encoder.encode_text(encoder.tokenize([protocol["prompt"]]).to(encoder.device))
        score = float((img @ txt.T).mean())
        if calls is not None:
            with calls.open("a") as f:
                f.write(json.dumps({"model": encoder.name, "data": str(data_root), **protocol}) + "\n")
        return Evaluation({"cosine": score, "images": len(paths)}, "all", len(paths), len(paths))


if "test-embed" not in _REGISTRY:
    register(EmbedHarness())
