"""Decode/encode placement: the cost model's arithmetic, the plan it picks, and batches that stay in order."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from benchmarks.features import collate_decoded
from benchmarks.placement import Costs, DecodePlacement, choose_plan, predicted_seconds


def costs(encode_one_less: float, decode_core: float = 0.004, budget: int = 4) -> Costs:
    return Costs(
        decode_threads=decode_core / budget,
        decode_core=decode_core,
        encode=0.04,
        encode_one_less=encode_one_less,
        budget=budget,
    )


def test_the_encoder_time_on_fewer_threads_follows_serial_plus_parallel_over_threads() -> None:
    linear = costs(encode_one_less=0.04 * 4 / 3)
    assert linear.encode_on(2) == pytest.approx(0.08, rel=1e-12)
    assert linear.encode_on(1) == pytest.approx(0.16, rel=1e-12)
    flat = costs(encode_one_less=0.04)
    assert [flat.encode_on(t) for t in (1, 2, 3, 4)] == [0.04] * 4
    # half serial: 0.02 + 0.08 / t on 4 threads is 0.04, on 3 threads 0.02 + 0.08 / 3
    half = costs(encode_one_less=0.02 + 0.08 / 3)
    assert half.encode_on(1) == pytest.approx(0.10, rel=1e-12)
    # measurements outside the model are clamped: faster on fewer threads = no scaling, more than linear = linear
    assert costs(encode_one_less=0.03).encode_on(1) == 0.04
    assert costs(encode_one_less=1.0).encode_on(1) == pytest.approx(0.16, rel=1e-12)


def test_an_encoder_that_scales_keeps_every_core_and_one_that_does_not_gets_decoding_beside_it() -> None:
    linear = costs(encode_one_less=0.04 * 4 / 3)
    assert predicted_seconds(linear, 0) == pytest.approx(0.041, rel=1e-12)
    assert predicted_seconds(linear, 1) == pytest.approx(0.04 * 4 / 3, rel=1e-12)
    plan = choose_plan(linear, max_workers=3)
    assert (plan.workers, plan.threads) == (0, 4)
    assert plan.seconds == pytest.approx(0.041, rel=1e-12)

    flat = costs(encode_one_less=0.04, decode_core=0.1)  # decoding 2.5x the encoder, which does not scale
    assert [predicted_seconds(flat, w) for w in (0, 1, 2, 3)] == pytest.approx([0.065, 0.1, 0.05, 0.04 / 1])
    plan = choose_plan(flat, max_workers=3)
    assert (plan.workers, plan.threads, plan.seconds) == (3, 1, pytest.approx(0.04))
    assert choose_plan(flat, max_workers=2).workers == 2  # the option bounds the processes
    assert choose_plan(flat, max_workers=0).workers == 0
    assert choose_plan(costs(0.04, budget=1), max_workers=4).workers == 0  # one thread: nothing to share


class Items(Dataset):
    """Items shaped as ImageDataset's, items 5 and 17 bad ones."""

    def __len__(self) -> int:
        return 23

    def __getitem__(self, i: int):
        if i in (5, 17):
            return None, i, "bad"
        return torch.full((3,), float(i)) + torch.arange(3.0), i, None


def consume(placement: DecodePlacement, encode: dict[int, float]) -> tuple[list, list[int]]:
    """All batches, reporting ``encode[threads]`` seconds per image; returns the batches and the thread counts
    the encoder had for each."""
    batches, threads = [], []
    for x, idx, failed in placement.batches():
        batches.append((x, idx, failed))
        threads.append(torch.get_num_threads())
        placement.encoded(len(idx), encode[torch.get_num_threads()] * len(idx))
    return batches, threads


def expected_batches(batch_size: int) -> list:
    items = Items()
    return [
        collate_decoded([items[i] for i in range(s, min(s + batch_size, 23))])
        for s in range(0, 23, batch_size)
    ]


def same_batches(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
        for a, b in zip(got, want, strict=True)
    )


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_measured_costs_pick_the_plan_and_batches_stay_in_order(two_threads) -> None:
    # an encoder that does not scale: a loader process beside it on the other core wins
    placement = DecodePlacement(Items(), 4, torch.device("cpu"), 2, collate_decoded)
    got, threads = consume(placement, {2: 0.01, 1: 0.01})
    assert same_batches(got, expected_batches(4))
    assert (placement.plan.workers, placement.plan.threads) == (1, 1)
    assert threads == [2, 1, 1, 1, 1, 1]  # measured on 2 then 1, the rest beside one loader process
    assert placement.costs.encode == placement.costs.encode_one_less == pytest.approx(0.01)
    assert placement.costs.decode_core > 0
    assert torch.get_num_threads() == 2  # restored

    # an encoder that scales: every core decodes, then every core encodes
    placement = DecodePlacement(Items(), 4, torch.device("cpu"), 2, collate_decoded)
    got, threads = consume(placement, {2: 0.01, 1: 0.02})
    assert same_batches(got, expected_batches(4))
    assert (placement.plan.workers, placement.plan.threads) == (0, 2)
    assert threads == [2, 1, 2, 2, 2, 2]


def test_without_workers_or_enough_batches_nothing_is_measured(two_threads) -> None:
    for workers, batch_size in ((0, 4), (2, 12)):  # no process allowed; two batches only
        placement = DecodePlacement(Items(), batch_size, torch.device("cpu"), workers, collate_decoded)
        got, threads = consume(placement, {2: 0.01, 1: 0.01})
        assert same_batches(got, expected_batches(batch_size))
        assert placement.plan is None and threads == [2] * len(got)
