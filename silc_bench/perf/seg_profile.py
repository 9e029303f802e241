"""Where the wall time of a seg-ade20k evaluation goes: the encoder's dense forwards against everything else.

    python -m silc_bench.perf.seg_profile --world DIR --model SPEC [--protocol ade-448] [--templates NAME]
        [--batch-size 64] [--workers N] [--repeats 2] [--device cpu] [--cache-dir DIR]

Runs the harness's ``evaluate`` (what ``silc-bench eval seg-ade20k`` runs, minus loading the model and writing the
record) ``--repeats`` times with the encoder's ``encode_dense`` wrapped in a timer, and prints per run: the seconds
inside ``encode_dense`` as a share of the evaluation's wall time and of mmengine's test loop, the windows per
forward (more than one image's windows: batched across images), and images/s. The prompt embeddings go through a
feature cache (a temporary one unless ``--cache-dir``), so the first run embeds them and later runs read them, as
a user's second evaluation would. ``--world`` is the folder holding ``ADEChallengeData2016/`` (or that folder);
one with its own ``classnames.txt`` runs protocol ``synth`` with the named protocol's short side, crop and stride
(the README's way to run the ade-448 recipe on such a folder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from silc.errors import UserError

RECIPE_KNOBS = ("short_side", "crop", "stride")


@dataclass
class DenseTimer:
    """``encoder.encode_dense`` wrapped: the windows and seconds of every call (CUDA synchronised)."""

    encoder: Any
    calls: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        inner = self.encoder.encode_dense

        def timed(images: torch.Tensor, mode: str = "naive") -> torch.Tensor:
            start = time.perf_counter()
            out = inner(images, mode)
            if out.is_cuda:
                torch.cuda.synchronize(out.device)
            self.calls.append((len(images), time.perf_counter() - start))
            return out

        self.encoder.encode_dense = timed


def protocol_for(harness, name: str, root: Path, knobs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The protocol ``name`` with ``knobs``, or on a folder with its own vocabulary ``synth`` with ``name``'s
    recipe knobs and ``knobs``."""
    from benchmarks.seg_dataset import ade_root, own_vocabulary
    from benchmarks.seg_protocols import PROTOCOLS

    protocol = harness.resolve_protocol(name, knobs)
    if protocol["dataset"] == "ADE20KDataset" and own_vocabulary(ade_root(root)) is not None:
        recipe = {k: PROTOCOLS[name][k] for k in RECIPE_KNOBS}
        return "synth", harness.resolve_protocol("synth", {**recipe, **knobs})
    return name, protocol


def profile_run(harness, encoder, timer: DenseTimer, root: Path, protocol: dict, options) -> dict[str, Any]:
    """One ``evaluate``: wall seconds, encoder seconds and share, windows per forward, images/s, the record's
    timing (``extra.timing``) and metrics."""
    timer.calls.clear()
    with tempfile.TemporaryDirectory(prefix="silc-seg-profile-") as artefacts:
        start = time.perf_counter()
        ev = harness.evaluate(encoder, root, protocol, options, Path(artefacts))
        wall = time.perf_counter() - start
    encoder_s = sum(s for _, s in timer.calls)
    timing = ev.extra["timing"]
    return {
        "images": ev.images_processed,
        "windows": sum(n for n, _ in timer.calls),
        "forwards": len(timer.calls),
        "windows_per_forward": dict(sorted(Counter(n for n, _ in timer.calls).items())),
        "wall_s": wall,
        "encoder_s": encoder_s,
        "encoder_share_of_wall": encoder_s / wall,
        "encoder_share_of_test_loop": encoder_s / timing["test_loop_s"],
        "images_per_s": ev.images_processed / wall,
        "timing": timing,
        "metrics": ev.metrics,
    }


def describe(run: dict[str, Any], index: int) -> str:
    """Run ``index`` as a few lines."""
    t = run["timing"]
    spread = ", ".join(f"{n} windows x{count}" for n, count in run["windows_per_forward"].items())
    return (
        f"run {index + 1}: {run['images']} images, {run['windows']} windows "
        f"({run['windows'] / run['images']:.2f} per image), encoder forwards: {run['forwards']} ({spread})\n"
        f"  wall {run['wall_s']:.2f} s, encode_dense {run['encoder_s']:.2f} s = "
        f"{100 * run['encoder_share_of_wall']:.1f} % of wall, {100 * run['encoder_share_of_test_loop']:.1f} % of "
        f"the test loop ({t['test_loop_s']:.2f} s); prompt embeddings {t['text_embeddings_s']:.2f} s, decode "
        f"check {t['decode_check_s']:.2f} s, segmentor predict {t['predict_s']:.2f} s (logits to labels "
        f"{t['decode_s']:.2f} s)\n"
        f"  {run['images_per_s']:.3f} images/s; " + ", ".join(f"{k} {v!r}" for k, v in run["metrics"].items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--world", required=True, help="folder holding ADEChallengeData2016/ (or that folder)"
    )
    parser.add_argument("--model", required=True, help="model SPEC, e.g. openclip:ViT-B-16 (random init)")
    parser.add_argument("--protocol", default="ade-448")
    parser.add_argument("--templates", default=None, help="prompt templates knob (default: the protocol's)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="windows per forward (harness default 64)"
    )
    parser.add_argument("--workers", type=int, default=None, help="loader workers (harness default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", default=None, help="prompt-embedding cache (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    try:
        profile(args)
    except UserError as e:
        print(f"seg_profile: error: {e}", file=sys.stderr)
        return 2
    return 0


def profile(args: argparse.Namespace) -> None:
    """Load the encoder, wrap its ``encode_dense`` and print :func:`describe` of each of ``args.repeats`` runs."""
    from adapters import load_encoder
    from benchmarks.registry import get_harness

    harness = get_harness("seg-ade20k")
    root = Path(args.world)
    knobs = {"templates": args.templates} if args.templates else {}
    name, protocol = protocol_for(harness, args.protocol, root, knobs)
    torch.manual_seed(0)
    encoder = load_encoder(args.model, device=args.device)
    timer = DenseTimer(encoder)
    print(
        f"{args.model} on {root}, protocol {name} (short side {protocol['short_side']}, crop {protocol['crop']}, "
        f"stride {protocol['stride']}, {protocol['templates']} templates), {args.device}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="silc-seg-profile-cache-") as cache:
        options = harness.parse_options(
            {"batch_size": args.batch_size, "workers": args.workers, "cache_dir": args.cache_dir or cache}
        )
        for index in range(args.repeats):
            run = profile_run(harness, encoder, timer, root, protocol, options)
            print(f"{describe(run, index)}; load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
