"""Evaluation throughput on a realistic workload: silc-bench against clip_benchmark, beside this machine's limit.

    python -m silc_bench.perf.eval_throughput [--world DIR] [--models openclip:ViT-B-32,openclip:ViT-B-16]
        [--tasks zeroshot,retrieval] [--workers 0,1,2] [--batch-size 64] [--precision fp32] [--decode pil]
        [--device cpu] [--repeats 1] [--out FILE.md]

Data: the synthetic world's ``bench`` preset (photo-sized JPEGs, short side 375-480; generated into ``--world`` if
missing); zero-shot classification with the 80 OpenAI templates, as ImageNet is evaluated. For every model, task
and loader-worker count, one run times clip_benchmark (its readers, its
``DataLoader``, its ``evaluate``), silc-bench's harness with an empty feature cache (first pass) and again from the
cache, on the same encoder, transform, batch, precision and workers, with the files in the page cache, and checks
that the metrics agree within 1e-6. The limit is what this machine can do at best: decoding measured alone (one
core, PIL and the eval transform) and spread over the thread budget, plus the encoders alone on pre-decoded images
and pre-tokenised texts: ``images / (images / encode_rate + images / (budget * decode_rate) + text_seconds)``,
measured once per model and task, best of ``--repeats`` as every timing.
Prints (and with ``--out`` writes) one Markdown table: images/s, ratios to clip_benchmark, fraction of the limit,
and the placement silc-bench chose.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

METRIC_TOL = 1e-6
TASKS = {"zeroshot": "zeroshot-cls", "retrieval": "retrieval"}
# Zero-shot classification as it is run on ImageNet: the 80 OpenAI templates (1.6 prompts per val image there, 2 on
# the bench world's 640 images of 16 classes), not the world's own handful.
ZEROSHOT_TEMPLATES = "openai"


@dataclass
class Row:
    """One (model, task, workers) measurement, in images/s."""

    model: str
    task: str
    workers: int
    clip_benchmark: float
    first: float
    cached: float
    limit: float
    placement: str

    def markdown(self) -> str:
        return (
            f"| {self.model} | {self.task} | {self.workers} | {self.clip_benchmark:.1f} | {self.first:.1f} | "
            f"**{self.first / self.clip_benchmark:.2f}x** | {self.first / self.limit:.2f} | {self.limit:.1f} | "
            f"{self.cached / self.clip_benchmark:.0f}x | {self.placement} |"
        )


HEADER = (
    "| model | task | workers | clip_benchmark img/s | silc-bench first pass img/s | ratio | of limit | limit img/s "
    "| cached ratio | silc-bench placement |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _world(path: str | None) -> Path:
    from silc.data.synth import generate_world

    root = Path(path) if path else Path(tempfile.gettempdir()) / "silc-perf-world-bench"
    if not (root / "imagenet" / "val").is_dir():
        print(f"generating the synthetic world (preset bench) in {root} ...", flush=True)
        generate_world(root, seed=0, preset="bench")
    return root


def _subset(world: Path, images: int, out: Path) -> Path:
    """A world of symbolic links to the first ``images`` val images (spread over the classes) and the first
    ``images`` retrieval test images with their captions, for a shorter measurement on a slow machine."""
    val = sorted(p for p in (world / "imagenet" / "val").iterdir() if p.is_dir())
    per_class = -(-images // len(val))
    for f in (world / "imagenet").iterdir():
        if f.is_file():
            (out / "imagenet").mkdir(parents=True, exist_ok=True)
            (out / "imagenet" / f.name).symlink_to(f)
    for folder in val:
        (out / "imagenet" / "val" / folder.name).mkdir(parents=True)
        for f in sorted(folder.iterdir())[:per_class]:
            (out / "imagenet" / "val" / folder.name / f.name).symlink_to(f)
    karpathy = json.loads((world / "flickr30k" / "dataset_flickr30k.json").read_text())
    test = [im for im in karpathy["images"] if im["split"] == "test"][:images]
    (out / "flickr30k").mkdir()
    (out / "flickr30k" / "images").symlink_to(world / "flickr30k" / "images")
    (out / "flickr30k" / "dataset_flickr30k.json").write_text(json.dumps({**karpathy, "images": test}))
    for f in world.iterdir():
        if f.is_file():
            (out / f.name).symlink_to(f)
    return out


def _warm_page_cache(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            p.read_bytes()


def _amp(args: argparse.Namespace) -> bool:
    return args.precision != "fp32"


def _as_clip_benchmark_loads(encoder) -> tuple:
    """``(model, transform, tokenizer)`` as clip_benchmark's open_clip loader returns them: the open_clip model
    itself (its full-context ``encode_text``) for open_clip encoders, else the Encoder seen as a CLIP module."""
    from adapters.clip_benchmark import wrap_encoder
    from adapters.openclip import OpenClipEncoder

    if isinstance(encoder, OpenClipEncoder):
        return encoder.model, encoder.preprocess, encoder.tokenizer
    return wrap_encoder(encoder)


def _reference_zeroshot(encoder, root: Path, workers: int, args: argparse.Namespace) -> dict:
    """clip_benchmark on an image folder, as its CLI runs it (torchvision ImageFolder, its ``evaluate``)."""
    from clip_benchmark.metrics import zeroshot_classification
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from benchmarks.readers import read_class_meta

    meta = read_class_meta(root, "val", ZEROSHOT_TEMPLATES)
    model, transform, tokenizer = _as_clip_benchmark_loads(encoder)
    ds = ImageFolder(str(root / "val"), transform=transform)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=workers)
    return zeroshot_classification.evaluate(
        model, loader, tokenizer, meta.classnames, meta.templates, args.device, amp=_amp(args), verbose=False
    )


def _reference_retrieval(encoder, root: Path, workers: int, args: argparse.Namespace, tmp: Path) -> dict:
    """clip_benchmark's Flickr30k reader and retrieval ``evaluate`` on the Karpathy test split."""
    from clip_benchmark.datasets.builder import build_dataset, image_captions_collate_fn
    from clip_benchmark.metrics import zeroshot_retrieval
    from torch.utils.data import DataLoader

    images = json.loads((root / "dataset_flickr30k.json").read_text())["images"]
    lines = [
        f"{im['filename']},{s['raw']}\n" for im in images if im["split"] == "test" for s in im["sentences"]
    ]
    ann = tmp / "flickr30k_test_karpathy.txt"
    ann.write_text("image,caption\n" + "".join(lines))
    model, transform, tokenizer = _as_clip_benchmark_loads(encoder)
    ds = build_dataset(
        "flickr30k",
        root=str(root / "images"),
        transform=transform,
        split="test",
        annotation_file=str(ann),
        task="zeroshot_retrieval",
    )
    loader = DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=image_captions_collate_fn,
    )
    return zeroshot_retrieval.evaluate(
        model, loader, tokenizer, args.device, amp=_amp(args), recall_k_list=[1, 5, 10]
    )


def _ours(task: str, encoder, root: Path, cache: Path, workers: int, args: argparse.Namespace):
    """silc-bench's harness (the record's evaluation, without writing a record)."""
    from benchmarks.registry import get_harness

    harness = get_harness(TASKS[task])
    knobs = {"precision": args.precision} | ({"decode": args.decode} if args.decode != "pil" else {})
    if task == "zeroshot":
        knobs["templates"] = ZEROSHOT_TEMPLATES
    protocol = harness.resolve_protocol(harness.default_protocol, knobs)
    options = harness.parse_options(
        {"batch_size": args.batch_size, "workers": workers, "cache_dir": str(cache)}
    )
    return harness.evaluate(encoder, root, protocol, options, cache / "artefacts")


def _inputs(task: str, root: Path) -> tuple[list, list[str]]:
    """The image refs and the texts the harness encodes, read with its own readers: the zero-shot classifier's
    prompts, or the retrieval test split's captions."""
    if task == "zeroshot":
        from benchmarks.readers.classification import read_classification
        from silc.kernel.classifier import class_prompts

        data = read_classification(root, "val", ZEROSHOT_TEMPLATES)
        return data.refs, class_prompts(data.meta.classnames, data.meta.template_set())
    from benchmarks.readers.karpathy import read_karpathy

    data = read_karpathy(root, "test")
    return data.refs, [caption for captions in data.captions for caption in captions]


def _limit(encoder, task: str, root: Path, args: argparse.Namespace) -> float:
    """Images/s this machine could reach at best: decode alone on one core spread over the thread budget, plus
    the image encoder alone on pre-decoded images and the harness's text path (uncached) at the whole budget."""
    from benchmarks.features import EncodeSettings, FeatureCache, encode_texts
    from silc.kernel import autocast

    refs, texts = _inputs(task, root)
    budget = torch.get_num_threads()
    start = time.process_time()
    x = torch.stack([encoder.preprocess(ref.open()) for ref in refs])
    decode = (time.process_time() - start) / len(refs)  # core-seconds per image
    uncached = EncodeSettings(args.precision, args.batch_size, 0, FeatureCache(None))
    with torch.inference_mode(), autocast(args.precision, encoder.device):
        encoder.encode_image(x[: args.batch_size].to(encoder.device))  # warm up
        start = time.perf_counter()
        for i in range(0, len(x), args.batch_size):
            encoder.encode_image(x[i : i + args.batch_size].to(encoder.device))
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        encode = time.perf_counter() - start
    encode += _seconds(lambda: encode_texts(encoder, texts, uncached))  # the harness's text path, no cache
    return len(refs) / (encode + len(refs) * decode / budget)


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


class _PlacementLog(logging.Handler):
    """Keeps the last placement the feature extractor chose."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reset()

    def reset(self) -> None:
        self.last = "threads (nothing to choose: no worker allowed, or too few batches)"

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.last = message.split(": ", 1)[1].split(", predicted")[0] if ": " in message else message


def _check_metrics(task: str, workers: int, reference: dict, args: argparse.Namespace, **ours: dict) -> None:
    """Stop unless every metric equals clip_benchmark's (``decode: tensor``, whose pixels differ, prints the
    largest difference instead)."""
    for name, metrics in ours.items():
        diff = max(abs(metrics[key] - value) for key, value in reference.items())
        if args.decode != "pil":
            print(
                f"{task}, workers {workers}, {name}: largest metric difference to clip_benchmark {diff:.2e}"
            )
        elif diff > METRIC_TOL:
            raise SystemExit(
                f"{task}, workers {workers}, {name}: metrics differ from clip_benchmark's by {diff}"
            )


def _measure(
    encoder, model: str, task: str, workers: int, root: Path, args, placement: _PlacementLog, limit: float
) -> Row:
    best = {"clip_benchmark": float("inf"), "first": float("inf"), "cached": float("inf")}
    n, chosen = 0, ""
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="silc-perf-") as tmp:
            tmp = Path(tmp)
            times, results = {}, {}
            order = ("clip_benchmark", "ours") if repeat % 2 == 0 else ("ours", "clip_benchmark")
            for side in order:
                if side == "clip_benchmark":
                    start = time.perf_counter()
                    reference = (
                        _reference_zeroshot(encoder, root, workers, args)
                        if task == "zeroshot"
                        else _reference_retrieval(encoder, root, workers, args, tmp)
                    )
                    times["clip_benchmark"] = time.perf_counter() - start
                    continue
                placement.reset()
                for name in ("first", "cached"):
                    start = time.perf_counter()
                    ev = _ours(task, encoder, root, tmp / "cache", workers, args)
                    times[name] = time.perf_counter() - start
                    results[name], n = ev.metrics, ev.num_samples
                    if name == "first":
                        chosen = placement.last
            _check_metrics(task, workers, reference, args, **results)
            best = {k: min(v, times[k]) for k, v in best.items()}
    return Row(
        model,
        task,
        workers,
        n / best["clip_benchmark"],
        n / best["first"],
        n / best["cached"],
        limit,
        chosen,
    )


def _preset(world: Path) -> str:
    """The world's preset as its manifest names it (``bench``: photo-sized JPEGs)."""
    from silc.data.synth import MANIFEST

    manifest = world / MANIFEST
    return json.loads(manifest.read_text()).get("preset", "?") if manifest.is_file() else "unknown"


def _header(args: argparse.Namespace, world: Path) -> str:
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    cpu = names[0] if names else cpu
    return (
        f"data: {world} (synthetic world, preset {_preset(world)}"
        + (f", its first {args.images} images per task" if args.images else "")
        + f"), device {args.device} ({cpu}), "
        f"{torch.get_num_threads()} intra-op threads, batch {args.batch_size}, precision {args.precision}, "
        f"decode {args.decode}, best of {args.repeats}, torch {torch.__version__}"
        + (f"; metrics equal to clip_benchmark's within {METRIC_TOL}" if args.decode == "pil" else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", help="synthetic world folder (preset bench; generated there if missing)")
    parser.add_argument(
        "--models", default="openclip:ViT-B-32,openclip:ViT-B-16", help="comma-separated SPECs"
    )
    parser.add_argument(
        "--tasks", default="zeroshot,retrieval", help=f"comma-separated, of {', '.join(TASKS)}"
    )
    parser.add_argument("--workers", default="0,1,2", help="comma-separated loader worker counts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (autocast; a protocol knob)")
    parser.add_argument(
        "--decode", default="pil", choices=("pil", "tensor"), help="silc-bench's decode knob (default pil)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed repetitions; the best of each is reported"
    )
    parser.add_argument(
        "--images", type=int, help="measure on the first N images of each task (a slow machine)"
    )
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    if unknown := sorted(set(tasks) - set(TASKS)):
        parser.error(f"--tasks: unknown {', '.join(unknown)}; expected {', '.join(TASKS)}")

    from adapters import load_encoder

    world = _world(args.world)
    if args.images:
        world = _subset(world, args.images, Path(tempfile.mkdtemp(prefix="silc-perf-subset-")))
    _warm_page_cache(world / "imagenet" / "val")
    _warm_page_cache(world / "flickr30k")
    placement = _PlacementLog()
    logging.getLogger("benchmarks.placement").addHandler(placement)
    logging.getLogger("benchmarks.placement").setLevel(logging.INFO)
    lines = [_header(args, world), "", HEADER]
    print("\n".join(lines), flush=True)
    for model in args.models.split(","):
        encoder = load_encoder(model, device=args.device)
        for task in tasks:
            root = world / ("imagenet" if task == "zeroshot" else "flickr30k")
            limit = max(_limit(encoder, task, root, args) for _ in range(args.repeats))  # best, as the rows
            for workers in (int(w) for w in args.workers.split(",")):
                row = _measure(encoder, encoder.name, task, workers, root, args, placement, limit)
                lines.append(row.markdown())
                print(lines[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
