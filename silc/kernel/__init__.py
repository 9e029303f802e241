"""The one open_clip kernel: everything the trainer and the encoders both need to build and run an open_clip model.

Both sides call these functions, so a model is built, tokenized and run the same way in training and evaluation:

- :mod:`silc.kernel.configs`: resolve a model config from a name, a bundled name, a JSON file or a dict.
- :mod:`silc.kernel.build`: instantiate the open_clip model class a config asks for; load weights files.
- :mod:`silc.kernel.tokenizer`: the model's tokenizer with ``open_clip.get_tokenizer``'s semantics.
- :mod:`silc.kernel.preprocess`: the model's eval preprocessing config (open_clip's defaults + overlay).
- :mod:`silc.kernel.vit`: ViT tokens for any input size (resized position embeddings, optional mask token), pooled
  output, patch outputs.
- :mod:`silc.kernel.precision`: the precision vocabulary (fp32 | bf16 | fp16, ``auto``) and autocast contexts.
- :mod:`silc.kernel.templates`: the registry of named prompt-template sets.
- :mod:`silc.kernel.classifier`: class embeddings from templates (open_clip's zero-shot classifier semantics).

The kernel imports only torch, open_clip and ``silc.errors``; it never imports ``adapters`` or ``benchmarks``.
Names are loaded from their module on first use, so a light module (templates, precision names) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "BUNDLED_CONFIGS": "configs",
    "FoundConfig": "configs",
    "PRECISIONS": "precision",
    "TEMPLATE_NAMES": "templates",
    "TEMPLATE_SETS": "templates",
    "Templates": "templates",
    "TextEmbedder": "classifier",
    "autocast": "precision",
    "build_class_embeddings": "classifier",
    "build_model": "build",
    "check_model_cfg": "configs",
    "class_prompts": "classifier",
    "deep_merge": "configs",
    "describe_mismatch": "build",
    "encode_visual": "vit",
    "encode_visual_tokens": "vit",
    "find_model_config": "configs",
    "is_template_set": "templates",
    "load_weights": "build",
    "make_tokenizer": "tokenizer",
    "normalize_precision": "precision",
    "pool_class_embeddings": "classifier",
    "position_embedding": "vit",
    "precision_dtype": "precision",
    "preprocess_cfg_for": "preprocess",
    "read_config_json": "configs",
    "resize_pos_embed": "vit",
    "resolve_model_config": "configs",
    "resolve_precision": "precision",
    "resolve_templates": "templates",
    "template_set": "templates",
    "vit_tokens": "vit",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'silc.kernel' has no attribute {name!r}")
    return getattr(importlib.import_module(f"silc.kernel.{_EXPORTS[name]}"), name)
