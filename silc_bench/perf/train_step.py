r"""Training-step cost: SiLC vs CLIP objective on the same model and batch, masked self-distillation's overhead
over SiLC, and our CLIP step vs open_clip's.

    python -m silc_bench.perf.train_step [--model silc-tiny-vit] [--batch 32] [--global-crops 2] \
        [--local-crops 8] [--local-size 32] [--steps 10] [--warmup 3] [--repeats 5] [--threads 1] \
        [--world DIR] [--device cpu] [--out results.json]

All cases train on the same CSV: the synthetic world's ``pretrain/pairs.csv`` (``--world DIR``; generated there
with ``generate_world(preset="tiny")`` when missing) rewritten with absolute image paths, since open_clip opens
CSV paths relative to its working directory. Each case runs in its own process, so its peak memory is its own
(peak RSS from ``wait4`` on CPU; ``torch.cuda.max_memory_allocated`` on CUDA):

- ``ours-clip`` / ``ours-silc`` / ``ours-masked``: ``Trainer.run()`` (the real loop: logging every step, EMA,
  schedules) with objective ``clip`` (one view), ``silc`` (G global + L local views) or ``silc_masked`` (the same
  views, plus the student's block-masked global views and the patch heads; the config's default masking). A step's time runs from the moment the
  loader hands its batch over to the moment the loop asks for the next one, so data loading is excluded and
  all loop overhead is included. Its FLOPs are counted once with ``torch.utils.flop_counter`` (forward,
  backward, teacher forward, head, loss matmuls; CPU attention kernels included, see ``flop_mapping``).
- ``open_clip``: ``open_clip_train.main.main(argv)`` (what ``python -m open_clip_train.main`` runs) with the same
  model (``local-dir:`` config), batch, precision, AdamW hyper-parameters and gradient clipping, single process.
  With ``--log-every-n-steps 1`` each log line covers exactly one step (open_clip resets its meters after every
  line); per step it logs ``Data (t)`` (from the end of the previous step to the batch on the device) and
  ``Batch (t)`` (the same start to the end of the optimiser step), so ``Batch - Data`` is the step without data
  loading and without open_clip's own logging. On CUDA that difference holds only kernel launches (the sync
  happens in the next line's data time); there the full ``Batch (t)`` is used, with prefetching loader workers.

Cases run ``--repeats`` times in alternating order (the machine may be shared); figures are medians over
repeats, ratios are medians of the per-repeat ratios of adjacent runs; the ratios of the fastest run of each
case are printed too (other jobs on the machine can only slow a run down).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("ours-clip", "open_clip", "ours-silc", "ours-masked")
OBJECTIVES = {"ours-clip": "clip", "ours-silc": "silc", "ours-masked": "silc_masked"}  # our cases' objectives
OPEN_CLIP_LINE = re.compile(r"Train Epoch: \d+ .*Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+)")


# ------------------------------------------------------------------------------------------------ shared inputs
def prepare_csv(world: Path, out: Path) -> tuple[Path, int]:
    """The world's pretraining pairs as a CSV with absolute image paths (generating the world if needed)."""
    import pandas as pd

    pairs = world / "pretrain" / "pairs.csv"
    if not pairs.is_file():
        from silc.data.synth import generate_world

        generate_world(world, seed=0, preset="tiny")
    frame = pd.read_csv(pairs, dtype=str, keep_default_na=False)
    frame["filepath"] = [str((pairs.parent / f).resolve()) for f in frame["filepath"]]
    frame.to_csv(out, index=False)
    return out, len(frame)


def model_config(name: str) -> dict:
    from silc.kernel import resolve_model_config

    return resolve_model_config(name)[1]


def image_size(model_cfg: dict) -> int:
    size = model_cfg["vision_cfg"]["image_size"]
    return size if isinstance(size, int) else size[0]


# ------------------------------------------------------------------------------------------------------ ours
def flop_mapping() -> dict:
    """FLOP formulas for the CPU attention kernels, which ``torch.utils.flop_counter`` does not register."""
    import torch
    from torch.utils import flop_counter

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


class TimedLoader:
    """Wraps the trainer's loader; records when each batch is handed over and when the next one is asked for."""

    def __init__(self, loader):
        self.loader = loader
        self.requested: list[float] = []
        self.delivered: list[float] = []

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            self.requested.append(time.perf_counter())
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.delivered.append(time.perf_counter())
            yield batch

    def step_times(self) -> list[float]:
        """Loop time of every step but the last (whose end is the final checkpoint, not a request)."""
        return [r - d for d, r in zip(self.delivered, self.requested[1:], strict=False)]


def ours_config(args: argparse.Namespace, objective: str, csv: Path, steps: int):
    from silc.config import config_from_dict

    silc = objective != "clip"
    size = image_size(model_config(args.model))
    return config_from_dict(
        {
            "model": {"name": args.model},
            "head": {
                "out_dim": args.head_k,
                "hidden_dim": args.head_hidden,
                "bottleneck_dim": args.head_bottleneck,
            },
            "loss": {"objective": objective},
            "optim": {"lr": 1e-4, "warmup_steps": 1, "weight_decay": 0.2, "grad_clip": 1.0},
            "train": {
                "steps": steps,
                "batch_size": args.batch,
                "precision": args.precision,
                "device": args.device,
                "log_every": 1,
                "save_every": 0,
                "progress": False,
            },
            "views": {
                "global_crops": args.global_crops if silc else 1,
                "local_crops": args.local_crops if silc else 0,
                "global_size": size,
                "local_size": args.local_size,
            },
            "data": {"kind": "csv", "path": str(csv), "num_workers": args.workers},
        }
    )


def run_ours(args: argparse.Namespace, objective: str) -> dict:
    """Count one step's FLOPs, then time ``Trainer.run()`` for warmup + steps further steps."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from silc.train import Trainer, peak_memory_mb

    with tempfile.TemporaryDirectory() as tmp:
        # 1 counted step, then warmup + steps timed ones, then a last step whose end is the final checkpoint.
        cfg = ours_config(args, objective, Path(args.csv), 1 + args.warmup + args.steps + 1)
        trainer = Trainer(cfg, Path(tmp) / "run")
        counter = FlopCounterMode(display=False, custom_mapping=flop_mapping())
        batch = next(iter(trainer.loader))
        with counter:
            trainer.train_step(batch)
        trainer.loader = timed = TimedLoader(trainer.loader)
        trainer.run()
        times = timed.step_times()[args.warmup :]
        return {
            "step_s": statistics.median(times),
            "step_times": times,
            "flops": counter.get_total_flops(),
            "cuda_peak_mb": peak_memory_mb(trainer.device) if trainer.device.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(),
        }


# ------------------------------------------------------------------------------------------------- open_clip
def open_clip_argv(args: argparse.Namespace, model_dir: Path, logs: Path, n_rows: int) -> list[str]:
    """``open_clip_train.main`` arguments matching our trainer's model, batch, precision and optimiser."""
    per_epoch = n_rows // args.batch  # open_clip drops the last partial batch
    epochs = math.ceil((args.warmup + args.steps) / per_epoch)
    precision = {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}[args.precision]
    return [
        *("--model", f"local-dir:{model_dir}"),
        *("--train-data", str(args.csv), "--dataset-type", "csv", "--csv-separator", ","),
        *("--csv-img-key", "filepath", "--csv-caption-key", "caption"),
        *("--batch-size", str(args.batch), "--epochs", str(epochs), "--workers", str(args.workers)),
        *("--precision", precision, "--device", args.device, "--seed", "0"),
        *("--lr", "1e-4", "--wd", "0.2", "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6"),
        *("--warmup", "1", "--grad-clip-norm", "1.0"),
        *("--log-every-n-steps", "1", "--save-frequency", "0", "--logs", str(logs), "--name", "perf"),
    ]


def parse_open_clip_log(text: str, device: str) -> list[float]:
    """Per-step times from open_clip's ``out.log`` (one line per step with ``--log-every-n-steps 1``)."""
    steps = [tuple(map(float, m.groups())) for m in OPEN_CLIP_LINE.finditer(text)]
    return [batch if device == "cuda" else batch - data for data, batch in steps]


def run_open_clip(args: argparse.Namespace) -> dict:
    """``open_clip_train.main.main(argv)`` in this process; per-step times from its log file."""
    import torch
    from open_clip_train.main import main as open_clip_main

    from silc.train import open_clip_config_json

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        (model_dir / "open_clip_config.json").write_text(
            json.dumps(open_clip_config_json(model_config(args.model)))
        )
        argv = open_clip_argv(args, model_dir, Path(tmp) / "logs", args.rows)
        open_clip_main(argv)
        per_step = parse_open_clip_log((Path(tmp) / "logs" / "perf" / "out.log").read_text(), args.device)
    if len(per_step) < args.warmup + args.steps:
        raise RuntimeError(f"open_clip logged {len(per_step)} steps, expected {args.warmup + args.steps}")
    times = per_step[args.warmup : args.warmup + args.steps]
    return {
        "step_s": statistics.median(times),
        "step_times": times,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "argv": argv,
    }


# --------------------------------------------------------------------------------------------------- driver
def run_case(case: str, argv: list[str], threads: int) -> dict:
    """One case in a fresh process; its peak RSS comes from ``wait4``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "silc_bench.perf.train_step", *argv, "--case", case]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{case} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(line[len("RESULT ") :])
    result["rss_peak_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def summarise(args: argparse.Namespace, runs: list[dict[str, dict]]) -> dict:
    """Medians over repeats; ratios as medians of per-repeat ratios."""

    def med(case: str, key: str) -> float:
        return statistics.median(r[case][key] for r in runs)

    def best(case: str) -> float:  # other jobs on a shared machine only ever slow a run down
        return min(r[case]["step_s"] for r in runs)

    mem_key = "cuda_peak_mb" if args.device == "cuda" else "rss_peak_mb"
    flop_ratio = runs[0]["ours-silc"]["flops"] / runs[0]["ours-clip"]["flops"]
    silc_ratio = statistics.median(r["ours-silc"]["step_s"] / r["ours-clip"]["step_s"] for r in runs)
    oc_ratio = statistics.median(r["ours-clip"]["step_s"] / r["open_clip"]["step_s"] for r in runs)
    masked_ratio = statistics.median(r["ours-masked"]["step_s"] / r["ours-silc"]["step_s"] for r in runs)
    return {
        "recipe": f"{args.model}, batch {args.batch}, SiLC views {args.global_crops}x"
        f"{image_size(model_config(args.model))} global + {args.local_crops}x{args.local_size} local, "
        f"K={args.head_k}, {args.precision}, {args.device}, {args.threads} thread(s), {args.repeats} repeats",
        "step_s": {case: med(case, "step_s") for case in CASES},
        "step_s_per_repeat": {case: [r[case]["step_s"] for r in runs] for case in CASES},
        "step_s_best": {case: best(case) for case in CASES},
        "peak_mem_mb": {case: med(case, mem_key) for case in CASES},
        "peak_mem_kind": "cuda max_memory_allocated" if args.device == "cuda" else "peak RSS",
        "gflops_per_step": {case: runs[0][case]["flops"] / 1e9 for case in OBJECTIVES},
        "silc_over_clip_time": silc_ratio,
        "silc_over_clip_flops": flop_ratio,
        "silc_overhead_vs_flop_ideal": silc_ratio / flop_ratio,
        "ours_clip_over_open_clip_time": oc_ratio,
        "masked_over_silc_time": masked_ratio,
        "masked_over_silc_flops": runs[0]["ours-masked"]["flops"] / runs[0]["ours-silc"]["flops"],
        "best_of_repeats": {
            "masked_over_silc_time": best("ours-masked") / best("ours-silc"),
            "silc_overhead_vs_flop_ideal": best("ours-silc") / best("ours-clip") / flop_ratio,
            "ours_clip_over_open_clip_time": best("ours-clip") / best("open_clip"),
        },
        "open_clip_command": "python -m open_clip_train.main " + " ".join(runs[0]["open_clip"]["argv"]),
    }


def report(summary: dict) -> None:
    print(f"recipe: {summary['recipe']}")
    for case in CASES:
        per = ", ".join(f"{t * 1000:.0f}" for t in summary["step_s_per_repeat"][case])
        print(
            f"  {case:10s} step {summary['step_s'][case] * 1000:8.1f} ms (repeats: {per})   "
            f"{summary['peak_mem_kind']} {summary['peak_mem_mb'][case]:7.0f} MiB"
        )
    g = summary["gflops_per_step"]
    print(
        f"  SiLC/CLIP time ratio {summary['silc_over_clip_time']:.3f}, FLOP-ideal ratio "
        f"{summary['silc_over_clip_flops']:.3f} ({g['ours-silc']:.1f} / {g['ours-clip']:.1f} GFLOP) "
        f"-> overhead {summary['silc_overhead_vs_flop_ideal']:.3f}x (goal <= 1.05)"
    )
    print(
        f"  masked SiLC / SiLC time ratio {summary['masked_over_silc_time']:.3f}, FLOP ratio "
        f"{summary['masked_over_silc_flops']:.3f} ({g['ours-masked']:.1f} / {g['ours-silc']:.1f} GFLOP)"
    )
    print(
        f"  our CLIP step / open_clip_train step: {summary['ours_clip_over_open_clip_time']:.3f} (goal <= 1)"
    )
    b = summary["best_of_repeats"]
    print(
        f"  best of repeats: SiLC overhead {b['silc_overhead_vs_flop_ideal']:.3f}x, "
        f"our CLIP / open_clip {b['ours_clip_over_open_clip_time']:.3f}, masked / SiLC "
        f"{b['masked_over_silc_time']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="silc-tiny-vit", help="open_clip model name, bundled name or JSON config"
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument(
        "--global-crops", type=int, default=2, help="SiLC global views (at the model's image size)"
    )
    p.add_argument("--local-crops", type=int, default=8)
    p.add_argument("--local-size", type=int, default=32)
    p.add_argument("--head-k", type=int, default=4096)
    p.add_argument("--head-hidden", type=int, default=512)
    p.add_argument("--head-bottleneck", type=int, default=128)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per run before them")
    p.add_argument("--repeats", type=int, default=5, help="runs of each case, in alternating order")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per case (OMP_NUM_THREADS)")
    p.add_argument("--workers", type=int, help="data loader workers (default: 0 on CPU, 4 on CUDA)")
    p.add_argument("--world", help="synthetic world folder (default: a temporary one, generated)")
    p.add_argument("--out", help="also write the summary and every run as JSON here")
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--csv", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workers is None:
        args.workers = 4 if args.device == "cuda" else 0
    if args.case:
        result = run_open_clip(args) if args.case == "open_clip" else run_ours(args, OBJECTIVES[args.case])
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(args.world) if args.world else Path(tmp) / "world"
        args.csv, args.rows = prepare_csv(world, Path(tmp) / "pairs_abs.csv")
        if args.rows // args.batch < 1:
            raise SystemExit(f"{world}: {args.rows} pairs, fewer than one batch of {args.batch}")
        case_argv = [
            *(argv if argv is not None else sys.argv[1:]),
            *("--csv", str(args.csv), "--rows", str(args.rows), "--workers", str(args.workers)),
        ]
        case_argv = _without(case_argv, "--out", "--world")
        runs = []
        for r in range(args.repeats):
            order = CASES if r % 2 == 0 else CASES[::-1]
            run = {}
            for case in order:
                run[case] = run_case(case, case_argv, args.threads)
                print(
                    f"repeat {r + 1}/{args.repeats} {case}: {run[case]['step_s'] * 1000:.1f} ms", flush=True
                )
            runs.append(run)
    summary = summarise(args, runs)
    report(summary)
    if args.out:
        Path(args.out).write_text(json.dumps({**summary, "runs": runs}, indent=2) + "\n")
    return 0


def _without(argv: list[str], *options: str) -> list[str]:
    """``argv`` minus the given options and their values (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not any(a.startswith(o + "=") for o in options):
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
