"""Class names with synonyms and prompt templates -> normalised text embeddings for dense zero-shot prediction.

Convention (SCLIP / ClearCLIP): every synonym of a class is its own *query*; a query's embedding is the mean of
its L2-normalised template embeddings, re-normalised. A pixel's class score is the maximum over that class's
queries (applied to the logits or, equivalently for ranking, to the softmax probabilities over all queries).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from adapters.encoder import Encoder
from silc.errors import UserError

BUILTIN_TEMPLATES = ("openai80", "simple7", "identity")


@dataclass(frozen=True)
class Templates:
    """Prompt templates (each holds ``{}`` where the class name goes) and where they came from."""

    name: str
    texts: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """Hash of the template strings (order matters), for result provenance."""
        return hashlib.sha256(json.dumps(list(self.texts)).encode()).hexdigest()

    def describe(self) -> dict[str, object]:
        """``{name, count, sha256}`` as stored in result records."""
        return {"name": self.name, "count": len(self.texts), "sha256": self.sha256}


def resolve_templates(spec: str | Sequence[str]) -> Templates:
    """``openai80`` / ``simple7`` (open_clip's ImageNet lists), ``identity`` (the bare name), a file with one
    template per line, or a list of template strings."""
    if not isinstance(spec, str):
        return _checked("<list>", tuple(spec))
    if spec in ("openai80", "simple7"):
        from open_clip import zero_shot_metadata as meta

        fns = meta.OPENAI_IMAGENET_TEMPLATES if spec == "openai80" else meta.SIMPLE_IMAGENET_TEMPLATES
        return Templates(spec, tuple(fn("{}") for fn in fns))
    if spec == "identity":
        return Templates(spec, ("{}",))
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"templates {spec!r}: expected one of {', '.join(BUILTIN_TEMPLATES)} or a text file of templates"
        )
    lines = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return _checked(str(path), lines)


def _checked(name: str, texts: tuple[str, ...]) -> Templates:
    if not texts:
        raise UserError(f"templates {name}: no templates found")
    bad = [t for t in texts if "{}" not in t]
    if bad:
        raise UserError(f"templates {name}: every template needs a '{{}}' for the class name, got {bad[0]!r}")
    return Templates(name, texts)


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


TextEmbedder = Callable[[list[str]], torch.Tensor]


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
    """``([Q, D] normalised query embeddings, [Q] class index of each query)`` for synonym lists ``classes``."""
    queries = [(c, name) for c, synonyms in enumerate(classes) for name in synonyms]
    texts = [t.replace("{}", name) for _, name in queries for t in templates.texts]
    per_text = embed_texts(texts).float().view(len(queries), len(templates.texts), -1)
    embeddings = F.normalize(F.normalize(per_text, dim=-1).mean(dim=1), dim=-1)
    owner = torch.tensor([c for c, _ in queries], dtype=torch.long)
    return embeddings, owner
