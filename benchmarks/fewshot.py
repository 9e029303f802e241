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

from benchmarks.identity import PublicDataset, imagenet_differences
from benchmarks.options import DECODE_HELP, DECODES, DEFAULT_DECODE, HarnessOptions, option
from benchmarks.readers.classification import (
    ClassificationData,
    ClassMeta,
    read_class_meta,
    read_classification,
)
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError, listed
from silc.kernel.precision import CHOICES as PRECISIONS

if TYPE_CHECKING:
    from adapters.encoder import Encoder
    from benchmarks.features import EncodeSettings, Features
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
    decode: str | None = option(None, DECODE_HELP, knob=True, choices=DECODES)


class FewShotLinearProbe(Harness):
    name = "fewshot"
    description = "few-shot linear probe on frozen normalised features: mean +- std top-1 accuracy over seeds"
    default_protocol = "linear-probe"
    options_type = FewShotOptions
    key_metrics = ("acc1_1shot_mean", "acc1_5shot_mean", "acc1_10shot_mean")
    table_order = 30
    metric_scale = "fraction"
    public_datasets = {
        "imagenet-1k": PublicDataset(
            "ImageNet-1k",
            lambda root, p: imagenet_differences(
                root, {p["train_split"]: "train", p["val_split"]: "val"}, None
            ),
        )
    }
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
            "decode": "pil",  # recorded only when not pil (benchmarks/decode.py)
        },
    }

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        from benchmarks.features import pin_encoding

        _check_shots(protocol)
        meta = read_class_meta(data_root, protocol["val_split"])
        _check_same_classes(read_class_meta(data_root, protocol["train_split"]), meta)
        pinned = meta.pinned()
        return {
            **pin_encoding(protocol, encoder),
            "num_classes": pinned["num_classes"],
            "classnames_sha256": pinned["classnames_sha256"],
        }

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """Both splits' class folders with their images, the same classes in both, enough images for the shots."""
        if not data_root.is_dir():
            return [
                f"{data_root}: folder does not exist; expected train/<class>/<image> and val/<class>/<image>"
            ]
        problems = []
        try:
            _check_shots(protocol)
        except UserError as e:
            problems.append(str(e))
        read = []
        for split in (protocol["train_split"], protocol["val_split"]):
            try:
                read.append(read_classification(data_root, split))
            except UserError as e:
                problems.append(str(e))
        if len(read) == 2:
            train, val = read
            try:
                _check_same_classes(train.meta, val.meta)
                if not problems:
                    _check_enough(train, max(protocol["shots"]))
            except UserError as e:
                problems.append(str(e))
        return problems

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: FewShotOptions,
        artefacts: Path,
    ) -> Evaluation:
        from benchmarks.features import decoded_rows, encode_images, settings_from_options
        from benchmarks.readers.images import unit_ids

        protocol = self.pin_protocol(protocol, encoder, data_root)
        train = read_classification(data_root, protocol["train_split"])
        val = read_classification(data_root, protocol["val_split"])
        if len(train.meta.classnames) != len(val.meta.classnames):
            raise UserError(
                f"{data_root}: {protocol['train_split']} has {len(train.meta.classnames)} classes, "
                f"{protocol['val_split']} has {len(val.meta.classnames)}"
            )
        settings = settings_from_options(
            options, protocol["precision"], decode=protocol.get("decode", DEFAULT_DECODE)
        )
        shots, chosen, train_feats, bad_train = _draw_and_encode_shots(
            encoder, train, protocol, settings, options.skip_bad_images
        )
        pos = {i: j for j, i in enumerate(chosen)}
        val_feats = encode_images(
            encoder, val.refs, data_root, settings, desc=f"{self.name} {val.meta.split}", allow_bad=True
        )
        bad_refs = [train.refs[i] for i in bad_train]
        also_bad = dict(zip(unit_ids(bad_refs, data_root), bad_train.values(), strict=True))
        decoded = decoded_rows(val_feats, val.refs, data_root, options.skip_bad_images, also_bad)
        keep = decoded.rows  # the val images that decode
        x_all = train_feats.tensor.double().numpy()
        x_val, y_val = val_feats.tensor[keep].double().numpy(), np.asarray([val.labels[i] for i in keep])
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
        outcomes = self._outcomes(correct, protocol, decoded.units)
        encoded = train_feats.encoded + val_feats.encoded
        return Evaluation(
            metrics, val.meta.split, len(keep), encoded, extra, outcomes, skipped_images=decoded.skipped
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


def _check_shots(protocol: dict[str, Any]) -> None:
    if not protocol["shots"] or any(k < 1 for k in protocol["shots"]) or not protocol["seeds"]:
        raise UserError(
            f"shots/seeds: expected positive shot counts and at least one seed, got "
            f"{protocol['shots']} / {protocol['seeds']}"
        )


def _check_same_classes(train: ClassMeta, val: ClassMeta) -> None:
    """The probe's labels are class indices: both splits must list the same classes in the same order."""
    names = [[d.name for d in m.class_dirs] or m.classnames for m in (train, val)]
    if names[0] != names[1]:
        only = [sorted(set(a) - set(b)) for a, b in (names, names[::-1])]
        raise UserError(
            f"{train.root}: {train.split} and {val.split} have different class folders ({train.split} only: "
            f"{listed(only[0]) or '-'}; {val.split} only: {listed(only[1]) or '-'}); a probe's labels would not "
            f"match"
        )


def _draw_and_encode_shots(
    encoder: Encoder,
    train: ClassificationData,
    protocol: dict[str, Any],
    settings: EncodeSettings,
    skip_bad_images: bool,
) -> tuple[dict[int, list[list[int]]], list[int], Features, dict[int, str]]:
    """Each seed's shots (train indices per class), the images they use (sorted), those images' features, and
    ``{train index: why}`` of the drawn images that do not decode. With ``skip_bad_images`` a bad image leaves
    the pool and the shots are drawn again from the rest, exactly as from a copy of the data without it."""
    import torch

    from benchmarks.features import Features, encode_images

    num_classes, k_max = len(train.meta.classnames), max(protocol["shots"])
    alive = list(range(len(train.refs)))
    features: dict[int, torch.Tensor] = {}
    bad: dict[int, str] = {}
    from_cache, encoded = True, 0
    while True:
        pool = ClassificationData(
            train.meta, [train.refs[i] for i in alive], [train.labels[i] for i in alive]
        )
        _check_enough(pool, k_max, left_out=len(train.refs) - len(alive))
        shots = {
            seed: [[alive[j] for j in idx] for idx in sample_shots(pool.labels, num_classes, k_max, seed)]
            for seed in protocol["seeds"]
        }
        chosen = sorted({i for per_class in shots.values() for idx in per_class for i in idx})
        new = [i for i in chosen if i not in features]
        got = encode_images(
            encoder, [train.refs[i] for i in new], train.meta.root, settings, desc="shots", allow_bad=True
        )
        from_cache, encoded = from_cache and got.from_cache, encoded + got.encoded
        features |= {i: got.tensor[j] for j, i in enumerate(new) if j not in got.bad}
        found = {new[j]: why for j, why in got.bad.items()}
        bad |= found
        if not found or not skip_bad_images:
            break
        alive = [i for i in alive if i not in found]
    dim = next(iter(features.values())).shape if features else (0,)
    missing = torch.full(dim, float("nan"))  # a bad image's row (its run stops unless skipping)
    tensor = torch.stack([features.get(i, missing) for i in chosen])
    return shots, chosen, Features(tensor, from_cache, encoded), bad


def _check_enough(train: ClassificationData, k: int, left_out: int = 0) -> None:
    """Every class of ``train`` has at least ``k`` images; ``left_out``: the undecodable images already removed
    from it (--skip-bad-images), which the message names as the cause."""
    counts = np.bincount(np.asarray(train.labels), minlength=len(train.meta.classnames))
    short = [i for i, n in enumerate(counts) if n < k]
    if short:
        name = train.meta.classnames[short[0]]
        after = f" (after leaving out {left_out} undecodable images)" if left_out else ""
        raise UserError(
            f"{train.meta.root / train.meta.split}: class {name!r} has {counts[short[0]]} images{after}, "
            f"fewer than the {k} shots asked for ({len(short)} such classes); lower --shots"
        )


register(FewShotLinearProbe())
