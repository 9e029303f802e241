"""Model adapters: the Encoder contract and its implementations, plus glue for clip_benchmark/mmseg/mmdet."""

from adapters.encoder import DENSE_MODES, Encoder, weights_fingerprint
from adapters.loading import load_encoder, parse_spec

__all__ = ["DENSE_MODES", "Encoder", "load_encoder", "parse_spec", "weights_fingerprint"]
