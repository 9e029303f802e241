"""The training-pair loader: CSV, webdataset or synthetic-world image-caption pairs turned into endless,
resumable batches of multi-crop views and tokens, identical for any ``num_workers``.

Determinism: every sample's augmentation generator is seeded from (seed, epoch, sample index) and batch ``b``
is a fixed slice of a seeded data order, so batches depend only on (seed, position, batch size, rank, world
size). ``PairLoader.state_dict()`` after ``k`` batches, passed back as ``position``, yields batch ``k + 1`` next.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from silc.data.csv_source import CsvPairs, read_pairs_csv
from silc.data.samples import ViewFn
from silc.data.wds_source import WdsPairs, expand_shards
from silc.errors import UserError

log = logging.getLogger(__name__)

KINDS = ("webdataset", "csv", "synthetic")


@dataclass
class DataConfig:
    """Where the pairs come from and how bad data is treated (``kind: synthetic`` reads ``PATH/pretrain``)."""

    kind: Literal["webdataset", "csv", "synthetic"] = "webdataset"
    path: str = ""
    csv_img_key: str = "filepath"
    csv_caption_key: str = "caption"
    csv_separator: str = ","
    resampled: bool = False
    shuffle_buffer: int = 1000  # webdataset: samples held by the seeded shuffle buffer
    max_skipped_fraction: float = 0.01
    skip_check_after: int = 100  # samples seen before max_skipped_fraction is enforced
    num_workers: int = 0


def _identity(batch: dict) -> dict:
    return batch


class PairLoader:
    """Endless iterator over batch dicts; ``state_dict()`` is a small JSON-able data position."""

    def __init__(
        self,
        cfg: DataConfig,
        make_dataset: Callable[[dict], Dataset],
        describe: str,
        tokenize: Callable[[list[str]], torch.Tensor],
        batch_size: int,
        rank: int,
        world_size: int,
        state: dict,
    ):
        self.cfg, self.make_dataset, self.describe, self.tokenize = cfg, make_dataset, describe, tokenize
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.state = state
        self._warned: set[str] = set()

    def state_dict(self) -> dict[str, Any]:
        """Position after the batches yielded so far (not the ones prefetched by workers)."""
        return dict(self.state)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        dataset = self.make_dataset(self.state)
        sampler = None if isinstance(dataset, IterableDataset) else itertools.count()
        workers = self.cfg.num_workers
        loader = DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=workers,
            collate_fn=_identity,
            prefetch_factor=2 if workers else None,
        )
        for item in loader:
            yield self._accept(item)

    def _accept(self, item: dict) -> dict[str, torch.Tensor]:
        if item["_error"] is not None:
            raise UserError(f"{self.describe}: {item['_error']}")
        st = self.state
        st["seen"] += item["_seen"]
        st["skipped"] += len(item["_skipped_keys"])
        for key in item["_skipped_keys"]:
            if key not in self._warned:
                self._warned.add(key)
                log.warning("skipping undecodable image %s", key)
        frac = self.cfg.max_skipped_fraction
        if st["seen"] >= self.cfg.skip_check_after and st["skipped"] > frac * st["seen"]:
            raise UserError(
                f"{self.describe}: {st['skipped']} of {st['seen']} images were undecodable "
                f"({st['skipped'] / st['seen']:.1%}), more than data.max_skipped_fraction={frac}"
            )
        st["batches"] += 1
        st["samples_per_rank"] += self.batch_size
        if st["kind"] == "csv":
            st["samples"] += self.batch_size * self.world_size
            st["epoch"] = st["samples"] // st["dataset_size"]
        else:
            st["unit"], st["offset"] = item["_position"]["unit"], item["_position"]["offset"]
            st["epoch"] = st["unit"]
        out = {k: v for k, v in item.items() if not k.startswith("_")}
        out["text"] = torch.as_tensor(self.tokenize(item["_captions"])).long()
        return out


def _check(cfg: DataConfig) -> None:
    if cfg.kind not in KINDS:
        raise UserError(f"data.kind: expected one of {', '.join(KINDS)}, got {cfg.kind!r}")
    if not cfg.path:
        raise UserError("data.path: required (a CSV file, webdataset shards, or a synthetic-world folder)")
    if not 0 <= cfg.max_skipped_fraction <= 1:
        raise UserError(
            f"data.max_skipped_fraction: expected a number in [0, 1], got {cfg.max_skipped_fraction}"
        )
    if cfg.num_workers < 0:
        raise UserError(f"data.num_workers: expected >= 0, got {cfg.num_workers}")


def _initial_state(kind: str, position: dict | Sequence[dict] | None, rank: int, world_size: int) -> dict:
    state = {"kind": kind, "epoch": 0, "batches": 0, "samples_per_rank": 0, "seen": 0, "skipped": 0}
    state.update({"samples": 0} if kind == "csv" else {"unit": 0, "offset": 0})
    if position is None:
        return state
    if not isinstance(position, dict):  # one position per rank, as gathered by a distributed trainer
        if len(position) != world_size:
            raise UserError(
                f"data position: holds {len(position)} rank positions, this run has {world_size} ranks"
            )
        position = position[rank]
    if position.get("kind") != kind:
        raise UserError(
            f"data position: saved for data kind {position.get('kind')!r}, this run reads {kind!r}"
        )
    if kind == "webdataset" and position.get("world_size", world_size) != world_size:
        log.warning(
            "resuming a webdataset position saved with %s ranks on %s ranks: the shard split differs, so "
            "the data order is not the one an uninterrupted run would have seen",
            position.get("world_size"),
            world_size,
        )
    state.update({k: position[k] for k in state if k in position and k != "kind"})
    return state


def build_loader(
    data_cfg: DataConfig,
    views: ViewFn,
    tokenize: Callable[[list[str]], torch.Tensor],
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    position: dict | Sequence[dict] | None = None,
) -> PairLoader:
    """A :class:`PairLoader` for this rank; ``position`` is a previous ``state_dict()`` (or one per rank)."""
    if batch_size < 1:
        raise UserError(f"batch size: expected >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    cfg = data_cfg
    _check(cfg)
    if cfg.kind == "webdataset":
        shards = expand_shards(cfg.path)
        state = _initial_state("webdataset", position, rank, world_size)
        state.update(rank=rank, world_size=world_size)

        def make(st: dict) -> Dataset:
            return WdsPairs(
                shards,
                cfg.resampled,
                views,
                seed,
                batch_size,
                rank,
                world_size,
                st["unit"],
                st["offset"],
                cfg.shuffle_buffer,
            )

        describe = cfg.path
    else:
        if cfg.kind == "synthetic":
            csv_path = Path(cfg.path) / "pretrain" / "pairs.csv"
            if not csv_path.is_file():
                raise UserError(f"{cfg.path}: not a synthetic world (no pretrain/pairs.csv in it)")
            img_key, caption_key, sep = "filepath", "caption", ","
        else:
            csv_path = Path(cfg.path)
            img_key, caption_key, sep = cfg.csv_img_key, cfg.csv_caption_key, cfg.csv_separator
        files, captions = read_pairs_csv(csv_path, img_key, caption_key, sep)
        state = _initial_state("csv", position, rank, world_size)
        state.update(dataset_size=len(files), rank=rank, world_size=world_size)
        state["epoch"] = state["samples"] // len(files)

        def make(st: dict) -> Dataset:
            return CsvPairs(files, captions, views, seed, batch_size, rank, world_size, st["samples"])

        describe = str(csv_path)
    log.info("training data: %s (%s)", describe, cfg.kind)
    return PairLoader(cfg, make, describe, tokenize, batch_size, rank, world_size, state)
