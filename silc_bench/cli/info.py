"""``silc-bench info SPEC``: load a model spec and print what the Encoder contract knows about it."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench info``."""
    parser.description = "Load a model spec and print its Encoder properties."
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="[ALIAS=]openclip:<model or config.json>[@<weights>], or a SiLC checkpoint/run dir",
    )
    parser.add_argument("--device", default="cpu", help="torch device to load the model on (default: cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the encoder and print one ``key: value`` line per property."""
    from adapters import load_encoder

    encoder = load_encoder(args.spec, device=args.device)
    state_dict = encoder.state_dict_for_fingerprint()
    dense_modes = encoder.dense_modes
    rows = [
        ("name", encoder.name),
        ("spec", encoder.spec),
        ("embed dim", encoder.embed_dim),
        ("image size", encoder.image_size),
        ("patch size", encoder.patch_size if encoder.patch_size is not None else "none"),
        ("mean", ", ".join(f"{m:.8g}" for m in encoder.mean)),
        ("std", ", ".join(f"{s:.8g}" for s in encoder.std)),
        ("logit scale", f"{encoder.logit_scale:.6g}"),
        ("dense modes", ", ".join(dense_modes) if dense_modes else "none"),
        ("parameters", f"{sum(t.numel() for t in state_dict.values()):,}"),
        ("fingerprint", f"sha256:{encoder.fingerprint}"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return 0
