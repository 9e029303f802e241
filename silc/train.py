"""The SiLC training loop: contrastive + λ·self-distillation, EMA teacher, AMP, DDP, step-exact resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from silc import distributed
from silc.checkpoint import check_architecture, load_checkpoint, save_checkpoint
from silc.config import Config, dump_config, to_dict
from silc.data.pairs import build_loader
from silc.errors import UserError
from silc.io import atomic_write_json
from silc.kernel import autocast, make_tokenizer, resolve_model_config
from silc.kernel import resolve_precision as resolve_precision_name
from silc.losses import ContrastiveLoss, DINOLoss, MaskedPatchLoss
from silc.masking import batch_masks
from silc.model import SiLCModel, Teacher, build_student
from silc.optim import build_optimizer
from silc.schedules import lr_at, momentum_at, teacher_temp_at
from silc.views import MultiCropViews

log = logging.getLogger(__name__)

# eval_fn(step, student_clip, teacher=Teacher | None) -> flat metrics; handed in by the CLI layer.
EvalFn = Callable[..., dict[str, float]]
LOGIT_SCALE_MAX = math.log(100.0)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The kernel's precision names; ``auto`` → bf16 on CUDA, fp32 on CPU; reduced precision on CPU is refused."""
    resolved = resolve_precision_name(precision, device, cuda_default="bf16")
    if resolved != "fp32" and device.type != "cuda":
        raise UserError(f"train.precision: {precision} needs a CUDA device; use fp32 on CPU")
    return resolved


def open_clip_config_json(model_cfg: dict) -> dict:
    """``open_clip_config.json`` in open_clip's local-dir/HF form (``model_cfg`` + ``preprocess_cfg``)."""
    pre = model_cfg.get("preprocess_cfg", {})
    return {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(pre.get("mean", OPENAI_DATASET_MEAN)),
            "std": list(pre.get("std", OPENAI_DATASET_STD)),
        },
    }


class Trainer:
    """Owns the student, teacher, losses, optimiser and data of one run; ``run()`` trains to ``train.steps``."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        resume: str | Path | None = None,
        eval_fn: EvalFn | None = None,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.eval_fn = eval_fn
        if cfg.train.deterministic:  # cuBLAS reads this when its first handle is made
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.dist = distributed.init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.precision = resolve_precision(cfg.train.precision, self.device)
        if cfg.train.batch_size % self.dist.world_size:
            raise UserError(
                f"train.batch_size: {cfg.train.batch_size} is not divisible by the {self.dist.world_size} processes"
            )
        self.local_batch = cfg.train.batch_size // self.dist.world_size
        obj = cfg.loss.objective
        self.use_contrastive = obj in ("clip", "silc", "silc_masked")
        self.use_distill = obj in ("distill", "silc", "silc_masked")
        self.use_masked = obj == "silc_masked"

        self.model_name, self.model_cfg = resolve_model_config(cfg.model.name, cfg.model.overrides)
        torch.manual_seed(cfg.seed)
        self.model: SiLCModel = build_student(
            self.model_cfg,
            cfg.head if self.use_distill else None,
            None if resume else cfg.model.pretrained,
            masked=self.use_masked,
        )
        if self.use_masked and getattr(self.model.clip.visual.patch_dropout, "prob", 0.0) > 0:
            raise UserError(
                "loss.objective silc_masked: needs a ViT without patch dropout (vision_cfg.patch_dropout 0)"
            )
        if not self.use_contrastive:  # distill-only: the text tower and logit scale take no part
            for name, p in self.model.clip.named_parameters():
                if not name.startswith("visual."):
                    p.requires_grad_(False)
        self.model.to(self.device)
        if cfg.model.grad_checkpointing:
            self.model.clip.set_grad_checkpointing(True)
        self.teacher = Teacher(self.model).to(self.device) if self.use_distill else None
        self.dino = DINOLoss(cfg.head.out_dim, cfg.loss.student_temp, cfg.loss.center_momentum).to(
            self.device
        )
        self.masked_loss = (
            MaskedPatchLoss(cfg.head.out_dim, cfg.loss.student_temp, cfg.loss.center_momentum).to(self.device)
            if self.use_masked
            else None
        )
        self.contrastive = (
            ContrastiveLoss(cfg.loss.contrastive, self.dist.rank, self.dist.world_size)
            if self.use_contrastive
            else None
        )
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step = 0
        self.samples_seen = 0
        self.data_position: Any = None
        if resume is not None:
            self._restore(resume)

        ddp_kwargs = {"find_unused_parameters": self.use_distill and cfg.loss.distill_start_step > 0}
        if self.device.type == "cuda":
            ddp_kwargs["device_ids"] = [self.device.index]
        self.forward = (
            DistributedDataParallel(self.model, **ddp_kwargs) if self.dist.distributed else self.model
        )
        if cfg.model.compile:
            self.forward = torch.compile(self.forward)

        pre = open_clip_config_json(self.model_cfg)["preprocess_cfg"]
        self.views = MultiCropViews(cfg.views, pre["mean"], pre["std"])
        self.tokenizer = make_tokenizer(self.model_cfg, None, "model")  # as adapters.load_encoder on the run
        self.loader = build_loader(
            cfg.data,
            self.views,
            self.tokenizer,
            self.local_batch,
            cfg.seed,
            self.dist.rank,
            self.dist.world_size,
            self.data_position,
        )

    # ----------------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly; ``state_dict`` holds only the open_clip CLIP keys."""
        np_state = np.random.get_state()
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": list(random.getstate()[1]),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        }
        step = self.step
        return {
            "state_dict": {k: v.detach().cpu() for k, v in self.model.clip.state_dict().items()},
            "model_cfg": self.model_cfg,
            "model_name": self.model_name,
            "teacher": _cpu(self.teacher.state_dict()) if self.teacher is not None else None,
            "head": _cpu(self.model.head.state_dict()) if self.model.head is not None else None,
            "center": self.dino.center.detach().cpu(),
            **(self._masked_state() if self.use_masked else {}),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": {"step": step, **self.schedule_values(step)},
            "step": step,
            "epoch": int(self.loader.state_dict()["epoch"]),
            "samples_seen": self.samples_seen,
            "rng": rng,
            "data_position": distributed.gather_objects(self.loader.state_dict(), self.dist),
            "config": to_dict(self.cfg),
        }

    def _masked_state(self) -> dict[str, Any]:
        """The masked objective's own state: the student's patch predictor (mask token, patch head), the patch
        centre (the teacher's patch head is in ``teacher``)."""
        return {
            "patch": _cpu(self.model.patch.state_dict()),
            "patch_center": self.masked_loss.center.detach().cpu(),
        }

    def _restore(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        check_architecture(ckpt, self.model_cfg, path)
        if self.use_distill and ckpt.get("head") is None:
            raise UserError(f"{path}: checkpoint has no DINO head; it was trained with objective clip")
        self.model.clip.load_state_dict(ckpt["state_dict"])
        if self.model.head is not None:
            self.model.head.load_state_dict(ckpt["head"])
            self.teacher.load_state_dict(ckpt["teacher"])
            self.dino.center.copy_(ckpt["center"])
        if self.use_masked:
            if ckpt.get("patch") is None:
                raise UserError(
                    f"{path}: checkpoint has no patch predictor; it was not trained with silc_masked"
                )
            self.model.patch.load_state_dict(ckpt["patch"])
            self.masked_loss.center.copy_(ckpt["patch_center"])
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as e:
            raise UserError(f"{path}: optimizer state does not match this config ({e})") from None
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.samples_seen = int(ckpt["samples_seen"])
        self.data_position = ckpt["data_position"]
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate((3, tuple(rng["python"]), None))
        np.random.set_state(("MT19937", rng["numpy"]["keys"].numpy().astype(np.uint32), rng["numpy"]["pos"]))
        log.info("resumed from %s at step %d", path, self.step)

    def schedule_values(self, step: int) -> dict[str, float]:
        """lr, EMA momentum and teacher temperature at ``step`` (distillation schedules start at its start step)."""
        c = self.cfg
        d_step = max(step - c.loss.distill_start_step, 0)
        d_total = max(c.train.steps - c.loss.distill_start_step, 1)
        return {
            "lr": lr_at(step, c.optim.lr, c.optim.warmup_steps, c.train.steps, c.optim.min_lr),
            "momentum": momentum_at(d_step, c.ema.schedule, c.ema.momentum, c.ema.final_momentum, d_total),
            "teacher_temp": teacher_temp_at(
                d_step, c.loss.warmup_teacher_temp, c.loss.teacher_temp, c.loss.warmup_teacher_temp_steps
            ),
        }

    # ------------------------------------------------------------------------------------------------ step
    def autocast(self):
        return autocast(self.precision, self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss terms (this rank's values)."""
        c, step = self.cfg, self.step
        sched = self.schedule_values(step)
        for group in self.optimizer.param_groups:
            group["lr"] = sched["lr"]
        distill_on = self.use_distill and step >= c.loss.distill_start_step
        if distill_on and step == c.loss.distill_start_step and step > 0:
            self.teacher.copy_from(self.model)  # SigLIP 2 recipe: teacher starts as the current student
        # Stochastic layers draw from a generator seeded by (seed, step, rank): resuming needs no RNG replay.
        torch.manual_seed((c.seed * 1_000_003 + step) * 131 + self.dist.rank)

        dev = self.device
        gviews = batch["global"].to(dev, non_blocking=True)
        n_global = gviews.shape[1]
        global_x = gviews.transpose(0, 1).flatten(0, 1)  # view-major [G·B, 3, H, W]
        local_x = None
        n_local = batch["local"].shape[1] if "local" in batch else 0
        if distill_on and n_local:
            local_x = batch["local"].to(dev, non_blocking=True).transpose(0, 1).flatten(0, 1)
        clean_x = (
            batch["clean"].to(dev, non_blocking=True) if self.use_contrastive and "clean" in batch else None
        )
        text = batch["text"].to(dev, non_blocking=True) if self.use_contrastive else None
        masks = self._masks(global_x) if distill_on and self.use_masked else None

        terms: dict[str, torch.Tensor] = {}
        with self.autocast():
            out = self.forward(
                global_x,
                local_x,
                clean_x,
                text,
                distill=distill_on,
                masked_x=global_x if masks is not None else None,
                mask=masks,
            )
            total = global_x.new_zeros((), dtype=torch.float32)
            if self.use_contrastive:
                img = out["clean"] if clean_x is not None else out["global"]
                img_views = [
                    F.normalize(v.float(), dim=-1) for v in img.chunk(1 if clean_x is not None else n_global)
                ]
                clip = self.model.clip
                bias = clip.logit_bias.float() if getattr(clip, "logit_bias", None) is not None else None
                terms["loss_contrastive"] = self.contrastive(
                    img_views, F.normalize(out["text"].float(), dim=-1), clip.logit_scale.float().exp(), bias
                )
                total = total + terms["loss_contrastive"]
            if distill_on:
                if masks is not None:
                    teacher_out, teacher_patches = self.teacher.forward_with_patches(global_x)
                    terms["loss_masked"] = self.masked_loss(
                        out["student_patches"], teacher_patches, masks, sched["teacher_temp"]
                    )
                    total = total + c.loss.masked_weight * terms["loss_masked"]
                else:
                    teacher_out = self.teacher(global_x)
                terms["loss_distill"] = self.dino(
                    out["student"],
                    teacher_out,
                    n_global + (n_local if local_x is not None else 0),
                    n_global,
                    sched["teacher_temp"],
                )
                weight = c.loss.distill_weight if self.use_contrastive else 1.0
                total = total + weight * terms["loss_distill"]

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        metrics = {k: float(v.detach()) for k, v in terms.items()}
        metrics["loss"] = float(total.detach())
        if c.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            metrics["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], c.optim.grad_clip
                )
            )
        if self.model.head is not None and step < c.optim.freeze_last_layer_steps:
            for p in self.model.head.last_layer.parameters():
                p.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            self.model.clip.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        if distill_on:
            self.teacher.ema_update(self.model, sched["momentum"])
        self.step += 1
        self.samples_seen += c.train.batch_size
        metrics.update(sched if self.use_distill else {"lr": sched["lr"]})
        metrics["logit_scale"] = float(self.model.clip.logit_scale.detach().exp())
        return metrics

    def _masks(self, global_x: torch.Tensor) -> torch.Tensor:
        """Block masks for the student's global views ([G·B, h*w] bool, on the device) from a generator seeded by
        (seed, step, rank), so a resumed run draws the same masks and the other random streams are untouched."""
        visual = self.model.clip.visual
        grid = (global_x.shape[-2] // visual.patch_size[0], global_x.shape[-1] // visual.patch_size[1])
        seed = ((self.cfg.seed * 1_000_003 + self.step) * 131 + self.dist.rank) * 2 + 1
        gen = torch.Generator().manual_seed(seed)
        return batch_masks(global_x.shape[0], grid, self.cfg.mask, gen).to(global_x.device)

    @torch.no_grad()
    def probes(self) -> dict[str, float]:
        """Read-only state probes for trajectory fingerprints: teacher–student distance and DINO centre norm."""
        if self.teacher is None:
            return {}
        return {
            "teacher_student_distance": teacher_student_distance(self.teacher, self.model),
            "center_norm": float(torch.linalg.vector_norm(self.dino.center.double())),
        }

    # ------------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Train from the current step to ``train.steps``; returns the last logged record."""
        with deterministic_algorithms(self.cfg.train.deterministic):
            return self._train()

    def _train(self) -> dict[str, Any]:
        c, info = self.cfg, self.dist
        if info.is_main:
            dump_config(c, self.run_dir / "config.yaml")
            atomic_write_json(self.run_dir / "open_clip_config.json", open_clip_config_json(self.model_cfg))
        distributed.barrier(info)
        writer = self._tensorboard() if info.is_main and c.train.tensorboard else None
        bar = None
        if info.is_main and c.train.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.train.steps, initial=self.step, desc="train", dynamic_ncols=True)
        self.model.train()
        last: dict[str, Any] = {}
        window_start, window_samples = time.perf_counter(), 0
        batches = iter(self.loader)
        end = min(c.train.steps, c.train.stop_at or c.train.steps)
        while self.step < end:
            try:
                batch = next(batches)
            except StopIteration:  # epoch mode: the loader starts the next epoch on a new iteration
                batches = iter(self.loader)
                continue
            metrics = self.train_step(batch)
            window_samples += c.train.batch_size
            step = self.step
            if step % c.train.log_every == 0 or step == end:
                elapsed = time.perf_counter() - window_start
                metrics = distributed.all_reduce_mean({**metrics, **self.probes()}, info)
                last = {
                    "step": step,
                    "epoch": int(self.loader.state_dict()["epoch"]),
                    "samples_seen": self.samples_seen,
                    **metrics,
                    "samples_per_s": window_samples / max(elapsed, 1e-9),
                    "peak_mem_mb": peak_memory_mb(self.device),
                    "time": time.time(),
                }
                last.update(_skip_counts(self.loader))
                window_start, window_samples = time.perf_counter(), 0
                if info.is_main:
                    self._log(last, writer)
            if (
                c.train.eval_every
                and self.eval_fn is not None
                and (step % c.train.eval_every == 0 or step == end)
            ):
                self._evaluate(step, writer)
            if (c.train.save_every and step % c.train.save_every == 0) or step == end:
                state = self.state()
                if info.is_main:
                    save_checkpoint(self.run_dir, state, step)
                distributed.barrier(info)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        return last

    def _evaluate(self, step: int, writer) -> None:
        if self.dist.is_main:
            self.model.eval()
            with torch.no_grad():
                results = self.eval_fn(step, self.model.clip, teacher=self.teacher)
            self.model.train()
            self._log({"step": step, **{f"eval/{k}": v for k, v in results.items()}}, writer)
        distributed.barrier(self.dist)

    def _log(self, record: dict[str, Any], writer) -> None:
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k not in ("step", "time") and isinstance(v, int | float):
                    writer.add_scalar(k, v, record["step"])

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "train.tensorboard: needs the tensorboard package (pip install tensorboard)"
            ) from None
        return SummaryWriter(str(self.run_dir / "tensorboard"))


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """torch's deterministic algorithms for the block only: the switch is process-wide, so it is restored after."""
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident set size on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _skip_counts(loader) -> dict[str, int]:
    """Images read and undecodable images skipped so far on this rank."""
    state = loader.state_dict()
    return {"data_seen": int(state["seen"]), "data_skipped": int(state["skipped"])}


@torch.no_grad()
def teacher_student_distance(teacher: Teacher, student: SiLCModel) -> float:
    """‖θ_t − θ_s‖ / ‖θ_s‖ over the parameters the EMA update pairs (norms accumulated in float64)."""
    params_t, params_s = teacher.paired_parameters(student)
    diff = torch.stack(torch._foreach_norm(torch._foreach_sub(params_t, params_s))).double()
    norm = torch.stack(torch._foreach_norm(params_s)).double()
    return float(diff.square().sum().sqrt() / norm.square().sum().sqrt())


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in sd.items()}


def train(
    cfg: Config, run_dir: str | Path, resume: str | Path | None = None, eval_fn: EvalFn | None = None
) -> dict[str, Any]:
    """Train one run (single process or one torchrun rank); returns the last logged metrics."""
    trainer = Trainer(cfg, run_dir, resume, eval_fn)
    try:
        return trainer.run()
    finally:
        distributed.cleanup()
