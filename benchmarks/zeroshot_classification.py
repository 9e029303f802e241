"""Zero-shot classification (benchmark ``zeroshot-cls``): acc1, acc5 and mean per-class recall as clip_benchmark.

Classifier = for each class, the mean of the normalised embeddings of its prompts (templates with ``{c}`` replaced
by the class name), renormalised; logits = 100 * normalised image features @ classifier.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from adapters.encoder import Encoder
from benchmarks.features import PRECISIONS, encode_images, encode_texts, pin_encoding, settings_from_options
from benchmarks.metrics import mean_per_class_recall, per_class_recall, topk_accuracy, zero_shot_classifier
from benchmarks.readers.classification import TEMPLATE_CHOICES, read_class_meta, read_classification
from benchmarks.registry import Evaluation, Harness, register

LOGIT_SCALE = 100.0  # clip_benchmark's fixed scale (does not change any metric, kept for identical logits)


class ZeroShotClassification(Harness):
    name = "zeroshot-cls"
    description = "zero-shot classification: acc1, acc5, mean per-class recall (clip_benchmark definitions)"
    default_protocol = "default"
    protocols = {
        "default": {
            "split": "val",
            "templates": "dataset",  # templates.txt / zeroshot_classification_templates.txt, else OpenAI 80
            "classifier": "mean-normalised-template-embeddings",
            "top_k": [1, 5],
            "transform": "model-eval",
            "precision": "auto",  # fp32 on CPU, amp-fp16 on CUDA
        },
        "openai-templates": {
            "split": "val",
            "templates": "openai",
            "classifier": "mean-normalised-template-embeddings",
            "top_k": [1, 5],
            "transform": "model-eval",
            "precision": "auto",
        },
    }

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--split", help="dataset split folder (protocol default: val)")
        parser.add_argument("--templates", choices=TEMPLATE_CHOICES, help="prompt source (protocol knob)")
        parser.add_argument("--precision", choices=PRECISIONS, help="fp32 or autocast (protocol knob)")

    def protocol_overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"split": args.split, "templates": args.templates, "precision": args.precision}

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        meta = read_class_meta(data_root, protocol["split"], protocol["templates"])
        return {**pin_encoding(protocol, encoder), **meta.pinned()}

    def preflight(self, data_root: Path) -> list[str]:
        if not data_root.is_dir():
            return [f"{data_root}: folder does not exist; expected val/<class>/<image> + classnames.txt"]
        return []

    def evaluate(
        self, encoder: Encoder, data_root: Path, protocol: dict[str, Any], options: dict[str, Any]
    ) -> Evaluation:
        protocol = self.pin_protocol(protocol, encoder, data_root)
        data = read_classification(data_root, protocol["split"], protocol["templates"])
        settings = settings_from_options(options, protocol["precision"])
        classnames, templates = data.meta.classnames, data.meta.templates
        prompts = [t.format(c=name) for name in classnames for t in templates]
        text = encode_texts(encoder, prompts, settings, desc="prompts")
        classifier = zero_shot_classifier(text.tensor, len(classnames))
        images = encode_images(encoder, data.refs, data_root, settings, desc=f"{self.name} {data.meta.split}")
        logits = LOGIT_SCALE * images.tensor @ classifier
        target = torch.tensor(data.labels)
        acc = topk_accuracy(logits, target, protocol["top_k"])
        pred = logits.argmax(dim=1)
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
        return Evaluation(metrics, data.meta.split, len(data.refs), images.encoded, extra)


register(ZeroShotClassification())
