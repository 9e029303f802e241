"""A tiny colour-coded COCO world for the detection tests, and an oracle encoder that reads the colours.

Each category paints its boxes in its own saturated colour on black, so the oracle's dense feature at a location
is the one-hot category of the object there (background has its own dimension) and its text embeddings are
one-hot: box classification with it must be exact.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from adapters.encoder import DENSE_MODES, Encoder

# Non-contiguous ids, as COCO's, listed out of id order with base and novel interleaved by id; "foxtrot" is in
# neither split list (only in the "all" vocabulary).
CATEGORIES = [(2, "alpha"), (17, "bravo"), (40, "charlie"), (5, "delta"), (11, "echo"), (90, "foxtrot")]
SPLIT = {"base": ["alpha", "bravo", "charlie"], "novel": ["delta", "echo"]}
PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]

# (file, width, height, [(category name, [x, y, w, h], iscrowd)])
IMAGES = {
    "train2017": [
        ("t1.png", 64, 64, [("alpha", [8, 8, 16, 16], 0), ("delta", [40, 40, 16, 16], 0)]),
        ("t2.png", 64, 64, [("bravo", [0, 0, 24, 16], 0), ("charlie", [32, 32, 24, 24], 0)]),
        ("t3.png", 64, 64, []),
    ],
    "val2017": [
        ("v1.png", 64, 64, [("alpha", [8, 8, 16, 16], 0), ("delta", [40, 8, 16, 24], 0), ("echo", [8, 40, 24, 16], 0)]),
        ("v2.png", 64, 48, [("bravo", [0, 0, 24, 16], 0), ("charlie", [32, 24, 24, 24], 0), ("alpha", [0, 32, 16, 16], 1)]),
        ("v3.png", 64, 64, []),
        ("v4.png", 64, 64, [("foxtrot", [16, 16, 32, 24], 0), ("echo", [48, 48, 16, 16], 0)]),
    ],
}  # fmt: skip


def random_images(count: int, seed: int, prefix: str) -> list[tuple[str, int, int, list]]:
    """``count`` 64x64 images with one to three grid-aligned, well separated boxes of random categories."""
    rng = random.Random(seed)
    names = [name for _, name in CATEGORIES]
    slots = [(x, y) for x in (0, 32) for y in (0, 32)]  # one 32x32 quadrant per object, 8 px margins inside
    images = []
    for i in range(count):
        objects = []
        for x, y in rng.sample(slots, rng.randint(1, 3)):
            w, h = rng.choice((16, 24)), rng.choice((16, 24))
            objects.append((rng.choice(names), [x + rng.choice((0, 8)), y + rng.choice((0, 8)), w, h], 0))
        images.append((f"{prefix}{i}.png", 64, 64, objects))
    return images


def write_coco(root: Path, images: dict | None = None) -> Path:
    """Write the colour-coded world (``images`` like IMAGES; default IMAGES) as a COCO root."""
    ids = {name: cid for cid, name in CATEGORIES}
    colour = {name: PALETTE[i] for i, (_, name) in enumerate(CATEGORIES)}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 100
    for subset, entries in (images or IMAGES).items():
        (root / subset).mkdir(exist_ok=True)
        coco = {"info": {"description": "det test world"}, "licenses": [], "images": [], "annotations": []}
        coco["categories"] = [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in CATEGORIES]
        for image_id, (file_name, w, h, objects) in enumerate(entries, start=7):
            image = Image.new("RGB", (w, h))
            draw = ImageDraw.Draw(image)
            for name, (x, y, bw, bh), crowd in objects:
                draw.rectangle((x, y, x + bw - 1, y + bh - 1), fill=colour[name])
                coco["annotations"].append(
                    {"id": ann_id, "image_id": image_id * 3, "category_id": ids[name], "bbox": [x, y, bw, bh],
                     "area": bw * bh, "iscrowd": crowd, "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]}
                )  # fmt: skip
                ann_id += 1
            image.save(root / subset / file_name)
            coco["images"].append({"id": image_id * 3, "file_name": file_name, "width": w, "height": h})
        (root / "annotations" / f"instances_{subset}.json").write_text(json.dumps(coco))
    (root / "annotations" / "ov_split.json").write_text(json.dumps(SPLIT))
    return root


class OracleEncoder(Encoder):
    """Reads the category from the pixel colours: dense features and image embeddings are (pooled) one-hots."""

    dense_modes = DENSE_MODES

    def __init__(self, permute_text: bool = False) -> None:
        self.name = self.spec = "oracle"
        self.names = [name for _, name in CATEGORIES]
        self.embed_dim = len(self.names) + 1  # the last dimension is background
        self.patch_size, self.image_size = 8, 32
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.preprocess = lambda image: image
        self.device = torch.device("cpu")
        self.palette = torch.tensor(PALETTE + [(0, 0, 0)], dtype=torch.float32) / 255
        self.permute_text = permute_text

    def _pixel_onehot(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 2, 3, 1)  # [B, H, W, 3]
        nearest = torch.cdist(pixels.reshape(-1, 3), self.palette).argmin(dim=1)
        onehot = F.one_hot(nearest, self.embed_dim).float().reshape(*pixels.shape[:3], self.embed_dim)
        return onehot.permute(0, 3, 1, 2)  # [B, D, H, W]

    def encode_dense(self, images: torch.Tensor, mode: str = "naive") -> torch.Tensor:
        pooled = F.avg_pool2d(self._pixel_onehot(images), self.patch_size)
        return F.normalize(pooled, dim=1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        share = self._pixel_onehot(images).mean(dim=(2, 3))
        share[:, -1] = 0  # the crop's object, not its background
        return F.normalize(share, dim=1)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        order = self.names[1:] + self.names[:1] if self.permute_text else self.names
        return torch.tensor([[next(i for i, n in enumerate(order) if n in t)] for t in texts])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens[:, 0], self.embed_dim).float()

    def state_dict_for_fingerprint(self) -> dict[str, torch.Tensor]:
        return {"palette": self.palette, "permute": torch.tensor(int(self.permute_text))}


def noisy_detections(gt: dict, seed: int, fp_score_decimals: int | None = None) -> list[dict]:
    """Jittered true boxes with random scores, some with wrong labels, plus false positives on every image
    (their scores rounded to ``fp_score_decimals``, when given, so that scores tie across images)."""
    rng = random.Random(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    dets = []
    for a in gt["annotations"]:
        for _ in range(3):
            x, y, w, h = a["bbox"]
            box = [
                x + rng.uniform(-4, 4),
                y + rng.uniform(-4, 4),
                w * rng.uniform(0.7, 1.3),
                h * rng.uniform(0.7, 1.3),
            ]
            cat = a["category_id"] if rng.random() < 0.7 else rng.choice(cat_ids)
            dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": rng.random()})
    for img in gt["images"]:
        for _ in range(4):
            box = [rng.uniform(0, 40), rng.uniform(0, 30), rng.uniform(4, 24), rng.uniform(4, 16)]
            score = rng.random() if fp_score_decimals is None else round(rng.random(), fp_score_decimals)
            dets.append(
                {"image_id": img["id"], "category_id": rng.choice(cat_ids), "bbox": box, "score": score}
            )
    return dets
