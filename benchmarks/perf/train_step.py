"""Training-step cost: SiLC vs CLIP objective on the same model and batch, and our CLIP step vs open_clip's.

    python -m benchmarks.perf.train_step [--model silc-tiny-vit] [--batch 64] [--global-crops 2] \
        [--local-crops 8] [--global-size 64] [--local-size 32] [--precision fp32] [--steps 10] [--device cpu]

Each case runs in its own process (so peak memory is its own): ``ours-clip`` and ``ours-silc`` time
``Trainer.train_step`` on a fixed pre-made batch (data loading excluded), ``open_clip`` runs
``open_clip_train.main`` (single process, same model, batch, precision, optimiser) on a CSV of the same size and
reads its per-step times. The FLOP-ideal SiLC/CLIP ratio is measured with ``torch.utils.flop_counter`` over one
full step (forward, backward; teacher forward; head), so overhead = (time ratio) / (FLOP ratio).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _write_csv(folder: Path, n: int, size: int) -> Path:
    """``n`` random-noise PNGs with captions in open_clip's CSV form (the content does not affect step time)."""
    import numpy as np
    from PIL import Image

    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["filepath,caption"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            folder / "img" / f"{i}.png"
        )
        lines.append(f"{folder / 'img' / f'{i}.png'},a photo of object number {i}")
    path = folder / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(args: argparse.Namespace, objective: str, csv: Path):
    from silc.config import config_from_dict

    silc = objective == "silc"
    return config_from_dict(
        {
            "model": {"name": args.model, "grad_checkpointing": False},
            "head": {
                "out_dim": args.head_k,
                "hidden_dim": args.head_hidden,
                "bottleneck_dim": args.head_bottleneck,
            },
            "loss": {"objective": objective},
            "optim": {"lr": 1e-4, "warmup_steps": 1, "weight_decay": 0.2, "grad_clip": None},
            "train": {
                "steps": 10**6,
                "batch_size": args.batch,
                "precision": args.precision,
                "device": args.device,
                "progress": False,
            },
            "views": {
                "global_crops": args.global_crops if silc else 1,
                "local_crops": args.local_crops if silc else 0,
                "global_size": args.global_size,
                "local_size": args.local_size,
            },
            "data": {"kind": "csv", "path": str(csv)},
        }
    )


def _batch(args: argparse.Namespace, trainer, objective: str) -> dict:
    silc = objective == "silc"
    g = args.global_crops if silc else 1
    gen = torch.Generator().manual_seed(0)
    batch = {
        "global": torch.randn(args.batch, g, 3, args.global_size, args.global_size, generator=gen),
        "text": torch.as_tensor(
            trainer.tokenizer([f"a photo of object {i}" for i in range(args.batch)])
        ).long(),
    }
    if silc and args.local_crops:
        batch["local"] = torch.randn(
            args.batch, args.local_crops, 3, args.local_size, args.local_size, generator=gen
        )
    return batch


def run_ours(args: argparse.Namespace, objective: str) -> dict:
    """Time ``train_step`` of our trainer; also count its FLOPs over one step."""
    from torch.utils.flop_counter import FlopCounterMode

    from silc.train import Trainer, peak_memory_mb

    with tempfile.TemporaryDirectory() as tmp:
        csv = _write_csv(Path(tmp), 4, args.global_size)
        trainer = Trainer(_config(args, objective, csv), Path(tmp) / "run")
        batch = _batch(args, trainer, objective)
        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step(batch)
        flops = counter.get_total_flops()
        cuda = trainer.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(args.warmup + args.steps):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.train_step(batch)
            if cuda:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        return {
            "case": f"ours-{objective}",
            "step_s": statistics.median(times),
            "flops": flops,
            "peak_mem_mb": peak_memory_mb(trainer.device),
        }


def run_open_clip(args: argparse.Namespace) -> dict:
    """``open_clip_train.main`` on the same model/batch/precision; per-step time = its Batch (t) minus Data (t)."""
    import resource

    import open_clip

    from silc.model import ModelConfig, resolve_model_config

    name, model_cfg = resolve_model_config(ModelConfig(name=args.model))
    n_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / f"{name}.json"
        cfg_path.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(cfg_path)
        csv = _write_csv(Path(tmp) / "data", args.batch * n_steps, args.global_size)
        precision = {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}[args.precision]
        argv = [
            "--train-data",
            str(csv),
            "--dataset-type",
            "csv",
            "--csv-separator",
            ",",
            "--csv-img-key",
            "filepath",
            "--csv-caption-key",
            "caption",
            "--model",
            name,
            "--batch-size",
            str(args.batch),
            "--epochs",
            "1",
            "--workers",
            "0",
            "--precision",
            precision,
            "--lr",
            "1e-4",
            "--wd",
            "0.2",
            "--warmup",
            "1",
            "--log-every-n-steps",
            "1",
            "--save-frequency",
            "0",
            "--logs",
            str(Path(tmp) / "logs"),
            "--name",
            "perf",
            "--device",
            args.device,
            "--force-image-size",
            str(args.global_size),
        ]
        import logging

        from open_clip_train.main import main as oc_main

        records: list[str] = []

        class Grab(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage())

        logging.getLogger().addHandler(Grab())
        oc_main(argv)
    pattern = re.compile(r"Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+)")
    # open_clip resets its meters after every log line: with --log-every-n-steps 1 each line is one step.
    matches = [pattern.search(r) for r in records]
    per_step = [float(m.group(2)) - float(m.group(1)) for m in matches if m]
    cuda = args.device == "cuda"
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "case": "open_clip",
        "step_s": statistics.median(per_step[args.warmup :]),
        "peak_mem_mb": peak,
        "steps_logged": len(per_step),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="silc-tiny-vit")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--global-crops", type=int, default=2)
    p.add_argument("--local-crops", type=int, default=8)
    p.add_argument("--global-size", type=int, default=64)
    p.add_argument("--local-size", type=int, default=32)
    p.add_argument("--head-k", type=int, default=4096)
    p.add_argument("--head-hidden", type=int, default=512)
    p.add_argument("--head-bottleneck", type=int, default=128)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--case", choices=["ours-clip", "ours-silc", "open_clip"], help=argparse.SUPPRESS)
    p.add_argument("--out", help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        result = run_open_clip(args) if args.case == "open_clip" else run_ours(args, args.case.split("-")[1])
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--out")]
    if "--out" in passthrough:
        i = passthrough.index("--out")
        del passthrough[i : i + 2]
    results = {}
    for case in ("ours-clip", "ours-silc", "open_clip"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.perf.train_step", *passthrough, "--case", case],
            capture_output=True,
            text=True,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(f"{case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        results[case] = json.loads(line[len("RESULT ") :])
    clip, silc, oc = results["ours-clip"], results["ours-silc"], results["open_clip"]
    summary = {
        "recipe": f"{args.model}, batch {args.batch}, {args.global_crops}x{args.global_size} global + "
        f"{args.local_crops}x{args.local_size} local, K={args.head_k}, {args.precision}, {args.device}",
        "silc_over_clip_time": silc["step_s"] / clip["step_s"],
        "silc_over_clip_flops": silc["flops"] / clip["flops"],
        "ours_clip_over_open_clip_time": clip["step_s"] / oc["step_s"],
        "cases": results,
    }
    summary["silc_overhead_vs_flop_ideal"] = summary["silc_over_clip_time"] / summary["silc_over_clip_flops"]
    print(f"recipe: {summary['recipe']}")
    for case, r in results.items():
        print(f"  {case:10s} step {r['step_s'] * 1000:8.1f} ms   peak memory {r['peak_mem_mb']:8.0f} MiB")
    print(
        f"  SiLC/CLIP time ratio {summary['silc_over_clip_time']:.3f}, FLOP-ideal ratio "
        f"{summary['silc_over_clip_flops']:.3f} -> overhead {summary['silc_overhead_vs_flop_ideal']:.3f}x"
    )
    print(f"  our CLIP step / open_clip_train step: {summary['ours_clip_over_open_clip_time']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
