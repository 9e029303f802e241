"""One benchmark's work split across torchrun ranks: who this process is, its contiguous share of the items, the
gather of every rank's rows back into the full ordered tensor, and decisions taken on rank 0 and broadcast.

Without an initialised process group (or inside :func:`alone`) this process is rank 0 of 1 and every function is
the single-process identity. Each collective here must be called by every rank, in the same order.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import pickle
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from silc.errors import first_line

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

# How long the other ranks wait for rank 0's decision (it may wait for another process's claim, or compute a
# record's intervals): the default group's timeout (30 min) is for the collectives of balanced work.
PATIENCE = datetime.timedelta(days=7)
_ALONE = [False]  # inside ``alone()``
_PATIENT: list[tuple[Any, Any]] = []  # (default group, its patient gloo group), made on first use


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group when one is initialised, else ``(0, 1)``."""
    if _ALONE[0] or not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes records, caches and artefacts)."""
    return rank_and_world()[0] == 0


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Evaluate in this process alone while a process group exists (the trainer evaluates on its rank 0 only):
    no collective is made and this process counts as rank 0 of 1."""
    before = _ALONE[0]
    _ALONE[0] = True
    try:
        yield
    finally:
        _ALONE[0] = before


def shard(total: int, block: int = 1) -> range:
    """This rank's contiguous share of ``total`` items, in whole blocks of ``block`` items (a batch: each rank
    then runs exactly the batches one process would, so its numbers are those of one process). Ranks take
    consecutive runs of blocks, in rank order, as equal as whole blocks allow."""
    rank, world = rank_and_world()
    blocks = -(-total // max(1, block))
    first, last = blocks * rank // world, blocks * (rank + 1) // world
    return range(min(first * block, total), min(last * block, total))


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` on one process)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj, group=_patient_group())
    return out


def gather_dict(part: dict[K, V]) -> dict[K, V]:
    """The union of every rank's ``part``, rank 0's entries first (each rank keys its own items)."""
    merged: dict[K, V] = {}
    for piece in gather_objects(part):
        merged.update(piece)
    return merged


def everywhere(value: T | None) -> T | None:
    """``value`` when every rank has one (not None), else None on every rank: a cache hit counts only when it
    is a hit on all ranks, so that they all compute, or none does."""
    return value if all(gather_objects(value is not None)) else None


def gather_rows(part: torch.Tensor, total: int) -> torch.Tensor:
    """The full ``[total, ...]`` float32 CPU tensor from each rank's consecutive rows (its :func:`shard`), in rank
    order, on every rank. A part that is ``[n, 0]`` (none of its images decoded) becomes NaN rows of the others'
    width, as one process fills the rows of images that do not decode."""
    _, world = rank_and_world()
    if world == 1:
        return part
    shapes = gather_objects(tuple(part.shape))
    widths = {shape[1:] for shape in shapes if math.prod(shape[1:]) > 0}
    if len(widths) > 1 or sum(shape[0] for shape in shapes) != total:
        raise RuntimeError(f"ranks' feature parts {shapes} do not form {total} rows of one width")
    width = next(iter(widths), (0,))
    rows = max(shape[0] for shape in shapes)
    if rows * math.prod(width) == 0:  # nothing to send: no rows, or no image of any rank decoded
        return torch.full((total, *width), float("nan"), dtype=torch.float32)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    padded = torch.full((rows, *width), float("nan"), dtype=torch.float32, device=device)
    if tuple(part.shape[1:]) == width:
        padded[: len(part)] = part
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: s[0]] for p, s in zip(parts, shapes, strict=True)]).cpu()


def on_main(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 alone, its value (or the exception it raised) handed to every rank, so that
    the ranks never diverge: all return the same value or raise the same error."""
    _, world = rank_and_world()
    if world == 1:
        return decide()
    box: list[Any] = [None]
    if is_main():
        try:
            box = [(True, decide())]
        except Exception as error:
            box = [(False, _portable(error))]
            _broadcast(box)
            raise
        except BaseException as error:  # an interrupt: the other ranks stop too, then it propagates here
            _broadcast([(False, RuntimeError(f"rank 0 stopped: {first_line(error)}"))])
            raise
    _broadcast(box)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _broadcast(box: list[Any]) -> None:
    dist.broadcast_object_list(box, src=0, group=_patient_group())


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling (the other ranks raise a copy), else a RuntimeError with its line."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"on rank 0: {first_line(error)}")
    return error


def _patient_group() -> Any:
    """A gloo group over the default group's ranks with a long timeout (:data:`PATIENCE`), for the object
    collectives: CPU objects on any backend, and waits as long as rank 0's decisions take."""
    world_group = dist.group.WORLD
    if not (_PATIENT and _PATIENT[0][0] is world_group):
        _PATIENT[:] = [(world_group, dist.new_group(backend="gloo", timeout=PATIENCE))]
    return _PATIENT[0][1]
