"""Image-text retrieval (benchmark ``retrieval``) on Karpathy-split caption JSON, recall@k as clip_benchmark.

``image_retrieval_recall@k`` (text -> image): fraction of captions whose image is among the k most similar
images. ``text_retrieval_recall@k`` (image -> text): fraction of images with at least one of their captions among
the k most similar captions. Every caption of every image of the split is used.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import torch

from adapters.encoder import Encoder
from benchmarks.features import PRECISIONS, encode_images, encode_texts, pin_encoding, settings_from_options
from benchmarks.metrics import retrieval_recall
from benchmarks.readers.karpathy import find_annotation_file, read_karpathy
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError


class Retrieval(Harness):
    name = "retrieval"
    description = "image-text retrieval: recall@1/5/10 both directions (clip_benchmark hit@k)"
    default_protocol = "karpathy-test"
    protocols = {
        "karpathy-test": {
            "split": "test",
            "captions": "all-raw",  # every sentences[].raw of each image
            "recall_k": [1, 5, 10],
            "transform": "model-eval",
            "precision": "auto",
        },
    }

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--split", help="Karpathy split (protocol default: test)")
        parser.add_argument("--recall-k", type=int, nargs="+", help="k values for recall@k (protocol knob)")
        parser.add_argument("--precision", choices=PRECISIONS, help="fp32 or autocast (protocol knob)")
        parser.add_argument("--image-dir", help="folder holding the images (default: found under --data)")

    def protocol_overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"split": args.split, "recall_k": args.recall_k, "precision": args.precision}

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        if any(k < 1 for k in protocol["recall_k"]):
            raise UserError(f"recall_k: expected positive integers, got {protocol['recall_k']}")
        ann = find_annotation_file(data_root)
        digest = hashlib.sha256(ann.read_bytes()).hexdigest()
        return {**pin_encoding(protocol, encoder), "annotations": ann.name, "annotations_sha256": digest}

    def evaluate(
        self, encoder: Encoder, data_root: Path, protocol: dict[str, Any], options: dict[str, Any]
    ) -> Evaluation:
        protocol = self.pin_protocol(protocol, encoder, data_root)
        data = read_karpathy(data_root, protocol["split"], image_dir=options.get("image_dir"))
        texts = [c for caps in data.captions for c in caps]
        if not texts:
            raise UserError(f"{data.annotation_file}: the {data.split!r} images have no captions")
        text_image = torch.tensor([i for i, caps in enumerate(data.captions) for _ in caps])
        settings = settings_from_options(options, protocol["precision"])
        images = encode_images(encoder, data.refs, data.root, settings, desc=f"{self.name} {data.split}")
        text = encode_texts(encoder, texts, settings, desc="captions")
        metrics = retrieval_recall(images.tensor, text.tensor, text_image, protocol["recall_k"])
        extra = {
            "annotation_file": str(data.annotation_file.resolve()),
            "num_captions": len(texts),
            "image_features_from_cache": images.from_cache,
            "text_features_from_cache": text.from_cache,
        }
        return Evaluation(metrics, data.split, len(data.refs), images.encoded, extra)


register(Retrieval())
