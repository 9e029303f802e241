"""Few-shot linear probe (benchmark ``fewshot``): logistic regression on frozen, normalised global features.

For each seed, k images per class are drawn from the train split (nested: the 1-shot set is inside the 5-shot
set); scikit-learn's ``LogisticRegression`` (lbfgs, multinomial, L2) is fitted on them, its inverse regularisation
C chosen from ``c_grid`` by stratified cross-validation on the shots (``min(k, cv_folds)`` folds; k = 1 leaves
nothing to hold out and uses ``one_shot_c``), then scored on the whole val split. Reported: mean and sample
standard deviation (ddof=1) of top-1 accuracy over seeds, per k.

Intervals resample the val images (the unit); the probes fitted on each seed's shots stay as they are, so an
interval says how the score would move with other val images, not with other shots (that is the seeds' spread).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.options import HarnessOptions, option
from benchmarks.readers.classification import ClassificationData, read_class_meta, read_classification
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError
from silc.kernel.precision import CHOICES as PRECISIONS

if TYPE_CHECKING:
    from adapters.encoder import Encoder
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes


def sample_shots(labels: list[int], num_classes: int, k_max: int, seed: int) -> list[list[int]]:
    """Per class, ``k_max`` sample indices in a seeded random order (take a prefix for fewer shots)."""
    rng = np.random.default_rng(seed)
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for i, y in enumerate(labels):
        by_class[y].append(i)
    return [[idx[j] for j in rng.permutation(len(idx))[:k_max]] for idx in by_class]


def fit_probe(x: np.ndarray, y: np.ndarray, c: float, max_iter: int):
    """A multinomial L2 logistic regression fitted with lbfgs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def choose_c(x: np.ndarray, y: np.ndarray, k: int, protocol: dict[str, Any], seed: int) -> tuple[float, dict]:
    """The C with the best mean held-out accuracy over stratified folds of the shots (smallest C on ties)."""
    folds = min(k, int(protocol["cv_folds"]))
    if folds < 2:
        return float(protocol["one_shot_c"]), {}
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {}
    for c in protocol["c_grid"]:
        accs = []
        for tr, te in splitter.split(x, y):
            accs.append(
                float((fit_probe(x[tr], y[tr], c, protocol["max_iter"]).predict(x[te]) == y[te]).mean())
            )
        scores[float(c)] = float(np.mean(accs))
    best = max(scores.values())
    return min(c for c, s in scores.items() if s == best), scores


@dataclass
class FewShotOptions(HarnessOptions):
    """Options of ``fewshot``."""

    shots: list[int] | None = option(None, "k values (protocol default: 1 5 10)", knob=True)
    seeds: list[int] | None = option(None, "sampling seeds (protocol default: 0 1 2)", knob=True)
    train_split: str | None = option(None, "split the shots come from (default: train)", knob=True)
    val_split: str | None = option(None, "split scored (default: val)", knob=True)
    precision: str | None = option(None, "fp32 or autocast", knob=True, choices=PRECISIONS)


class FewShotLinearProbe(Harness):
    name = "fewshot"
    description = "few-shot linear probe on frozen normalised features: mean +- std top-1 accuracy over seeds"
    default_protocol = "linear-probe"
    options_type = FewShotOptions
    key_metrics = ("acc1_1shot_mean", "acc1_5shot_mean", "acc1_10shot_mean")
    table_order = 30
    metric_scale = "fraction"
    protocols = {
        "linear-probe": {
            "train_split": "train",
            "val_split": "val",
            "shots": [1, 5, 10],
            "seeds": [0, 1, 2],
            "solver": "sklearn-lbfgs-multinomial-l2",
            "c_grid": [0.1, 1.0, 10.0, 100.0, 1000.0],
            "cv_folds": 3,
            "one_shot_c": 10.0,
            "max_iter": 1000,
            "features": "global-l2-normalised",
            "transform": "model-eval",
            "precision": "auto",
        },
    }

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        from benchmarks.features import pin_encoding

        if not protocol["shots"] or any(k < 1 for k in protocol["shots"]) or not protocol["seeds"]:
            raise UserError(
                f"shots/seeds: expected positive shot counts and at least one seed, got "
                f"{protocol['shots']} / {protocol['seeds']}"
            )
        meta = read_class_meta(data_root, protocol["val_split"])
        read_class_meta(data_root, protocol["train_split"])
        pinned = meta.pinned()
        return {
            **pin_encoding(protocol, encoder),
            "num_classes": pinned["num_classes"],
            "classnames_sha256": pinned["classnames_sha256"],
        }

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: FewShotOptions,
        artefacts: Path,
    ) -> Evaluation:
        from benchmarks.features import encode_images, settings_from_options
        from benchmarks.readers.images import unit_ids

        protocol = self.pin_protocol(protocol, encoder, data_root)
        train = read_classification(data_root, protocol["train_split"])
        val = read_classification(data_root, protocol["val_split"])
        if len(train.meta.classnames) != len(val.meta.classnames):
            raise UserError(
                f"{data_root}: {protocol['train_split']} has {len(train.meta.classnames)} classes, "
                f"{protocol['val_split']} has {len(val.meta.classnames)}"
            )
        num_classes, k_max = len(train.meta.classnames), max(protocol["shots"])
        _check_enough(train, k_max)
        settings = settings_from_options(options, protocol["precision"])
        shots = {s: sample_shots(train.labels, num_classes, k_max, s) for s in protocol["seeds"]}
        chosen = sorted({i for per_class in shots.values() for idx in per_class for i in idx})
        pos = {i: j for j, i in enumerate(chosen)}
        train_feats = encode_images(
            encoder, [train.refs[i] for i in chosen], data_root, settings, desc="shots"
        )
        val_feats = encode_images(
            encoder, val.refs, data_root, settings, desc=f"{self.name} {val.meta.split}"
        )
        x_all = train_feats.tensor.double().numpy()
        x_val, y_val = val_feats.tensor.double().numpy(), np.asarray(val.labels)
        metrics: dict[str, Any] = {}
        runs = []
        correct = []  # per run (k-major, seeds in order): each val image's correctness
        for k in protocol["shots"]:
            accs = []
            for seed in protocol["seeds"]:
                idx = [pos[i] for per_class in shots[seed] for i in per_class[:k]]
                y = np.asarray([train.labels[chosen[j]] for j in idx])
                x = x_all[idx]
                c, sweep = choose_c(x, y, k, protocol, seed)
                hit = fit_probe(x, y, c, protocol["max_iter"]).predict(x_val) == y_val
                correct.append(hit)
                acc = float(hit.mean())
                accs.append(acc)
                runs.append({"k": k, "seed": seed, "C": c, "acc1": acc, "cv_accuracy": sweep})
            metrics[f"acc1_{k}shot_mean"] = float(np.mean(accs))
            metrics[f"acc1_{k}shot_std"] = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        extra = {
            "runs": runs,
            "num_train_images_encoded": len(chosen),
            "image_features_from_cache": {"train": train_feats.from_cache, "val": val_feats.from_cache},
        }
        outcomes = self._outcomes(correct, protocol, unit_ids(val.refs, data_root))
        return Evaluation(
            metrics, val.meta.split, len(val.refs), train_feats.encoded + val_feats.encoded, extra, outcomes
        )

    @staticmethod
    def _outcomes(correct: list[np.ndarray], protocol: dict[str, Any], units: list[str]) -> Outcomes:
        """Per val image and run: whether the probe got it right (``correct`` bool [images, runs], the runs
        k-major with the seeds in protocol order, as ``shots`` and ``seeds`` say)."""
        from benchmarks.uncertainty import Outcomes

        arrays = {
            "correct": np.stack(correct, axis=1).astype(bool),
            "shots": np.asarray(protocol["shots"], dtype=np.int32),
            "seeds": np.asarray(protocol["seeds"], dtype=np.int32),
        }
        return Outcomes("image", units, arrays)

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """Per run, accuracy = weighted correct / weighted images (integer sums in float64, so exact); per k the
        mean and sample std (ddof=1; 0 for one seed) over the seeds with numpy's row reductions on a C-contiguous
        ``[B, seeds]`` array, which sum as ``np.mean``/``np.std`` of the list of accuracies do."""
        weights = counts.astype(np.float64)
        acc = (weights @ arrays["correct"].astype(np.float64)) / weights.sum(axis=1)[:, None]  # [B, runs]
        n_seeds = len(arrays["seeds"])
        out: dict[str, np.ndarray] = {}
        for j, k in enumerate(arrays["shots"].tolist()):
            per_seed = np.ascontiguousarray(acc[:, j * n_seeds : (j + 1) * n_seeds])
            out[f"acc1_{k}shot_mean"] = np.mean(per_seed, axis=1)
            out[f"acc1_{k}shot_std"] = (
                np.std(per_seed, axis=1, ddof=1) if n_seeds > 1 else np.zeros(len(counts))
            )
        return out

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """A probe guessing one of the C classes (the pinned ``num_classes``) at random: every mean accuracy is
        1/C, whatever the val split's class balance."""
        num_classes = record.protocol.get("num_classes")
        if not num_classes:
            return {}
        return {f"acc1_{k}shot_mean": 1 / num_classes for k in record.protocol.get("shots", [])}


def _check_enough(train: ClassificationData, k: int) -> None:
    counts = np.bincount(np.asarray(train.labels), minlength=len(train.meta.classnames))
    short = [i for i, n in enumerate(counts) if n < k]
    if short:
        name = train.meta.classnames[short[0]]
        raise UserError(
            f"{train.meta.root / train.meta.split}: class {name!r} has {counts[short[0]]} images, "
            f"fewer than the {k} shots asked for ({len(short)} such classes); lower --shots"
        )


register(FewShotLinearProbe())
