"""Image-text retrieval (benchmark ``retrieval``) on Karpathy-split caption JSON, recall@k as clip_benchmark.

``image_retrieval_recall@k`` (text -> image): fraction of captions whose image is among the k most similar
images. ``text_retrieval_recall@k`` (image -> text): fraction of images with at least one of their captions among
the k most similar captions. Every caption of every image of the split is used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.options import HarnessOptions, option
from benchmarks.readers.karpathy import find_annotation_file, read_karpathy
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError
from silc.kernel.precision import CHOICES as PRECISIONS

if TYPE_CHECKING:
    from adapters.encoder import Encoder


@dataclass
class RetrievalOptions(HarnessOptions):
    """Options of ``retrieval``."""

    split: str | None = option(None, "Karpathy split (protocol default: test)", knob=True)
    recall_k: list[int] | None = option(None, "k values for recall@k", knob=True)
    precision: str | None = option(None, "fp32 or autocast", knob=True, choices=PRECISIONS)
    image_dir: str | None = option(None, "folder holding the images (default: found under --data)")


class Retrieval(Harness):
    name = "retrieval"
    description = "image-text retrieval: recall@1/5/10 both directions (clip_benchmark hit@k)"
    default_protocol = "karpathy-test"
    options_type = RetrievalOptions
    key_metrics = ("image_retrieval_recall@1", "text_retrieval_recall@1")
    table_order = 20
    metric_scale = "fraction"
    protocols = {
        "karpathy-test": {
            "split": "test",
            "captions": "all-raw",  # every sentences[].raw of each image
            "recall_k": [1, 5, 10],
            "transform": "model-eval",
            "precision": "auto",
        },
    }

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        from benchmarks.features import pin_encoding

        if any(k < 1 for k in protocol["recall_k"]):
            raise UserError(f"recall_k: expected positive integers, got {protocol['recall_k']}")
        ann = find_annotation_file(data_root)
        digest = hashlib.sha256(ann.read_bytes()).hexdigest()
        return {**pin_encoding(protocol, encoder), "annotations": ann.name, "annotations_sha256": digest}

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: RetrievalOptions,
        artefacts: Path,
    ) -> Evaluation:
        import torch

        from benchmarks.features import encode_images, encode_texts, settings_from_options
        from benchmarks.metrics import retrieval_recall

        protocol = self.pin_protocol(protocol, encoder, data_root)
        data = read_karpathy(data_root, protocol["split"], image_dir=options.image_dir)
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
