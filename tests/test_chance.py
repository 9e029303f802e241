"""Chance levels of the harnesses against a Monte-Carlo random guesser: many small evaluations with uniformly
random predictions, scored by each harness's own outcomes and ``metrics_from_counts``, whose mean must agree with
the harness's ``chance`` within a few Monte-Carlo standard errors (so a wrong formula fails)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.detection import boxcls
from benchmarks.metrics import retrieval_hits
from benchmarks.registry import get_harness
from benchmarks.uncertainty import Outcomes
from tests.test_product_tables import make_record

Z = 4.0  # Monte-Carlo standard errors allowed


def assert_near(draws: list[dict[str, float]], chance: dict[str, float], slack: float = 0.0) -> None:
    """Each metric's mean over the draws is within Z standard errors (+ ``slack``, for rounded metrics) of its
    chance level, and every metric drawn has one."""
    assert set(chance) == set(draws[0])
    for key, expected in chance.items():
        values = np.asarray([d[key] for d in draws])
        se = values.std(ddof=1) / math.sqrt(len(values))
        assert abs(values.mean() - expected) <= Z * se + slack, (key, values.mean(), expected, se)


def score(benchmark: str, arrays: dict[str, np.ndarray], units: int) -> dict[str, float]:
    """The harness's metrics of one evaluation (every unit once)."""
    got = get_harness(benchmark).metrics_from_counts(arrays, np.ones((1, units), np.int64))
    return {k: float(v[0]) for k, v in got.items()}


def test_zeroshot_chance_is_k_over_c_and_one_over_c() -> None:
    harness, classes, n = get_harness("zeroshot-cls"), 7, 1000
    gen = torch.Generator().manual_seed(0)
    share = torch.tensor([0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])  # imbalanced: recall and accuracy still 1/C
    draws = []
    for _ in range(20):
        target = torch.multinomial(share, n, replacement=True, generator=gen)
        logits = torch.rand(n, classes, generator=gen)
        outcomes = harness._outcomes(logits, target, logits.argmax(1), [1, 5], [str(i) for i in range(n)])
        draws.append(score("zeroshot-cls", outcomes.arrays, n))
    chance = harness.chance(
        make_record("m", "zeroshot-cls", "default", {"top_k": [1, 5], "num_classes": 7}, {}), None
    )
    assert_near(draws, chance)
    assert chance == pytest.approx({"acc1": 1 / 7, "acc5": 5 / 7, "mean_per_class_recall": 1 / 7})
    # acc@k beyond the class count is undefined: no chance level for it
    small = make_record("m", "zeroshot-cls", "default", {"top_k": [1, 5], "num_classes": 3}, {})
    assert harness.chance(small, None) == pytest.approx({"acc1": 1 / 3, "mean_per_class_recall": 1 / 3})


def test_retrieval_chance_is_exact_sampling_without_replacement() -> None:
    harness, ks = get_harness("retrieval"), [1, 5, 10]
    per_image = [1, 2, 3, 4, 5] * 4  # 20 images, 60 captions: few, so that k/M-style approximations are off
    text_image = torch.tensor([i for i, m in enumerate(per_image) for _ in range(m)])
    units = [f"img{i}" for i in range(len(per_image))]
    gen = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(1000):
        images = torch.randn(len(per_image), 8, generator=gen)
        texts = torch.randn(len(text_image), 8, generator=gen)
        outcomes = harness._outcomes(*retrieval_hits(images, texts, text_image, ks), text_image, ks, units)
        draws.append(score("retrieval", outcomes.arrays, len(units)))
    chance = harness.chance(make_record("m", "retrieval", "karpathy-test", {}, {}), outcomes)
    assert_near(draws, chance)
    assert chance["image_retrieval_recall@5"] == 5 / 20
    assert chance["text_retrieval_recall@1"] == pytest.approx(1 / 20)  # mean m / M = 3 / 60
    with_replacement = 1 - np.mean([(1 - m / 60) ** 10 for m in per_image])
    assert chance["text_retrieval_recall@10"] - with_replacement > 0.02  # the exact formula matters here
    assert harness.chance(make_record("m", "retrieval", "karpathy-test", {}, {}), None) == {}


def test_fewshot_chance_is_one_over_c_per_shot_count() -> None:
    harness, classes, n = get_harness("fewshot"), 5, 2000
    protocol = {"shots": [1, 5], "seeds": [0, 1, 2], "num_classes": classes}
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(10):
        labels = rng.integers(0, classes, n)
        correct = [rng.integers(0, classes, n) == labels for _ in range(6)]
        outcomes = harness._outcomes(correct, protocol, [str(i) for i in range(n)])
        metrics = score("fewshot", outcomes.arrays, n)
        draws.append({k: v for k, v in metrics.items() if k.endswith("_mean")})
    chance = harness.chance(make_record("m", "fewshot", "linear-probe", protocol, {}), None)
    assert_near(draws, chance)
    assert chance == {"acc1_1shot_mean": 0.2, "acc1_5shot_mean": 0.2}


def seg_areas(label: np.ndarray, pred: np.ndarray, classes: int) -> dict[str, np.ndarray]:
    """One image's per-class areas as mmseg's ``intersect_and_union`` counts them (255: ignored)."""
    valid = label != 255
    label, pred = label[valid], pred[valid]
    intersect = np.bincount(label[label == pred], minlength=classes)
    area_pred, area_label = np.bincount(pred, minlength=classes), np.bincount(label, minlength=classes)
    return {"intersect": intersect, "union": area_pred + area_label - intersect, "pred_label": area_pred,
            "label": area_label}  # fmt: skip


@pytest.mark.parametrize("nan_to_num", [math.nan, 0.0])
def test_seg_chance_from_the_label_areas(nan_to_num: float) -> None:
    harness, classes = get_harness("seg-ade20k"), 6
    share = [0.45, 0.3, 0.15, 0.1, 0.0, 0.0]  # two classes never labelled; 10 % of the pixels ignored
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(20):
        images = []
        for _ in range(20):
            label = rng.choice(classes, (32, 32), p=share)
            label[rng.random((32, 32)) < 0.1] = 255
            images.append(seg_areas(label, rng.integers(0, classes, (32, 32)), classes))
        arrays = {k: np.stack([a[k] for a in images]) for k in images[0]}
        arrays["nan_to_num"] = np.asarray(nan_to_num)
        outcomes = Outcomes("image", [str(i) for i in range(20)], arrays)
        draws.append(score("seg-ade20k", arrays, 20))
    chance = harness.chance(make_record("m", "seg-ade20k", "synth", {}, {}), outcomes)
    assert_near(draws, chance, slack=0.005)  # the metrics are rounded to 2 decimals
    # mIoU: the mean over all 6 classes of p / (6p + 1 - p) (0 for the two unlabelled ones), not 1/(2C - 1)
    label = outcomes.arrays["label"].sum(axis=0)
    p = label / label.sum()
    assert chance["mIoU"] == pytest.approx(100 * np.mean(p / (5 * p + 1)))
    assert chance["aAcc"] == pytest.approx(100 / 6)
    assert chance["mAcc"] == pytest.approx(100 / 6 if math.isnan(nan_to_num) else 100 / 6 * 4 / 6)


def test_boxcls_chance_is_one_over_the_vocabulary() -> None:
    harness = get_harness("det-ovcoco")
    vocabulary = [f"c{i}" for i in range(10)]
    base, novel = vocabulary[:6], vocabulary[6:]
    gen = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(40):
        counts = boxcls.BoxclsCounts(len(vocabulary))
        labels = torch.randint(0, 9, (1000,), generator=gen)  # class c9 has no box
        counts.totals.index_add_(0, labels, torch.ones_like(labels))
        counts.box_labels.append(labels)
        counts.box_images.append(torch.arange(1000) // 5)  # 200 images of 5 boxes
        for source in boxcls.SOURCES:
            counts.add(source, torch.rand(1000, len(vocabulary), generator=gen), labels)
        arrays = boxcls.box_outcomes(counts, vocabulary, base, novel)
        draws.append(score("det-ovcoco", arrays, 200))
    outcomes = Outcomes("image with its boxes", [str(i) for i in range(200)], arrays)
    chance = harness.chance(make_record("m", "det-ovcoco", "boxcls", {}, draws[-1]), outcomes)
    assert_near(draws, chance)
    assert chance["dense_top1_novel"] == pytest.approx(10.0) and chance["crop_top5_all"] == pytest.approx(
        50.0
    )
    # AP (fvlm outcomes) and records without outcomes have no chance level
    assert harness.chance(make_record("m", "det-ovcoco", "fvlm", {}, {"AP50": 1.0}), None) == {}
