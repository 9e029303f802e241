"""Class names with synonyms and prompt templates -> normalised text embeddings for dense zero-shot prediction.

Convention (SCLIP / ClearCLIP): every synonym of a class is its own *query*; a query's embedding is the mean of
its L2-normalised template embeddings, re-normalised. A pixel's class score is the maximum over that class's
queries (applied to the logits or, equivalently for ranking, to the softmax probabilities over all queries).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from adapters.encoder import Encoder
from silc.errors import UserError
from silc.kernel import Templates, TextEmbedder, build_class_embeddings


def read_names_file(path: str | Path) -> list[list[str]]:
    """One class per line, its synonyms separated by commas (the first is the class's display name)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read class names file ({e.strerror})") from e
    classes = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        synonyms = [s.strip() for s in line.split(",") if s.strip()]
        if not synonyms:
            raise UserError(f"{path}:{number}: expected comma-separated class names")
        classes.append(synonyms)
    if not classes:
        raise UserError(f"{path}: no class names found")
    return classes


def as_synonym_lists(names: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Normalise a list of names (a name may be a list of synonyms) to stripped synonym lists."""
    out = []
    for entry in names:
        synonyms = [entry] if isinstance(entry, str) else list(entry)
        synonyms = [s.strip() for s in synonyms if s.strip()]
        if not synonyms:
            raise UserError(f"class names: empty class entry {entry!r}")
        out.append(synonyms)
    return out


def names_sha256(classes: Sequence[Sequence[str]]) -> str:
    """Hash of the class/synonym lists as used for prompting, for result provenance."""
    return hashlib.sha256(json.dumps([list(c) for c in classes]).encode()).hexdigest()


def encoder_text_embedder(encoder: Encoder, batch_size: int = 256) -> TextEmbedder:
    """Texts -> ``[N, D]`` embeddings with ``encoder.tokenize`` / ``encode_text``, in batches."""

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        chunks = [
            encoder.encode_text(encoder.tokenize(texts[i : i + batch_size]).to(encoder.device)).float().cpu()
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(chunks)

    return embed


def query_embeddings(
    classes: Sequence[Sequence[str]], templates: Templates, embed_texts: TextEmbedder
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([Q, D] normalised query embeddings, [Q] class index of each query)`` for synonym lists ``classes``:
    every synonym is a query, embedded by the kernel's class-embedding builder (all prompts in one call)."""
    queries = [(c, name) for c, synonyms in enumerate(classes) for name in synonyms]
    embeddings = build_class_embeddings(embed_texts, [name for _, name in queries], templates)
    owner = torch.tensor([c for c, _ in queries], dtype=torch.long)
    return embeddings, owner
