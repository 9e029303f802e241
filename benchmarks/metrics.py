"""Classification and retrieval metrics with clip_benchmark's definitions (top-k accuracy, balanced accuracy,
CLIP-style hit@k recall), the retrieval scores computed in chunks so memory stays bounded."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int]) -> dict[int, float | None]:
    """Fraction of samples whose label is among the ``k`` highest logits (torch.topk order), per ``k``.

    ``k`` larger than the number of classes is undefined (None), as clip_benchmark reports acc5 for < 5 classes.
    """
    num_classes = logits.shape[1]
    valid = [k for k in ks if k <= num_classes]
    out: dict[int, float | None] = {k: None for k in ks}
    if not valid:
        return out
    pred = logits.topk(max(valid), dim=1, largest=True, sorted=True).indices
    hit = pred.eq(target.view(-1, 1))
    for k in valid:
        out[k] = float(hit[:, :k].sum().item()) / len(target)
    return out


def mean_per_class_recall(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over the classes present in ``target`` of the recall of each (sklearn's balanced accuracy)."""
    recalls = [(pred[target == c] == c).double().mean().item() for c in torch.unique(target).tolist()]
    return float(sum(recalls) / len(recalls))


def per_class_recall(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float | None]:
    """Recall of each class (None for classes without samples)."""
    out: list[float | None] = []
    for c in range(num_classes):
        mask = target == c
        out.append((pred[mask] == c).double().mean().item() if mask.any() else None)
    return out


def retrieval_recall(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_image: torch.Tensor,
    ks: Sequence[int],
    max_elements: int = 1 << 24,
) -> dict[str, float]:
    """CLIP-style recall@k: the fraction of queries with at least one positive among the top-k by dot product.

    ``image_retrieval_recall@k``: text queries over images; ``text_retrieval_recall@k``: image queries over texts
    (positives: the image's captions). Scores are ``text_emb @ image_emb.T`` as in clip_benchmark, computed in
    row chunks of at most ``max_elements`` entries so 5k images x 25k captions fit in little memory.
    """
    return recall_from_hits(*retrieval_hits(image_emb, text_emb, text_image, ks, max_elements), ks)


def retrieval_hits(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_image: torch.Tensor,
    ks: Sequence[int],
    max_elements: int = 1 << 24,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """The per-query hits :func:`retrieval_recall` averages: ``({k: bool [captions]}, {k: bool [images]})`` for
    text -> image and image -> text queries (one topk per k, as clip_benchmark: tie order can differ between k's,
    so a hit at k is not derived from a rank)."""
    n_img, n_txt = image_emb.shape[0], text_emb.shape[0]
    img_hits = {k: torch.zeros(n_txt, dtype=torch.bool) for k in ks}
    rows = max(1, max_elements // max(n_img, 1))
    for s in range(0, n_txt, rows):
        scores = text_emb[s : s + rows] @ image_emb.t()
        gt = text_image[s : s + rows].view(-1, 1)
        for k in ks:  # one topk per k, as clip_benchmark (tie order can differ between k's)
            img_hits[k][s : s + rows] = scores.topk(min(k, n_img), dim=1).indices.eq(gt).any(dim=1)
    txt_hits = {k: torch.zeros(n_img, dtype=torch.bool) for k in ks}
    cols = max(1, max_elements // max(n_txt, 1))
    for s in range(0, n_img, cols):
        scores = (text_emb @ image_emb[s : s + cols].t()).t()
        own = torch.arange(s, min(s + cols, n_img)).view(-1, 1)
        for k in ks:
            top = scores.topk(min(k, n_txt), dim=1).indices
            txt_hits[k][s : s + cols] = text_image[top].eq(own).any(dim=1)
    return img_hits, txt_hits


def recall_from_hits(
    img_hits: dict[int, torch.Tensor], txt_hits: dict[int, torch.Tensor], ks: Sequence[int]
) -> dict[str, float]:
    """recall@k from :func:`retrieval_hits`: the float32 mean of each query's hit (as clip_benchmark)."""
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"image_retrieval_recall@{k}"] = img_hits[k].float().mean().item()
        metrics[f"text_retrieval_recall@{k}"] = txt_hits[k].float().mean().item()
    return metrics
