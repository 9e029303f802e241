"""The model's eval preprocessing config, in open_clip's form."""

from __future__ import annotations

from open_clip.transform import PreprocessCfg, merge_preprocess_dict
from torch import nn


def preprocess_cfg_for(model: nn.Module, overlay: dict | None = None) -> dict:
    """open_clip's eval preprocessing config: defaults, then ``overlay`` (a config file's preprocess_cfg), model size."""
    cfg = merge_preprocess_dict(PreprocessCfg(), overlay or {})
    cfg["size"] = model.visual.image_size
    # JSON gives lists where open_clip's defaults are tuples: one form, so the recorded transform is the same text.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
