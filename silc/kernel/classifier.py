"""Class embeddings from prompt templates, with the semantics of ``open_clip.build_zero_shot_classifier``: a class's
embedding is the mean of the L2-normalised embeddings of its prompts, renormalised.

The kernel knows no Encoder: texts are embedded by a callable (``texts -> [N, D]``), so a caller can tokenize and
encode with any model, or read cached text features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from silc.kernel.templates import Templates

TextEmbedder = Callable[[list[str]], torch.Tensor]


def class_prompts(classnames: Sequence[str], templates: Templates) -> list[str]:
    """Every prompt, class-major: the templates of ``classnames[0]`` in template order, then the next class..."""
    return [prompt for name in classnames for prompt in templates.fill(name)]


def pool_class_embeddings(
    text_embeddings: torch.Tensor, num_classes: int, *, normalize_texts: bool = True
) -> torch.Tensor:
    """``[C*T, D]`` class-major prompt embeddings -> ``[C, D]`` class embeddings (float32): the mean over each
    class's T prompts of their L2-normalised embeddings, renormalised.

    ``normalize_texts=False`` skips normalising the prompt embeddings, for inputs that are normalised already
    (renormalising a unit vector can change its last bits, so each caller keeps the operations it always had).
    """
    per_class = text_embeddings.float().reshape(num_classes, -1, text_embeddings.shape[-1])
    if normalize_texts:
        per_class = F.normalize(per_class, dim=-1)
    return F.normalize(per_class.mean(dim=1), dim=-1)


@torch.no_grad()
def build_class_embeddings(
    embed_texts: TextEmbedder,
    classnames: Sequence[str],
    templates: Templates,
    *,
    classes_per_batch: int | None = None,
    normalize_texts: bool = True,
) -> torch.Tensor:
    """``[C, D]`` class embeddings of ``classnames`` under ``templates`` (see :func:`pool_class_embeddings`).

    The prompts of ``classes_per_batch`` classes go to ``embed_texts`` in one call (all classes in one call when
    None), as ``open_clip.build_zero_shot_classifier``'s ``num_classes_per_batch``; the result is open_clip's
    classifier transposed (``[C, D]`` rather than ``[D, C]``).
    """
    if not classnames:
        raise ValueError("class embeddings need at least one class name")
    step = classes_per_batch or len(classnames)
    rows = []
    for start in range(0, len(classnames), step):
        batch = list(classnames[start : start + step])
        texts = class_prompts(batch, templates)
        rows.append(pool_class_embeddings(embed_texts(texts), len(batch), normalize_texts=normalize_texts))
    return rows[0] if len(rows) == 1 else torch.cat(rows)
