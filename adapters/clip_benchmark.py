"""clip_benchmark glue: a ``load_clip``-style loader for any model SPEC, and model type ``silc`` registration.

clip_benchmark's loaders return ``(model, transform, tokenizer)``: a module with ``encode_image``/``encode_text``,
the eval transform (PIL -> tensor) and a callable turning a list of strings into token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from adapters.encoder import Encoder

MODEL_TYPE = "silc"


class EncoderModule(nn.Module):
    """An Encoder seen as a CLIP-like module (``encode_image``/``encode_text``), as clip_benchmark calls it."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        inner = getattr(encoder, "model", None)
        if isinstance(inner, nn.Module):
            self.model = inner  # so .eval()/.to() reach the weights

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_image(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_text(tokens)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_text(tokens)


class EncoderTokenizer:
    """``tokenizer(texts) -> LongTensor``, the Encoder's tokenizer in clip_benchmark's calling convention."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        return self.encoder.tokenize([texts] if isinstance(texts, str) else list(texts))


def wrap_encoder(encoder: Encoder) -> tuple[EncoderModule, object, EncoderTokenizer]:
    """``(model, transform, tokenizer)`` for an already-loaded Encoder."""
    return EncoderModule(encoder).eval(), encoder.preprocess, EncoderTokenizer(encoder)


def load_silc(
    model_name: str,
    pretrained: str | None = None,
    cache_dir: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[EncoderModule, object, EncoderTokenizer]:
    """clip_benchmark loader for ``--model_type silc``: ``model_name`` is a silc-bench model SPEC.

    ``pretrained`` is used only when it names an existing file and the SPEC is ``openclip:<model>`` without
    ``@weights`` (clip_benchmark always passes one, defaulting to a download tag, which is ignored).
    """
    from adapters.loading import load_encoder

    spec = model_name
    if pretrained and Path(pretrained).is_file() and spec.startswith("openclip:") and "@" not in spec:
        spec = f"{spec}@{pretrained}"
    return wrap_encoder(load_encoder(spec, device=device))


def register_model_type() -> None:
    """Add model type ``silc`` to clip_benchmark's registry (``TYPE2FUNC`` and the CLI's ``MODEL_TYPES``)."""
    from clip_benchmark import models

    models.TYPE2FUNC[MODEL_TYPE] = load_silc
    if MODEL_TYPE not in models.MODEL_TYPES:
        models.MODEL_TYPES.append(MODEL_TYPE)
