"""The bundled reference checkpoints (a tiny CLIP and a tiny SiLC) that ``silc-bench run`` evaluates by default."""

from __future__ import annotations

from pathlib import Path

from silc.errors import UserError

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
REFERENCE_ALIASES = ("clip", "silc")


def reference_specs() -> list[str]:
    """Encoder specs of the bundled reference checkpoints (``clip=...``, ``silc=...``)."""
    specs = []
    for alias in REFERENCE_ALIASES:
        cfg, weights = (
            REFERENCE_DIR / alias / "open_clip_config.json",
            REFERENCE_DIR / alias / "model.safetensors",
        )
        if not (cfg.is_file() and weights.is_file()):
            raise UserError(
                f"{REFERENCE_DIR / alias}: bundled reference checkpoint missing (open_clip_config.json + "
                f"model.safetensors); see {REFERENCE_DIR / 'README.md'} or pass --model"
            )
        specs.append(f"{alias}=openclip:{cfg}@{weights}")
    return specs
