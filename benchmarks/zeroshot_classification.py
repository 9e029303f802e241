"""Zero-shot classification (benchmark ``zeroshot-cls``): acc1, acc5 and mean per-class recall as clip_benchmark.

Classifier = for each class, the mean of the normalised embeddings of its prompts (templates with ``{c}`` replaced
by the class name), renormalised; logits = 100 * normalised image features @ classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.identity import PublicDataset, imagenet_differences
from benchmarks.options import DECODE_HELP, DECODES, DEFAULT_DECODE, HarnessOptions, option
from benchmarks.readers.classification import TEMPLATE_CHOICES, read_class_meta, read_classification
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError
from silc.kernel.precision import CHOICES as PRECISIONS

if TYPE_CHECKING:
    import numpy as np

    from adapters.encoder import Encoder
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes

LOGIT_SCALE = 100.0  # clip_benchmark's fixed scale (does not change any metric, kept for identical logits)


@dataclass
class ZeroShotOptions(HarnessOptions):
    """Options of ``zeroshot-cls``."""

    split: str | None = option(None, "dataset split folder (protocol default: val)", knob=True)
    templates: str | None = option(None, "prompt source", knob=True, choices=TEMPLATE_CHOICES)
    precision: str | None = option(None, "fp32 or autocast", knob=True, choices=PRECISIONS)
    decode: str | None = option(None, DECODE_HELP, knob=True, choices=DECODES)


class ZeroShotClassification(Harness):
    name = "zeroshot-cls"
    description = "zero-shot classification: acc1, acc5, mean per-class recall (clip_benchmark definitions)"
    default_protocol = "default"
    options_type = ZeroShotOptions
    key_metrics = ("acc1", "acc5", "mean_per_class_recall")
    table_order = 10
    metric_scale = "fraction"
    public_datasets = {
        "imagenet-1k": PublicDataset(
            "ImageNet-1k", lambda root, p: imagenet_differences(root, {p["split"]: "val"}, p["templates"])
        )
    }
    protocols = {
        "default": {
            "split": "val",
            "templates": "dataset",  # templates.txt / zeroshot_classification_templates.txt, else OpenAI 80
            "classifier": "mean-normalised-template-embeddings",
            "top_k": [1, 5],
            "transform": "model-eval",
            "precision": "auto",  # fp32 on CPU, fp16 autocast on CUDA
            "decode": "pil",  # recorded only when not pil (benchmarks/decode.py)
        },
        "openai-templates": {
            "split": "val",
            "templates": "openai",
            "classifier": "mean-normalised-template-embeddings",
            "top_k": [1, 5],
            "transform": "model-eval",
            "precision": "auto",
            "decode": "pil",
        },
    }

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        from benchmarks.features import pin_encoding

        meta = read_class_meta(data_root, protocol["split"], protocol["templates"])
        return {**pin_encoding(protocol, encoder), **meta.pinned()}

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """The split's class folders (or shards) with their images, class names against them, the templates file."""
        if not data_root.is_dir():
            return [f"{data_root}: folder does not exist; expected val/<class>/<image> + classnames.txt"]
        try:
            read_classification(data_root, protocol["split"], protocol["templates"])
        except UserError as e:
            return [str(e)]
        return []

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: ZeroShotOptions,
        artefacts: Path,
    ) -> Evaluation:
        import torch

        from benchmarks.features import decoded_rows, encode_images, encode_texts, settings_from_options
        from benchmarks.metrics import mean_per_class_recall, per_class_recall, topk_accuracy
        from silc.kernel.classifier import class_prompts, pool_class_embeddings

        protocol = self.pin_protocol(protocol, encoder, data_root)
        data = read_classification(data_root, protocol["split"], protocol["templates"])
        settings = settings_from_options(
            options, protocol["precision"], decode=protocol.get("decode", DEFAULT_DECODE)
        )
        classnames = data.meta.classnames
        prompts = class_prompts(classnames, data.meta.template_set())
        text = encode_texts(encoder, prompts, settings, desc="prompts")
        # [D, C]: the encoded prompts are normalised already (encode_texts), so they are pooled as they are
        classifier = pool_class_embeddings(text.tensor, len(classnames), normalize_texts=False)
        classifier = classifier.t().contiguous()
        images = encode_images(
            encoder, data.refs, data_root, settings, desc=f"{self.name} {data.meta.split}", allow_bad=True
        )
        decoded = decoded_rows(images, data.refs, data_root, options.skip_bad_images)
        keep = decoded.rows
        logits = LOGIT_SCALE * images.tensor[keep] @ classifier
        target = torch.tensor([data.labels[i] for i in keep])
        acc = topk_accuracy(logits, target, protocol["top_k"])
        pred = logits.argmax(dim=1)
        outcomes = self._outcomes(logits, target, pred, protocol["top_k"], decoded.units)
        metrics: dict[str, Any] = {f"acc{k}": v for k, v in acc.items()}
        metrics["mean_per_class_recall"] = mean_per_class_recall(pred, target)
        notes = [
            f"acc{k} undefined: the dataset has {len(classnames)} classes (< {k})"
            for k, v in acc.items()
            if v is None
        ]
        recalls = per_class_recall(pred, target, len(classnames))
        extra = {
            "per_class_recall": [[name, r] for name, r in zip(classnames, recalls, strict=True)],
            "notes": notes,
            "image_features_from_cache": images.from_cache,
            "text_features_from_cache": text.from_cache,
            "num_prompts": len(prompts),
        }
        return Evaluation(
            metrics,
            data.meta.split,
            len(keep),
            images.encoded,
            extra,
            outcomes,
            skipped_images=decoded.skipped,
        )

    @staticmethod
    def _outcomes(logits, target, pred, top_k: list[int], units: list[str]) -> Outcomes:
        """Per image: its label, the top-1 prediction and whether the label is in the top k (one column per k;
        all False for a k beyond the class count, whose accuracy is undefined)."""
        import numpy as np

        from benchmarks.uncertainty import Outcomes

        valid = [k for k in top_k if k <= logits.shape[1]]
        hits = np.zeros((len(target), len(top_k)), dtype=bool)
        if valid:
            ranked = logits.topk(max(valid), dim=1, largest=True, sorted=True).indices.eq(target.view(-1, 1))
            for j, k in enumerate(top_k):
                if k in valid:
                    hits[:, j] = ranked[:, :k].any(dim=1).numpy()
        arrays = {"target": target.numpy(), "pred": pred.numpy(), "top_k": np.asarray(top_k), "hits": hits}
        arrays["num_classes"] = np.asarray(logits.shape[1])
        return Outcomes("image", units, arrays)

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """acc@k = drawn images with the label in the top k / drawn images; mean per-class recall = the mean,
        over the classes drawn at least once, of each class's drawn correct / drawn (summed in class order, as the
        metric is)."""
        import numpy as np

        weights = counts.astype(np.float64)
        total = weights.sum(axis=1)
        out: dict[str, np.ndarray] = {}
        for j, k in enumerate(arrays["top_k"].tolist()):
            defined = k <= int(arrays["num_classes"])
            out[f"acc{k}"] = (
                weights @ arrays["hits"][:, j] / total if defined else np.full(len(counts), np.nan)
            )
        target, pred = arrays["target"], arrays["pred"]
        classes = np.arange(int(arrays["num_classes"]))
        member = target[:, None] == classes[None, :]  # [n, C]
        drawn = weights @ member  # [B, C]
        correct = weights @ (member & (pred == target)[:, None])
        present = drawn > 0
        recall = np.where(present, correct / np.where(present, drawn, 1.0), 0.0)
        out["mean_per_class_recall"] = np.cumsum(recall, axis=1)[:, -1] / present.sum(axis=1)
        return out

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """A random ranking of the C classes (the pinned ``num_classes``): acc@k = k/C for each k <= C (acc@k is
        undefined beyond), mean per-class recall = 1/C."""
        num_classes = record.protocol.get("num_classes")
        if not num_classes:
            return {}
        out = {f"acc{k}": k / num_classes for k in record.protocol.get("top_k", []) if k <= num_classes}
        return {**out, "mean_per_class_recall": 1 / num_classes}


register(ZeroShotClassification())
