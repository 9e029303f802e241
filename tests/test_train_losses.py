"""Trainer maths: DINO loss against a float64 formula, centring, schedules, optimiser groups, EMA teacher,
and ``objective: clip`` being exactly open_clip's ClipLoss."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip.loss import ClipLoss
from torch.nn import functional as F

from silc.config import config_from_dict
from silc.heads import LAST_LAYER_SCALE, DINOHead, HeadConfig
from silc.losses import ContrastiveLoss, DINOLoss
from silc.optim import OptimConfig, build_optimizer
from silc.schedules import lr_at, momentum_at, teacher_temp_at
from silc.train import Trainer
from tests.train_fixtures import tiny_config, write_pairs_csv


def dino_reference(student, teacher, center, n_s, n_t, ts, tt):
    """The DINO cross-entropy written out in float64 with explicit loops over views and samples."""
    s = student.double().chunk(n_s)
    t = teacher.double().chunk(n_t)
    c = center.double()
    total, pairs = 0.0, 0
    for i in range(n_t):
        q = torch.exp((t[i] - c) / tt)
        q = q / q.sum(-1, keepdim=True)
        for v in range(n_s):
            if v == i:
                continue
            logits = s[v] / ts
            logp = logits - torch.log(torch.exp(logits).sum(-1, keepdim=True))
            total += float(sum(-(q[b] * logp[b]).sum() for b in range(q.shape[0])) / q.shape[0])
            pairs += 1
    return total / pairs


def test_dino_loss_matches_float64_formula():
    g = torch.Generator().manual_seed(0)
    B, K, G, L = 5, 17, 2, 3
    student = torch.randn((G + L) * B, K, generator=g) * 3
    teacher = torch.randn(G * B, K, generator=g) * 3
    loss = DINOLoss(K, student_temp=0.1, center_momentum=0.9)
    loss.center.copy_(torch.randn(1, K, generator=g) * 0.5)
    center0 = loss.center.clone()
    got = loss(student, teacher, G + L, G, teacher_temp=0.055)
    want = dino_reference(student, teacher, center0, G + L, G, 0.1, 0.055)
    assert got.item() == pytest.approx(want, rel=1e-5)
    # 2 teacher views x 5 student views minus the 2 identical pairs = 8 pairs; a single global view has none.
    with pytest.raises(ValueError):
        DINOLoss(K)(student[:B], teacher[:B], 1, 1, 0.04)


def test_center_is_ema_of_teacher_batch_mean():
    g = torch.Generator().manual_seed(1)
    loss = DINOLoss(8, center_momentum=0.9)
    c0 = torch.randn(1, 8, generator=g)
    loss.center.copy_(c0)
    teacher = torch.randn(6, 8, generator=g)
    loss(torch.randn(9, 8, generator=g), teacher, 3, 2, 0.04)
    torch.testing.assert_close(loss.center, 0.9 * c0 + 0.1 * teacher.mean(0, keepdim=True))


def test_schedules_at_given_steps():
    # teacher temperature: 0.04 -> 0.07 linearly over 30 steps, then flat
    assert teacher_temp_at(0, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert teacher_temp_at(15, 0.04, 0.07, 30) == pytest.approx(0.055)
    assert teacher_temp_at(30, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temp_at(1000, 0.04, 0.07, 30) == pytest.approx(0.07)
    # EMA momentum: cosine 0.996 -> 1.0 (DINO), constant stays put
    assert momentum_at(0, "cosine", 0.996, 1.0, 100) == pytest.approx(0.996)
    assert momentum_at(50, "cosine", 0.996, 1.0, 100) == pytest.approx(0.998)
    assert momentum_at(100, "cosine", 0.996, 1.0, 100) == pytest.approx(1.0)
    assert momentum_at(25, "cosine", 0.996, 1.0, 100) == pytest.approx(
        1.0 - 0.004 * (1 + math.cos(math.pi / 4)) / 2
    )
    assert all(momentum_at(s, "constant", 0.99, 1.0, 100) == 0.99 for s in (0, 50, 100))
    # lr: linear warm-up (step+1)/warmup, cosine to min_lr
    assert lr_at(0, 1.0, 10, 110) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 110) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, min_lr=0.1) == pytest.approx(0.55)
    assert lr_at(110, 1.0, 10, 110, min_lr=0.1) == pytest.approx(0.1)


def test_head_and_no_weight_decay_groups():
    head = DINOHead(12, HeadConfig(out_dim=40, hidden_dim=24, bottleneck_dim=8, nlayers=3))
    out = head(torch.randn(3, 12))
    assert out.shape == (3, 40)
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(40))  # weight-normalised, scale frozen at 1
    assert not head.last_layer.parametrizations.weight.original0.requires_grad
    model = torch.nn.ModuleDict({"head": DINOHead(12, HeadConfig(40, 24, 8, 3, norm_last_layer=False))})
    model.logit_scale = torch.nn.Parameter(torch.ones([]))
    model.ln = torch.nn.LayerNorm(12)
    opt = build_optimizer(model, OptimConfig(weight_decay=0.3))
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in opt.param_groups[0]["params"]}
    no_decay = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.3 and opt.param_groups[1]["weight_decay"] == 0.0
    assert decay == {
        "head.mlp.0.weight",
        "head.mlp.2.weight",
        "head.mlp.4.weight",
        "head.last_layer.parametrizations.weight.original1",
    }
    assert {"logit_scale", "ln.weight", "ln.bias", "head.mlp.0.bias", f"head.{LAST_LAYER_SCALE}"} <= no_decay


def make_trainer(tmp_path, **sections) -> Trainer:
    csv = write_pairs_csv(tmp_path / "data", n=12)
    cfg = config_from_dict(tiny_config(csv, **sections))
    return Trainer(cfg, tmp_path / "run")


def test_teacher_gets_no_gradient_and_moves_only_by_ema(tmp_path):
    trainer = make_trainer(tmp_path, ema={"schedule": "constant", "momentum": 0.7})
    teacher, student = trainer.teacher, trainer.model
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not any(id(p) in {id(q) for q in student.parameters()} for p in teacher.parameters())
    # The text tower is not duplicated into the teacher.
    assert {n.split(".")[0] for n, _ in teacher.named_parameters()} == {"visual", "head"}
    batch = next(iter(trainer.loader))
    before = [p.detach().clone() for p in teacher.parameters()]
    trainer.train_step(batch)
    after_student = list(student.clip.visual.parameters()) + list(student.head.parameters())
    for t_old, t_new, s in zip(before, teacher.parameters(), after_student, strict=True):
        assert t_new.grad is None
        torch.testing.assert_close(t_new, 0.7 * t_old + 0.3 * s.detach(), rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))


def test_objective_clip_is_open_clip_cliploss_alone(tmp_path):
    trainer = make_trainer(tmp_path, loss={"objective": "clip"}, views={"global_crops": 1, "local_crops": 0})
    assert trainer.teacher is None and trainer.model.head is None
    batch = next(iter(trainer.loader))
    clip = trainer.model.clip
    with torch.no_grad():
        img = clip.encode_image(batch["global"][:, 0], normalize=True)
        txt = clip.encode_text(batch["text"], normalize=True)
        want = ClipLoss()(img, txt, clip.logit_scale.exp())
    metrics = trainer.train_step(batch)
    assert "loss_distill" not in metrics
    assert metrics["loss"] == pytest.approx(want.item(), rel=1e-6)
    assert metrics["loss_contrastive"] == metrics["loss"]


def test_contrastive_loss_averages_views_and_supports_siglip():
    g = torch.Generator().manual_seed(2)
    views = [F.normalize(torch.randn(6, 8, generator=g), dim=-1) for _ in range(2)]
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    got = ContrastiveLoss("clip")(views, txt, scale)
    torch.testing.assert_close(got, (ClipLoss()(views[0], txt, scale) + ClipLoss()(views[1], txt, scale)) / 2)
    bias = torch.tensor(-10.0)
    logits = scale * views[0] @ txt.T + bias
    labels = 2 * torch.eye(6) - 1
    want = -F.logsigmoid(labels * logits).sum() / 6
    torch.testing.assert_close(ContrastiveLoss("siglip")(views[:1], txt, scale, bias), want)


def test_deterministic_mode_is_on_during_run_only(tmp_path):
    """torch's deterministic switch is process-wide: a run turns it on while training and restores it after."""
    trainer = make_trainer(tmp_path, train={"steps": 1, "save_every": 0, "deterministic": True})
    seen = []
    step = trainer.train_step
    trainer.train_step = lambda batch: (
        seen.append(torch.are_deterministic_algorithms_enabled()) or step(batch)
    )
    assert not torch.are_deterministic_algorithms_enabled()
    trainer.run()
    assert seen == [True]
    assert not torch.are_deterministic_algorithms_enabled()
