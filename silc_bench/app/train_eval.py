"""Evaluation during training: the ``eval_fn`` the CLI hands to the trainer (``silc`` never imports benchmarks).

Every ``train.eval_every`` steps it wraps a copy of the student (and/or the EMA teacher's vision tower with the
student's text tower) in the Encoder contract, runs the suite's harnesses from the same registry, writes their
records under ``RUN/eval/step_XXXXXXXX/`` and returns flat metrics that the trainer logs next to the losses.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from silc.errors import UserError

WEIGHTS = ("student", "teacher", "both")


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the python, numpy, torch (and CUDA) RNG states afterwards: evaluation must not change training."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def live_encoder(
    clip: nn.Module, model_cfg: dict, name: str, device: torch.device, visual: nn.Module | None = None
):
    """An Encoder over a frozen copy of ``clip`` (its vision tower replaced by ``visual`` when given)."""
    from adapters.openclip import OpenClipEncoder
    from silc.kernel import make_tokenizer, preprocess_cfg_for

    model = copy.deepcopy(clip)
    if visual is not None:
        model.visual = copy.deepcopy(visual)
    return OpenClipEncoder(
        model,
        name=name,
        spec=f"{name} weights during training",
        embed_dim=model_cfg["embed_dim"],
        tokenizer=make_tokenizer(model_cfg, None, name),
        preprocess_cfg=preprocess_cfg_for(model, None),  # as adapters.loading does for a SiLC checkpoint
        device=device,
    )


def build_eval_fn(
    suite_name: str,
    weights: str,
    data_root: str | Path | None,
    run_dir: str | Path,
    model_cfg: dict,
    has_teacher: bool,
    device: str | torch.device = "cpu",
) -> Callable[..., dict[str, float]]:
    """The trainer's ``eval_fn(step, clip, teacher=None) -> {"<weights>/<benchmark>/<metric>": value}``."""
    from benchmarks.registry import get_harness
    from benchmarks.runner import run_harness
    from benchmarks.sharding import alone
    from benchmarks.suites import load_suite
    from benchmarks.table_rows import scalar_metrics

    if weights not in WEIGHTS:
        raise UserError(f"eval.weights: expected one of {list(WEIGHTS)}, got {weights!r}")
    if weights != "student" and not has_teacher:
        raise UserError(f"eval.weights: {weights!r} needs a teacher (loss.objective distill or silc)")
    suite = load_suite(suite_name)
    resolved = suite.resolve()
    if data_root is None:
        if suite.world is None:
            raise UserError(f"eval.data_root: suite {suite.name!r} runs on real datasets; give their folder")
        from silc_bench.app.world_cache import ensure_world

        root = ensure_world(str(suite.world["preset"]), int(suite.world["seed"]))
    else:
        root = Path(data_root)
    failed = suite.preflight(root, str(device))
    if failed:
        more = sum(len(f.problems) for f in failed) - 1
        raise UserError(f"eval.data_root: {failed[0].problems[0]}" + (f" (+{more} more)" if more else ""))
    which = ("student", "teacher") if weights == "both" else (weights,)
    device = torch.device(device)

    def eval_fn(step: int, clip: nn.Module, teacher: nn.Module | None = None) -> dict[str, float]:
        # the trainer evaluates on its rank 0 alone: no collective with the other (waiting) ranks
        with preserved_rng(), alone():
            return evaluate(step, clip, teacher)

    def evaluate(step: int, clip: nn.Module, teacher: nn.Module | None) -> dict[str, float]:
        out_dir = Path(run_dir) / "eval" / f"step_{step:08d}"
        metrics: dict[str, float] = {}
        for name in which:
            if name == "teacher" and teacher is None:
                raise UserError("eval.weights: the trainer passed no teacher to evaluate")
            visual = teacher.visual if name == "teacher" else None
            encoder = live_encoder(clip, model_cfg, name, device, visual)
            for r in resolved:
                record, _, _ = run_harness(
                    get_harness(r.entry.benchmark),
                    encoder,
                    root / r.entry.data,
                    r.protocol_name,
                    r.protocol,
                    out_dir,
                    rerun=True,
                    # no intervals during training: the logged numbers are point estimates
                    options={"workers": 0, **r.entry.options, "no_cache": True, "bootstrap": 0},
                )
                for key, value in scalar_metrics(record.metrics).items():
                    if value is not None:
                        metrics[f"{name}/{r.entry.benchmark}/{key}"] = value
        return metrics

    return eval_fn


def make_eval_fn(cfg, run_dir: str | Path) -> Callable[..., dict[str, float]] | None:
    """The eval_fn for a training config (its ``eval`` section), or None when ``train.eval_every`` is 0."""
    if not cfg.train.eval_every:
        return None
    from silc.kernel import resolve_model_config

    use_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if use_cuda else torch.device("cpu")
    return build_eval_fn(
        cfg.eval.suite,
        cfg.eval.weights,
        cfg.eval.data_root,
        run_dir,
        resolve_model_config(cfg.model.name, cfg.model.overrides)[1],
        has_teacher=cfg.loss.objective != "clip",
        device=device,
    )
