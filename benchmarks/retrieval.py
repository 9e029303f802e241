"""Image-text retrieval (benchmark ``retrieval``) on Karpathy-split caption JSON, recall@k as clip_benchmark.

``image_retrieval_recall@k`` (text -> image): fraction of captions whose image is among the k most similar
images. ``text_retrieval_recall@k`` (image -> text): fraction of images with at least one of their captions among
the k most similar captions. Every caption of every image of the split is used.

Intervals resample the queries, not the gallery: the unit is an image with its captions (a drawn image brings all
its captions as text queries and itself as an image query), and each query keeps the hit it has against the full
test set (ranks are not recomputed within a resample, which would change what the metric measures).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.identity import FLICKR30K_CAPTIONS, FLICKR30K_FILE, FLICKR30K_TEST_IMAGES, PublicDataset
from benchmarks.options import DECODE_HELP, DECODES, DEFAULT_DECODE, HarnessOptions, option
from benchmarks.readers.karpathy import entry_fields, find_annotation_file, load, read_karpathy
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError
from silc.kernel.precision import CHOICES as PRECISIONS

if TYPE_CHECKING:
    import numpy as np
    import torch

    from adapters.encoder import Encoder
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes


@dataclass
class RetrievalOptions(HarnessOptions):
    """Options of ``retrieval``."""

    split: str | None = option(None, "Karpathy split (protocol default: test)", knob=True)
    recall_k: list[int] | None = option(None, "k values for recall@k", knob=True)
    precision: str | None = option(None, "fp32 or autocast", knob=True, choices=PRECISIONS)
    decode: str | None = option(None, DECODE_HELP, knob=True, choices=DECODES)
    image_dir: str | None = option(None, "folder holding the images (default: found under --data)")


def flickr30k_differences(root: Path, protocol: dict[str, Any]) -> list[str]:
    """How ``root`` differs from the Flickr30k Karpathy test split, from its JSON alone: the file
    (``dataset_flickr30k.json`` saying ``dataset: flickr30k``), the split, 1,000 images with 5 captions each."""
    ann = find_annotation_file(root)
    obj = load(ann)
    entries = [entry_fields(ann, i, e) for i, e in enumerate(obj["images"])]  # schema errors: UserErrors
    out = [] if ann.name == FLICKR30K_FILE else [f"caption file {ann.name} (expected {FLICKR30K_FILE})"]
    dataset = obj.get("dataset")
    if dataset != "flickr30k":
        out.append(f"its 'dataset' is {dataset!r} (expected 'flickr30k')")
    split = protocol["split"]
    if split != "test":
        out.append(f"split {split!r} (expected test)")
    captions = [len(raws) for _, s, raws, _ in entries if s == split]
    if len(captions) != FLICKR30K_TEST_IMAGES:
        out.append(f"{len(captions):,} {split} images (expected {FLICKR30K_TEST_IMAGES:,})")
    other = sum(n != FLICKR30K_CAPTIONS for n in captions)
    if other:
        out.append(f"{other:,} of them without exactly {FLICKR30K_CAPTIONS} captions")
    return out


class Retrieval(Harness):
    name = "retrieval"
    description = "image-text retrieval: recall@1/5/10 both directions (clip_benchmark hit@k)"
    default_protocol = "karpathy-test"
    options_type = RetrievalOptions
    key_metrics = ("image_retrieval_recall@1", "text_retrieval_recall@1")
    table_order = 20
    metric_scale = "fraction"
    public_datasets = {"flickr30k": PublicDataset("Flickr30k (Karpathy test)", flickr30k_differences)}
    protocols = {
        "karpathy-test": {
            "split": "test",
            "captions": "all-raw",  # every sentences[].raw of each image
            "recall_k": [1, 5, 10],
            "transform": "model-eval",
            "precision": "auto",
            "decode": "pil",  # recorded only when not pil (benchmarks/decode.py)
        },
    }

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        from benchmarks.features import pin_encoding

        if any(k < 1 for k in protocol["recall_k"]):
            raise UserError(f"recall_k: expected positive integers, got {protocol['recall_k']}")
        ann = find_annotation_file(data_root)
        digest = hashlib.sha256(ann.read_bytes()).hexdigest()
        return {**pin_encoding(protocol, encoder), "annotations": ann.name, "annotations_sha256": digest}

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """The Karpathy JSON's schema, the split's images on disk, the recall k values."""
        problems = []
        if any(k < 1 for k in protocol["recall_k"]):
            problems.append(f"recall_k: expected positive integers, got {protocol['recall_k']}")
        try:
            read_karpathy(data_root, protocol["split"], image_dir=options.image_dir)
        except UserError as e:
            problems.append(str(e))
        return problems

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: RetrievalOptions,
        artefacts: Path,
    ) -> Evaluation:
        import torch

        from benchmarks.features import decoded_rows, encode_images, encode_texts, settings_from_options
        from benchmarks.metrics import recall_from_hits, retrieval_hits

        protocol = self.pin_protocol(protocol, encoder, data_root)
        data = read_karpathy(data_root, protocol["split"], image_dir=options.image_dir)
        if not any(data.captions):
            raise UserError(f"{data.annotation_file}: the {data.split!r} images have no captions")
        settings = settings_from_options(
            options, protocol["precision"], decode=protocol.get("decode", DEFAULT_DECODE)
        )
        images = encode_images(
            encoder, data.refs, data.root, settings, desc=f"{self.name} {data.split}", allow_bad=True
        )
        decoded = decoded_rows(images, data.refs, data.root, options.skip_bad_images)
        keep = decoded.rows  # an image that does not decode is out with its captions
        captions = [data.captions[i] for i in keep]
        texts = [c for caps in captions for c in caps]
        if not texts:
            raise UserError(f"{data.annotation_file}: the {data.split!r} images that decode have no captions")
        text_image = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
        text = encode_texts(encoder, texts, settings, desc="captions")
        hits = retrieval_hits(images.tensor[keep], text.tensor, text_image, protocol["recall_k"])
        metrics = recall_from_hits(*hits, protocol["recall_k"])
        outcomes = self._outcomes(*hits, text_image, protocol["recall_k"], decoded.units)
        extra = {
            "annotation_file": str(data.annotation_file.resolve()),
            "num_captions": len(texts),
            "image_features_from_cache": images.from_cache,
            "text_features_from_cache": text.from_cache,
        }
        return Evaluation(
            metrics, data.split, len(keep), images.encoded, extra, outcomes, skipped_images=decoded.skipped
        )

    @staticmethod
    def _outcomes(
        img_hits: dict[int, torch.Tensor],
        txt_hits: dict[int, torch.Tensor],
        text_image: torch.Tensor,
        ks: list[int],
        units: list[str],
    ) -> Outcomes:
        """Per caption: its image and whether that image is in its top k (text -> image, one column per k); per
        image: whether one of its captions is in its top k (image -> text). The hits are the metric's own."""
        import numpy as np

        from benchmarks.uncertainty import Outcomes

        arrays = {
            "recall_k": np.asarray(ks, dtype=np.int32),
            "caption_image": text_image.numpy().astype(np.int32),
            "caption_hits": np.stack([img_hits[k].numpy() for k in ks], axis=1),
            "image_hits": np.stack([txt_hits[k].numpy() for k in ks], axis=1),
        }
        return Outcomes("image with its captions", units, arrays)

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """image_retrieval_recall@k = weighted caption hits / weighted captions (a caption weighs its image's
        count); text_retrieval_recall@k = weighted image hits / weighted images. Queries are resampled, the
        ranks are those against the full test set. Integer sums in float64, divided, then rounded to float32
        as the metric's float32 mean is (exact: float64 division rounded to float32 is float32 division)."""
        import numpy as np

        weights = counts.astype(np.float64)
        n_img = counts.shape[1]
        owner = arrays["caption_image"].astype(np.intp)
        captions = np.bincount(owner, minlength=n_img).astype(np.float64)  # captions per image
        caption_total = weights @ captions
        image_total = weights.sum(axis=1)
        out: dict[str, np.ndarray] = {}
        for j, k in enumerate(arrays["recall_k"].tolist()):
            per_image = np.bincount(owner, weights=arrays["caption_hits"][:, j], minlength=n_img)
            with np.errstate(invalid="ignore"):  # a resample of caption-less images only: undefined (NaN)
                image_q = (weights @ per_image) / caption_total
            text_q = (weights @ arrays["image_hits"][:, j].astype(np.float64)) / image_total
            out[f"image_retrieval_recall@{k}"] = image_q.astype(np.float32).astype(np.float64)
            out[f"text_retrieval_recall@{k}"] = text_q.astype(np.float32).astype(np.float64)
        return out

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """Random rankings over the N images and M captions of the outcomes: text -> image recall@k = min(k, N)/N;
        image -> text recall@k = the mean over images of 1 - C(M - m, k)/C(M, k), the chance that some of the
        image's m captions are among k drawn from all M without replacement."""
        import numpy as np

        if outcomes is None:
            return {}
        n_img = len(outcomes.units)
        per_image = np.bincount(outcomes.arrays["caption_image"], minlength=n_img).tolist()
        n_txt = sum(per_image)
        out: dict[str, float] = {}
        for k in outcomes.arrays["recall_k"].tolist():
            drawn = min(k, n_txt)
            miss = {m: math.comb(n_txt - m, drawn) / math.comb(n_txt, drawn) for m in set(per_image)}
            out[f"image_retrieval_recall@{k}"] = min(k, n_img) / n_img
            out[f"text_retrieval_recall@{k}"] = 1.0 - math.fsum(miss[m] for m in per_image) / n_img
        return out


register(Retrieval())
