"""``generate_world``: write every dataset of the synthetic world under one folder, deterministically."""

from __future__ import annotations

import logging
import numbers
import os
import shutil
import tempfile
import time
from pathlib import Path

from silc.data.synth import writers
from silc.data.synth.encode import PHOTO_CHROMA, json_bytes
from silc.data.synth.writers import Photo, Preset
from silc.errors import UserError

log = logging.getLogger(__name__)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        image_size=64,
        pretrain=1200,
        shard_size=400,
        imagenet_per_class=(8, 8),
        flickr=(40, 20, 100),
        ade=(40, 40),
        coco=(120, 40),
    ),
    "small": Preset(
        image_size=128,
        pretrain=12000,
        shard_size=2000,
        imagenet_per_class=(60, 30),
        flickr=(400, 100, 1000),
        ade=(400, 400),
        coco=(1200, 400),
    ),
    # `small` with 100 val images per class (1,600): the ablation regression's zero-shot and few-shot metrics
    # need standard errors near 0.008 to lie 5 of them clear of chance (benchmarks/suites/ablations.yaml).
    "ablation": Preset(
        image_size=128,
        pretrain=12000,
        shard_size=2000,
        imagenet_per_class=(60, 100),
        flickr=(400, 100, 1000),
        ade=(400, 400),
        coco=(1200, 400),
    ),
    # Throughput on the workload users have: classification, retrieval and segmentation images as camera-like
    # JPEGs (short side 375-480, 4:3 or 3:2, quality 90, 4:2:0) near ImageNet val's ~500x375, Flickr30k's
    # ~500x333 and ADE20K's ~512x683; 640 zero-shot and 200 retrieval test images (1,000 captions).
    "bench": Preset(
        image_size=448,
        pretrain=64,
        shard_size=64,
        imagenet_per_class=(5, 40),
        flickr=(20, 20, 200),
        ade=(8, 24),
        coco=(16, 24),
        photo=Photo(short_side=(375, 480)),
    ),
}
MIN_SIZE, MAX_SIZE = 32, 1024
DATASETS = ("pretrain", "imagenet", "flickr30k", "ADEChallengeData2016", "coco")
_WRITERS = (
    writers.write_pretrain,
    writers.write_imagenet,
    writers.write_flickr30k,
    writers.write_ade,
    writers.write_coco,
)
MANIFEST = "world.json"


def _check(seed: int, preset: str, image_size: int | None) -> tuple[int, Preset, int]:
    if preset not in PRESETS:
        raise UserError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise UserError(f"seed {seed!r}: expected a non-negative integer")
    spec = PRESETS[preset]
    size = spec.image_size if image_size is None else image_size
    if not isinstance(size, numbers.Integral) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"image size {size!r}: expected an integer from {MIN_SIZE} to {MAX_SIZE}")
    return int(seed), spec, int(size)


def _staging(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".synth-staging-", dir=out))
    except OSError as e:
        raise UserError(f"{out}: cannot write the synthetic world there ({e.strerror or e})") from e


def generate_world(
    out_dir: str | os.PathLike, seed: int = 0, preset: str = "tiny", image_size: int | None = None
) -> dict:
    """Write pretrain/, imagenet/, flickr30k/, ADEChallengeData2016/, coco/ and world.json under ``out_dir``.

    Same (seed, preset, image_size) -> byte-identical files. Each dataset folder is built in a staging folder
    and moved into place at the end, replacing an older one, so a crash never leaves a half-written dataset.
    Returns a summary: counts per dataset, files, bytes and seconds.
    """
    seed, spec, size = _check(seed, preset, image_size)
    out = Path(out_dir)
    start = time.perf_counter()
    staging = _staging(out)
    try:
        counts: dict[str, int] = {}
        for write in _WRITERS:
            counts.update(write(staging, seed, spec, size))
        manifest = {
            "generator": "silc-bench synthetic world",
            "format": 1,
            "seed": seed,
            "preset": preset,
            "image_size": size,
            "counts": counts,
        }
        if spec.photo is not None:  # the other presets' manifests stay as they were
            manifest["photo"] = {
                "short_side": list(spec.photo.short_side),
                "jpeg_quality": spec.photo.quality,
                "chroma_subsampling": PHOTO_CHROMA,
            }
        (staging / MANIFEST).write_bytes(json_bytes(manifest))
        for name in (*DATASETS, MANIFEST):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(staging / name, target)
    except OSError as e:
        raise UserError(f"{out}: cannot write the synthetic world there ({e.strerror or e})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = [out / MANIFEST] + [p for name in DATASETS for p in (out / name).rglob("*") if p.is_file()]
    summary = {
        **manifest,
        "out_dir": str(out),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "seconds": time.perf_counter() - start,
    }
    log.debug("synthetic world: %s", summary)
    return summary
