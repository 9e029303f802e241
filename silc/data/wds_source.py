"""webdataset tar shards (``<key>.png|jpg|jpeg|webp`` + ``<key>.txt``) as an endless, resumable batch stream.

Each rank reads its own sequence of *units*: in epoch mode unit ``u`` is epoch ``u``, whose seeded shard
permutation is dealt round-robin to the ranks (``shards[r::w]``); in resampled mode unit ``u`` is the ``u``-th
shard drawn with replacement by this rank. A seeded shuffle buffer (per unit and rank) mixes samples. Batch ``b`` of a rank is raw
samples ``b*B .. b*B + B - 1`` of that stream; loader worker ``k`` of ``n`` builds the batches ``b = k mod n``
(every worker reads the rank's tar bytes, only the owner decodes), so batches do not depend on ``num_workers``.
The position ``(unit, offset)`` counts raw samples; resuming re-reads that unit and skips ``offset`` samples
without decoding them.
"""

from __future__ import annotations

import glob
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls

from silc.data.samples import (
    AUGMENT,
    DECODE_ERRORS,
    REPLACE,
    SHARDS,
    SHUFFLE,
    BatchParts,
    ViewFn,
    decode_image,
    generator,
    mix_seed,
)
from silc.errors import UserError

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
# Index of a webdataset sample: shard number * 2**32 + its ordinal inside the shard.
SHARD_STRIDE = 1 << 32
MAX_EMPTY_UNITS = 100


def _pop_random(buffer: list, rng: random.Random) -> tuple[int, dict]:
    """Remove and return a random element in O(1) (swap with the last)."""
    j = rng.randrange(len(buffer))
    buffer[j], buffer[-1] = buffer[-1], buffer[j]
    return buffer.pop()


def expand_shards(spec: str) -> list[str]:
    """Shard paths from a brace pattern (``a-{000..009}.tar``), a glob, a folder of ``*.tar``, or ``::`` lists."""
    urls: list[str] = []
    for url in expand_urls(str(spec)):
        if "://" in url or url.startswith("pipe:"):
            urls.append(url)
            continue
        path = Path(url)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise UserError(f"{url}: folder holds no .tar shards")
        elif any(c in url for c in "*?["):
            found = sorted(glob.glob(url))
            if not found:
                raise UserError(f"{url}: no shard matches this pattern")
        elif path.is_file():
            found = [url]
        else:
            raise UserError(f"{url}: no such shard file")
        urls.extend(found)
    return urls


class WdsPairs(IterableDataset):
    """Yields this rank's batches (as ``BatchParts.to_batch`` dicts) from stream position ``(unit, offset)``."""

    def __init__(
        self,
        shards: list[str],
        resampled: bool,
        views: ViewFn,
        seed: int,
        batch_size: int,
        rank: int,
        world_size: int,
        unit: int,
        offset: int,
        shuffle_buffer: int,
    ):
        if not resampled and len(shards) < world_size:
            raise UserError(
                f"{len(shards)} webdataset shards cannot be split over {world_size} ranks in epoch "
                "mode; use more shards or data.resampled: true"
            )
        self.shards, self.resampled, self.views, self.seed = shards, resampled, views, seed
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.unit, self.offset, self.shuffle_buffer = unit, offset, max(1, shuffle_buffer)
        self.current = shards[0]  # the shard being read, for error messages

    def unit_shards(self, unit: int) -> list[int]:
        """Shard numbers this rank reads in ``unit``."""
        if self.resampled:
            pick = generator(self.seed, SHARDS, self.rank, unit)
            return [int(torch.randint(len(self.shards), (), generator=pick))]
        order = torch.randperm(len(self.shards), generator=generator(self.seed, SHARDS, unit)).tolist()
        return order[self.rank :: self.world_size]

    def unit_samples(self, unit: int) -> Iterator[tuple[int, dict]]:
        """(index, sample) of ``unit``: its shards in order, mixed by a seeded shuffle buffer."""
        buffer: list[tuple[int, dict]] = []
        rng = random.Random(mix_seed(self.seed, SHUFFLE, unit, self.rank))
        for shard in self.unit_shards(unit):
            self.current = self.shards[shard]
            for ordinal, sample in enumerate(wds.tarfile_samples([{"url": self.current}])):
                buffer.append((shard * SHARD_STRIDE + ordinal, sample))
                if len(buffer) >= self.shuffle_buffer:
                    yield _pop_random(buffer, rng)
        while buffer:
            yield _pop_random(buffer, rng)

    def raw_samples(self) -> Iterator[tuple[int, int, int, dict]]:
        """(unit, offset after this sample, index, sample dict) for every raw sample from the start position."""
        unit, empty = self.unit, 0
        while True:
            offset = 0
            for index, sample in self.unit_samples(unit):
                offset += 1
                if unit == self.unit and offset <= self.offset:
                    continue
                yield unit, offset, index, sample
            empty = empty + 1 if offset == 0 else 0
            if empty >= MAX_EMPTY_UNITS or (empty and not self.resampled):
                raise UserError(f"{self.shards[0]}...: the webdataset shards hold no samples")
            unit += 1

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        B = self.batch_size
        try:
            for i, (unit, offset, index, sample) in enumerate(self.raw_samples()):
                b, slot = divmod(i, B)
                if b % workers != worker:
                    continue
                if slot == 0:
                    parts, good, corrupt = BatchParts(), [], 0
                parts.seen += 1
                aug_unit = (unit, self.rank) if self.resampled else (unit,)
                image_key = next((e for e in IMAGE_EXTS if e in sample), None)
                try:
                    if image_key is None or "txt" not in sample:
                        raise ValueError("needs an image (png/jpg/jpeg/webp) and a .txt caption")
                    image = decode_image(sample[image_key])
                    caption = sample["txt"].decode("utf-8").strip()
                except (*DECODE_ERRORS, UnicodeDecodeError):
                    parts.skipped_keys.append(f"{sample['__url__']}:{sample['__key__']}")
                    corrupt += 1
                else:
                    parts.add(
                        self.views(image, generator(self.seed, AUGMENT, *aug_unit, index)), caption, index
                    )
                    good.append((sample[image_key], caption, index, aug_unit))
                if slot == B - 1:
                    if corrupt and not good:
                        yield parts.to_batch(
                            error=f"every sample of a batch was undecodable (last: {parts.skipped_keys[-1]})"
                        )
                        return
                    for n in range(
                        corrupt
                    ):  # refill from this batch's good samples, with fresh augmentations
                        data, caption, index, aug_unit = good[n % len(good)]
                        g = generator(self.seed, AUGMENT, *aug_unit, index, REPLACE, n)
                        parts.add(self.views(decode_image(data), g), caption, index)
                    yield parts.to_batch(position={"unit": unit, "offset": offset})
        except UserError as exc:
            yield BatchParts().to_batch(error=str(exc))
        except (tarfile.TarError, OSError, ValueError) as exc:
            yield BatchParts().to_batch(
                error=f"{self.current}: unreadable webdataset shard ({type(exc).__name__})"
            )
