"""open_clip-style JSON model configs shipped with silc-bench (tiny models for the synthetic world)."""

from pathlib import Path

MODEL_CONFIG_DIR = Path(__file__).resolve().parent
