"""Small on-disk inputs for the trainer tests: a CSV of shape images with captions and a tiny config."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
SHAPES = ("circle", "square")


def write_pairs_csv(root: Path, n: int = 24, size: int = 40, seed: int = 0) -> Path:
    """``n`` images of one coloured shape each, captioned "a photo of a <colour> <shape>", in open_clip's CSV form."""
    rng = random.Random(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        img = Image.new("RGB", (size, size), tuple(rng.randint(80, 160) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        x, y, r = rng.randint(size // 4, 3 * size // 4), rng.randint(size // 4, 3 * size // 4), size // 5
        (draw.ellipse if shape == "circle" else draw.rectangle)(
            [x - r, y - r, x + r, y + r], fill=COLORS[color]
        )
        img.save(root / "img" / f"{i}.png")
        rows.append((f"img/{i}.png", f"a photo of a {color} {shape}"))
    path = root / "pairs.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filepath", "caption"])
        writer.writerows(rows)
    return path


# A 2-layer ViT at 32 px (patch 8) with a 1-layer text tower: a few ms per step on one CPU thread.
TINY_MODEL = {
    "name": "silc-tiny-vit",
    "overrides": {
        "vision_cfg": {"image_size": 32, "layers": 2},
        "text_cfg": {"layers": 1, "context_length": 16},
    },
}


def tiny_config(data_path: Path | str, kind: str = "csv", **sections) -> dict:
    """A full training config dict for the tiny model; ``sections`` update the named sections."""
    cfg = {
        "seed": 0,
        "model": dict(TINY_MODEL),
        "head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
        "loss": {"objective": "silc", "warmup_teacher_temp_steps": 3},
        "ema": {"schedule": "cosine", "momentum": 0.9},
        "optim": {"lr": 1.0e-3, "warmup_steps": 1, "weight_decay": 0.1},
        "train": {
            "steps": 4,
            "batch_size": 4,
            "log_every": 1,
            "save_every": 2,
            "progress": False,
            "deterministic": True,
        },
        "views": {"global_crops": 2, "local_crops": 2, "global_size": 32, "local_size": 16},
        "data": {"kind": kind, "path": str(data_path)},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values} if isinstance(values, dict) else values
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
