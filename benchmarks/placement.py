"""Where image decoding and encoding run on a CPU, chosen from their measured costs rather than a fixed rule.

Two kinds of plan share the thread budget (torch's intra-op thread count, which follows ``OMP_NUM_THREADS``):

- ``threads``: each batch is decoded on every thread of the budget (threads of this process: PIL and torch release
  the GIL for the heavy parts), then encoded on every thread. Nothing runs beside the encoder.
- ``w workers``: ``w`` loader processes decode ahead while the encoder runs on the other ``budget - w`` threads, so
  decoding overlaps the encoder at the price of the encoder's cores. It wins where the encoder does not scale with
  its threads, or where decoding on threads is held back by the GIL.

The first two batches measure the costs, both decoded by the ``threads`` plan: the decode wall time per image on
threads, and the decode CPU time per image on one core (what one process gives); the encoder's wall time per image
on the whole budget (first batch) and on one thread less (second batch), which fits the encoder's time on ``t``
threads as ``serial + parallel / t``. The rest of the images go to the plan with the lowest predicted time per image.
Off the CPU the encoder does not use the budget, so the loader's processes decode beside it as configured.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Costs:
    """Measured seconds per image: decoding on the budget's threads (wall) and on one core (CPU time); the encoder
    on ``budget`` threads and on ``budget - 1`` threads (wall)."""

    decode_threads: float
    decode_core: float
    encode: float
    encode_one_less: float
    budget: int

    def encode_on(self, threads: int) -> float:
        """The encoder's seconds per image on ``threads`` threads, from ``serial + parallel / threads`` through
        the two measurements (no worse than linear scaling, no better than none)."""
        if threads >= self.budget or self.budget < 2:
            return self.encode
        parallel = (self.encode_one_less - self.encode) * self.budget * (self.budget - 1)
        parallel = min(max(parallel, 0.0), self.encode * self.budget)
        return self.encode - parallel / self.budget + parallel / threads


@dataclass(frozen=True)
class Plan:
    """How the remaining images are decoded: ``workers`` loader processes (0: on this process's threads, between
    encoder calls) beside an encoder on ``threads`` intra-op threads; ``seconds`` per image as predicted."""

    workers: int
    threads: int
    seconds: float

    def describe(self) -> str:
        if self.workers == 0:
            return (
                f"decode on {self.threads} threads between encoder calls, encoder on {self.threads} threads"
            )
        return f"{self.workers} loader process(es) decoding beside an encoder on {self.threads} thread(s)"


def predicted_seconds(costs: Costs, workers: int) -> float:
    """Predicted seconds per image of the plan with ``workers`` loader processes (0: the ``threads`` plan)."""
    if workers == 0:
        return costs.decode_threads + costs.encode
    return max(costs.decode_core / workers, costs.encode_on(costs.budget - workers))


def choose_plan(costs: Costs, max_workers: int) -> Plan:
    """The plan with the lowest predicted time per image, among ``threads`` and 1 .. ``max_workers`` loader
    processes (each leaving at least one thread to the encoder); ties go to fewer processes."""
    candidates = range(0, max(0, min(max_workers, costs.budget - 1)) + 1)
    best = min(candidates, key=lambda w: (predicted_seconds(costs, w), w))
    return Plan(best, costs.budget - best, predicted_seconds(costs, best))


Batch = Any  # what ``collate`` makes of a list of dataset items


class DecodePlacement:
    """Decoded batches of ``dataset`` in order, for an encoder on ``device``; the consumer reports each batch's
    encode time with :meth:`encoded`, so that the first two batches' costs choose the plan of the rest (CPU only).

    ``max_workers`` bounds the loader processes (the harness option ``workers``); with 0 the images are decoded
    on threads of this process only. ``worker_init`` runs first in each loader process."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        max_workers: int,
        collate: Callable[[list[Any]], Batch],
        worker_init: Callable[[int], None] | None = None,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.max_workers = max(0, int(max_workers))
        self.collate = collate
        self.worker_init = worker_init
        self.budget = max(1, torch.get_num_threads())
        self.costs: Costs | None = None
        self.plan: Plan | None = None
        self._decode: list[tuple[float, float]] = []  # per measured batch: (wall, core) seconds per image
        self._encode: list[float] = []  # per measured batch: encoder seconds per image

    def encoded(self, images: int, seconds: float) -> None:
        """Report the encoder's wall time for a batch of ``images``."""
        if images:
            self._encode.append(seconds / images)

    def batches(self) -> Iterator[Batch]:
        """The batches in dataset order."""
        n = len(self.dataset)  # type: ignore[arg-type]
        starts = range(0, n, self.batch_size)
        if self.device.type != "cpu":
            yield from self._loader(range(n), self.max_workers)
            return
        # with fewer batches than the two measured ones and one more, or no worker allowed, nothing is to choose
        explore = self.max_workers > 0 and self.budget > 1 and len(starts) > 2
        with ThreadPoolExecutor(self.budget, thread_name_prefix="decode") as pool:
            for k, start in enumerate(starts):
                if explore and k == 2:
                    self._choose()
                    if self.plan is not None and self.plan.workers > 0:
                        break
                indices = range(start, min(start + self.batch_size, n))
                if explore and k < 2:
                    with _intra_op_threads(self.budget - k):
                        yield self._decode_measured(pool, indices)
                else:
                    yield self.collate(list(pool.map(self.dataset.__getitem__, indices)))
            else:
                return
        with _intra_op_threads(self.plan.threads):
            yield from self._loader(range(starts[2], n), self.plan.workers)

    def _choose(self) -> None:
        if (
            len(self._decode) < 2 or len(self._encode) < 2
        ):  # a batch of bad images only: keep the threads plan
            return
        self.costs = Costs(
            decode_threads=sum(w for w, _ in self._decode) / 2,
            decode_core=sum(c for _, c in self._decode) / 2,
            encode=self._encode[0],
            encode_one_less=self._encode[1],
            budget=self.budget,
        )
        self.plan = choose_plan(self.costs, self.max_workers)
        log.info(
            "decode %.1f ms per image on one core (%.1f on %d threads), encoder %.1f ms per image on %d threads "
            "(%.1f on %d): %s, predicted %.1f ms per image",
            1e3 * self.costs.decode_core,
            1e3 * self.costs.decode_threads,
            self.budget,
            1e3 * self.costs.encode,
            self.budget,
            1e3 * self.costs.encode_one_less,
            self.budget - 1,
            self.plan.describe(),
            1e3 * self.plan.seconds,
        )

    def _decode_measured(self, pool: ThreadPoolExecutor, indices: Sequence[int]) -> Batch:
        start = time.perf_counter()
        timed = list(pool.map(self._timed_item, indices))
        wall = time.perf_counter() - start
        self._decode.append((wall / len(timed), sum(c for _, c in timed) / len(timed)))
        return self.collate([item for item, _ in timed])

    def _timed_item(self, i: int) -> tuple[Any, float]:
        start = time.thread_time()
        item = self.dataset[i]
        return item, time.thread_time() - start

    def _loader(self, indices: Sequence[int], workers: int) -> Iterator[Batch]:
        return iter(
            DataLoader(
                Subset(self.dataset, list(indices)),
                batch_size=self.batch_size,
                shuffle=False,
                num_workers=workers,
                collate_fn=self.collate,
                worker_init_fn=self.worker_init,
                pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if workers else None,
            )
        )


@contextlib.contextmanager
def _intra_op_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
