"""Test data in the public layouts (ImageFolder, Karpathy JSON, clip_benchmark webdataset) and a test-double
encoder whose image features are noisy class prototypes, so zero-shot numbers are far from chance."""

from __future__ import annotations

import colorsys
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from adapters.encoder import Encoder

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
TEMPLATES = ("a photo of a {c}.", "a {c} thing.")  # write_imagefolder's templates.txt


def class_colour(c: int, n: int) -> np.ndarray:
    """A distinct RGB colour (0..1) per class, on the hue circle."""
    return np.array(colorsys.hsv_to_rgb(c / n, 0.8, 0.9))


def class_image(
    c: int, n: int, rng: np.random.Generator, size: int = 24, confuse: float = 0.35
) -> Image.Image:
    """A noisy image of class ``c``: its colour, pulled towards a neighbouring class's colour at random."""
    base = class_colour(c, n)
    other = class_colour((c + rng.choice([-1, 1])) % n, n)
    mix = rng.uniform(0, confuse * 2)
    colour = (1 - mix) * base + mix * other
    pixels = colour[None, None, :] + rng.normal(0, 0.08, (size, size, 3))
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def write_imagefolder(
    root: Path,
    classnames: Sequence[str],
    per_class: dict[str, int],
    seed: int = 0,
    folder_names: Sequence[str] | None = None,
    ext: str = ".png",
    templates: Sequence[str] | None = TEMPLATES,
) -> Path:
    """``root/<split>/<folder>/img_XXX<ext>`` + classnames.txt (+ templates.txt) in ImageFolder layout: images of
    class ``c`` (colour ``c``) in ``folder_names[c]``, created in that order; classnames.txt lists the names in
    sorted folder order, as the layout defines."""
    rng = np.random.default_rng(seed)
    folders = list(folder_names or [f"class{i:03d}" for i in range(len(classnames))])
    for split, n in per_class.items():
        for c, folder in enumerate(folders):
            d = root / split / folder
            d.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                class_image(c, len(folders), rng).save(d / f"img_{j:03d}{ext}")
    by_folder = sorted(zip(folders, classnames, strict=True))
    (root / "classnames.txt").write_text("".join(f"{name}\n" for _, name in by_folder))
    if templates is not None:
        (root / "templates.txt").write_text("".join(f"{t}\n" for t in templates))
    return root


def write_karpathy(
    root: Path,
    classnames: Sequence[str],
    splits: dict[str, int],
    seed: int = 0,
    image_dir: str = "images",
    name: str = "dataset_flickr30k.json",
) -> Path:
    """A Flickr30k-style ``dataset_*.json`` + ``images/*.jpg``; each image shows one class, 2-5 captions."""
    rng = np.random.default_rng(seed)
    images, i = [], 0
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    for split, n in splits.items():
        for _ in range(n):
            c = int(rng.integers(len(classnames)))
            fname = f"{1000 + i}.jpg"
            class_image(c, len(classnames), rng).save(root / image_dir / fname, quality=95)
            caps = [
                f"a picture of a {classnames[c]} number {int(rng.integers(100))}." for _ in range(2 + i % 4)
            ]
            images.append(
                {
                    "filename": fname,
                    "split": split,
                    "imgid": i,
                    "sentences": [{"raw": t, "tokens": t.split()} for t in caps],
                }
            )
            i += 1
    (root / name).write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return root / name


def write_wds(
    root: Path,
    split: str,
    classnames: Sequence[str],
    n_per_class: int,
    seed: int = 0,
    templates: Sequence[str] = ("a photo of a {c}.", "itap of a {c}."),
    max_count: int = 7,
) -> Path:
    """A clip_benchmark webdataset, written by clip_benchmark's own ``convert_dataset`` (png, several shards)."""
    from clip_benchmark.webdataset_builder import convert_dataset

    rng = np.random.default_rng(seed)
    samples = []
    for c in range(len(classnames)):
        for _ in range(n_per_class):
            buf = io.BytesIO()
            class_image(c, len(classnames), rng).save(buf, format="png")
            samples.append((buf.getvalue(), c))

    class _DS(list):
        pass

    ds = _DS(samples)
    ds.classes, ds.templates = list(classnames), list(templates)
    with warnings.catch_warnings():  # convert_dataset always asks for 8 loader workers
        warnings.simplefilter("ignore", UserWarning)
        convert_dataset(ds, split, str(root), image_format="png", max_count=max_count, verbose=False)
    return root


class PrototypeEncoder(Encoder):
    """Image features = softly assigned class prototypes from the image's mean colour, plus a per-image term;
    text features = the prototype of the class named in the text plus a small per-template term."""

    dense_modes = ()  # no patch tokens

    def __init__(
        self, classnames: Sequence[str], dim: int = 16, seed: int = 0, spec: str = "proto=test-double"
    ):
        g = torch.Generator().manual_seed(seed)
        self.classnames = list(classnames)
        n = len(classnames)
        self.protos = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
        self.proj = torch.randn(3, dim, generator=g) * 0.15
        self.tmpl = torch.randn(7, dim, generator=g) * 0.2
        colours = torch.tensor(np.stack([class_colour(c, n) for c in range(n)]), dtype=torch.float32)
        self.centres = (colours - torch.tensor(MEAN)) / torch.tensor(STD)
        self.name, self.spec = spec.split("=")[0], spec
        self.embed_dim, self.patch_size, self.image_size = dim, None, 24
        self.mean, self.std = MEAN, STD
        self.device = torch.device("cpu")
        self.preprocess = transforms.Compose(
            [
                transforms.Resize(24),
                transforms.CenterCrop(24),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )
        self.image_calls = 0
        self.text_calls = 0

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.image_calls += 1
        m = images.float().mean(dim=(2, 3))
        w = torch.softmax(-(torch.cdist(m, self.centres) ** 2) / 0.5, dim=-1)
        return F.normalize(w @ self.protos + m @ self.proj, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        self.text_calls += 1
        return F.normalize(self.protos[tokens[:, 0]] + self.tmpl[tokens[:, 1]], dim=-1)

    def encode_dense(self, images: torch.Tensor, mode: str = "naive") -> torch.Tensor:
        raise NotImplementedError("the prototype test double has no patch tokens")

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        out = []
        for t in texts:
            hits = [c for c, name in enumerate(self.classnames) if name in t]
            c = max(hits, key=lambda i: len(self.classnames[i])) if hits else 0
            out.append([c, len(t) % 7])
        return torch.tensor(out, dtype=torch.long)

    def state_dict_for_fingerprint(self) -> dict[str, torch.Tensor]:
        return {"protos": self.protos, "proj": self.proj, "tmpl": self.tmpl}
