"""Model adapters: the Encoder contract and its implementations, plus glue for clip_benchmark/mmseg/mmdet."""

from adapters.encoder import DENSE_MODES, Encoder, weights_fingerprint

__all__ = ["DENSE_MODES", "Encoder", "weights_fingerprint"]
