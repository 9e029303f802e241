"""Zero-shot classification throughput: silc-bench's harness against clip_benchmark on the same model and data.

    python -m silc_bench.perf.eval_throughput [--world DIR] [--preset small] [--model SPEC] [--device cpu|cuda]

clip_benchmark runs as its CLI does for an image folder (torchvision ``ImageFolder`` + ``DataLoader`` +
``zeroshot_classification.evaluate``); silc-bench runs ``zeroshot-cls`` twice, first with an empty feature cache,
then from the cache. Both use the same encoder, eval transform, batch size and workers, on files already in the
page cache. Prints images/s of each and the ratios, and asserts that the metrics agree (within 1e-6).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

TINY_CONFIG = Path(__file__).resolve().parents[2] / "silc" / "model_configs" / "silc-tiny-vit.json"


def _world(args: argparse.Namespace) -> Path:
    from silc.data.synth import generate_world

    root = Path(args.world) if args.world else Path(tempfile.gettempdir()) / f"silc-perf-world-{args.preset}"
    if not (root / "imagenet" / "val").is_dir():
        print(f"generating the synthetic world (preset {args.preset}) in {root} ...", flush=True)
        generate_world(root, seed=0, preset=args.preset)
    return root / "imagenet"


def _warm_page_cache(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            p.read_bytes()


def _clip_benchmark(encoder, root: Path, args: argparse.Namespace) -> tuple[dict, float]:
    from clip_benchmark.metrics import zeroshot_classification
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from adapters.clip_benchmark import wrap_encoder
    from benchmarks.readers import read_class_meta

    meta = read_class_meta(root, "val")
    start = time.perf_counter()
    model, transform, tokenizer = wrap_encoder(encoder)
    ds = ImageFolder(str(root / "val"), transform=transform)
    ds.classes = meta.classnames
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    metrics = zeroshot_classification.evaluate(
        model,
        loader,
        tokenizer,
        meta.classnames,
        meta.templates,
        args.device,
        amp=args.device == "cuda",
        verbose=False,
    )
    return metrics, time.perf_counter() - start


def _ours(encoder, root: Path, cache: Path, args: argparse.Namespace) -> tuple[dict, float, int]:
    from benchmarks.registry import get_harness

    harness = get_harness("zeroshot-cls")
    protocol = harness.resolve_protocol("default", {"precision": "fp16" if args.device == "cuda" else "fp32"})
    options = harness.parse_options(
        {"batch_size": args.batch_size, "workers": args.workers, "cache_dir": str(cache)}
    )
    start = time.perf_counter()
    ev = harness.evaluate(encoder, root, protocol, options, cache / "artefacts")
    return ev.metrics, time.perf_counter() - start, ev.num_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", help="synthetic world folder (generated there if missing)")
    parser.add_argument("--preset", default="small", help="world preset when generating (default: small)")
    parser.add_argument("--model", default=f"tiny=openclip:{TINY_CONFIG}", help="model SPEC (default: tiny)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repetitions; the best of each is reported"
    )
    args = parser.parse_args(argv)

    from adapters import load_encoder

    root = _world(args)
    _warm_page_cache(root)
    encoder = load_encoder(args.model, device=args.device)
    best = {"clip_benchmark": float("inf"), "first": float("inf"), "cached": float("inf")}
    n = 0
    for _ in range(args.repeats):
        ref, t_ref = _clip_benchmark(encoder, root, args)
        with tempfile.TemporaryDirectory(prefix="silc-perf-cache-") as cache:
            first, t_first, n = _ours(encoder, root, Path(cache), args)
            cached, t_cached, _ = _ours(encoder, root, Path(cache), args)
        for key in ("acc1", "acc5", "mean_per_class_recall"):
            for name, got in (("first pass", first), ("cached", cached)):
                assert abs(got[key] - ref[key]) <= 1e-6, (
                    f"{name} {key}: {got[key]} vs clip_benchmark {ref[key]}"
                )
        best = {k: min(v, t) for (k, v), t in zip(best.items(), (t_ref, t_first, t_cached), strict=True)}
    ips = {k: n / t for k, t in best.items()}
    print(
        f"data: {root} ({n} val images), model: {args.model}, device: {args.device}, "
        f"batch {args.batch_size}, workers {args.workers}, best of {args.repeats}"
    )
    print(
        f"metrics (identical): acc1 {ref['acc1']:.6f}  acc5 {ref['acc5']:.6f}  "
        f"mean_per_class_recall {ref['mean_per_class_recall']:.6f}"
    )
    print(f"clip_benchmark        {ips['clip_benchmark']:10.1f} images/s  ({best['clip_benchmark']:.3f} s)")
    print(
        f"silc-bench first pass {ips['first']:10.1f} images/s  ({best['first']:.3f} s)  "
        f"ratio {ips['first'] / ips['clip_benchmark']:.2f}x (goal >= 1.2x)"
    )
    print(
        f"silc-bench cached     {ips['cached']:10.1f} images/s  ({best['cached']:.3f} s)  "
        f"ratio {ips['cached'] / ips['clip_benchmark']:.2f}x (goal >= 10x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
