"""Masked patch self-distillation (objective ``silc_masked``): the loss against a float64 formula, block masks, the
mask token in the ViT's tokens, the trainer (the term trains the mask token and the patch heads; resume is
bit-exact) and bad config values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from silc.checkpoint import load_checkpoint
from silc.config import config_from_dict, validate
from silc.errors import UserError
from silc.kernel import build_model, resolve_model_config, vit_tokens
from silc.losses import MaskedPatchLoss
from silc.masking import MaskConfig, batch_masks, block_mask
from silc.train import train
from silc_bench.cli import main
from tests.test_train_checkpoint import flat_tensors
from tests.train_fixtures import TINY_MODEL, tiny_config, write_config, write_pairs_csv


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    return write_pairs_csv(tmp_path_factory.mktemp("pairs"), n=16)


def masked_config(pairs_csv, **sections) -> dict:
    cfg = tiny_config(pairs_csv, **sections)
    cfg["loss"] = {**cfg["loss"], "objective": "silc_masked", "masked_weight": 0.5}
    cfg["mask"] = {"ratio": [0.2, 0.5], "sample_prob": 0.5}
    return cfg


def test_loss_is_the_float64_formula() -> None:
    g = torch.Generator().manual_seed(0)
    b, n, k, t_s, t_t = 4, 9, 7, 0.1, 0.05
    student, teacher = torch.randn(b, n, k, generator=g), torch.randn(b, n, k, generator=g)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[0, [1, 2, 5]] = True
    mask[2, :] = True  # images 1 and 3 unmasked: they do not count
    loss_fn = MaskedPatchLoss(k, student_temp=t_s, center_momentum=0.8)
    loss_fn.center.copy_(torch.randn(1, k, generator=g))
    center = loss_fn.center.double().clone()
    got = loss_fn(student, teacher, mask, t_t)
    s, t = student.double(), teacher.double()
    per_image = []
    for i in range(b):
        patches = [p for p in range(n) if mask[i, p]]
        if not patches:
            continue
        ce = []
        for p in patches:
            q = torch.exp((t[i, p] - center[0]) / t_t)
            q = q / q.sum()
            log_p = s[i, p] / t_s - torch.logsumexp(s[i, p] / t_s, dim=0)
            ce.append(-(q * log_p).sum())
        per_image.append(sum(ce) / len(ce))
    assert float(got) == pytest.approx(float(sum(per_image) / len(per_image)), rel=1e-5)
    # the centre moved to 0.8 c + 0.2 (mean over every patch of every image), masked or not
    want = 0.8 * center + 0.2 * t.reshape(-1, k).mean(dim=0, keepdim=True)
    assert torch.allclose(loss_fn.center.double(), want, atol=1e-6)


def test_loss_without_masked_patches_is_zero_with_a_graph() -> None:
    student = torch.randn(2, 4, 5, requires_grad=True)
    loss = MaskedPatchLoss(5)(student, torch.randn(2, 4, 5), torch.zeros(2, 4, dtype=torch.bool), 0.04)
    loss.backward()
    assert float(loss.detach()) == 0.0 and student.grad is not None and not student.grad.any()


def test_block_masks_are_rectangles_within_target_and_deterministic() -> None:
    cfg = MaskConfig()
    for seed in range(20):
        m = block_mask((14, 14), 60, cfg, torch.Generator().manual_seed(seed))
        assert 0 < int(m.sum()) <= 60
        again = block_mask((14, 14), 60, cfg, torch.Generator().manual_seed(seed))
        assert torch.equal(m, again)
    masks = batch_masks(
        8, (6, 6), MaskConfig(ratio=(0.1, 0.5), sample_prob=0.5), torch.Generator().manual_seed(3)
    )
    counts = masks.sum(dim=1)
    assert masks.shape == (8, 36) and int((counts > 0).sum()) == 4
    assert int(counts.max()) <= round(36 * 0.5)
    # one rectangle: a single 12-patch target on an empty 14x14 grid is filled as blocks, not scattered patches
    m = block_mask((14, 14), 12, MaskConfig(min_patches=12), torch.Generator().manual_seed(1))
    rows, cols = m.nonzero(as_tuple=True)
    assert int(m.sum()) == (int(rows.max() - rows.min()) + 1) * (int(cols.max() - cols.min()) + 1)


def test_mask_token_replaces_the_masked_patch_embeddings() -> None:
    _, model_cfg = resolve_model_config(TINY_MODEL["name"], TINY_MODEL["overrides"])
    visual = build_model(model_cfg, "model", allow_coca=False).visual.eval()
    images = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5]] = True
    token = torch.randn(visual.conv1.out_channels)
    got, _ = vit_tokens(visual, images, mask=mask, mask_token=token)
    plain, _ = vit_tokens(visual, images)
    # by hand: patch embeddings, masked ones swapped for the token, then class token, positions, ln_pre
    emb = visual.conv1(images).flatten(2).transpose(1, 2)
    emb[0, [0, 5]] = token
    x = torch.cat([visual.class_embedding.expand(2, 1, -1), emb], dim=1) + visual.positional_embedding
    assert torch.allclose(got, visual.ln_pre(x), atol=1e-6)
    assert torch.equal(got[1], plain[1]) and not torch.allclose(got[0, 1], plain[0, 1])


def test_masked_objective_trains_the_mask_token_and_patch_heads(tmp_path, pairs_csv) -> None:
    run = tmp_path / "run"
    train(config_from_dict(masked_config(pairs_csv, train={"steps": 3, "save_every": 3})), run)
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    log = [line for line in (run / "log.jsonl").read_text().splitlines()]
    assert all('"loss_masked"' in line for line in log)
    assert {"patch", "patch_center"} <= set(ckpt) and set(ckpt["state_dict"]) == set(
        build_model(
            resolve_model_config(TINY_MODEL["name"], TINY_MODEL["overrides"])[1], "m", allow_coca=False
        ).state_dict()
    )  # the open_clip state_dict holds no SiLC key
    torch.manual_seed(0)
    fresh = config_from_dict(masked_config(pairs_csv, train={"steps": 3, "stop_at": 0}))
    assert fresh.loss.objective == "silc_masked"
    # the mask token moved from its initialisation (gradients reach it), the patch centre left 0
    from silc.model import build_student

    torch.manual_seed(0)
    _, model_cfg = resolve_model_config(TINY_MODEL["name"], TINY_MODEL["overrides"])
    start = build_student(model_cfg, fresh.head, masked=True)
    assert not torch.equal(start.patch.mask_token.detach(), ckpt["patch"]["mask_token"])
    assert ckpt["patch_center"].abs().sum() > 0
    teacher_patch = {k: v for k, v in ckpt["teacher"].items() if k.startswith("patch_head.")}
    assert teacher_patch and not all(
        torch.equal(v, ckpt["patch"][k.replace("patch_head.", "head.")]) for k, v in teacher_patch.items()
    )  # the teacher's patch head is an EMA of the student's, not a copy


def test_masked_resume_is_bit_exact(tmp_path, pairs_csv) -> None:
    cfg = masked_config(pairs_csv, train={"steps": 5, "save_every": 2})
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(config_from_dict(cfg), straight)
    train(
        config_from_dict(masked_config(pairs_csv, train={"steps": 5, "save_every": 2, "stop_at": 2})), split
    )
    cfg_path = write_config(tmp_path / "cfg.yaml", cfg)
    assert main(["train", "--config", str(cfg_path), "--out", str(split), "--resume", "latest"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(split / "checkpoints" / "latest.pt")
    keys = ("state_dict", "teacher", "head", "center", "patch", "patch_center", "optimizer")
    ta, tb = flat_tensors({k: a[k] for k in keys}), flat_tensors({k: b[k] for k in keys})
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert set(ta) == set(tb) and not different, different[:5]


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("mask", {"ratio": [0.5, 0.2]}, "mask.ratio"),
        ("mask", {"ratio": [0.1, 1.0]}, "mask.ratio"),
        ("mask", {"sample_prob": 0.0}, "mask.sample_prob"),
        ("mask", {"min_patches": 0}, "mask.min_patches"),
        ("loss", {"objective": "silc_masked", "masked_weight": -1.0}, "loss.masked_weight"),
    ],
)
def test_bad_masked_config_names_the_key(pairs_csv, section, values, needle) -> None:
    cfg = masked_config(pairs_csv)
    cfg[section] = {**cfg[section], **values}
    with pytest.raises(UserError, match=needle):
        validate(config_from_dict(cfg))


def test_masked_term_changes_the_step(pairs_csv, tmp_path) -> None:
    """The same run with masked_weight 0 and 0.5 parts after the first step (the term has a gradient)."""
    runs = []
    for weight in (0.0, 0.5):
        cfg = masked_config(pairs_csv, train={"steps": 2, "save_every": 2})
        cfg["loss"]["masked_weight"] = weight
        train(config_from_dict(cfg), tmp_path / str(weight))
        runs.append(load_checkpoint(tmp_path / str(weight) / "checkpoints" / "latest.pt"))
    assert not torch.equal(runs[0]["state_dict"]["visual.proj"], runs[1]["state_dict"]["visual.proj"])
    assert (
        F.cosine_similarity(
            runs[0]["state_dict"]["visual.proj"].flatten(),
            runs[1]["state_dict"]["visual.proj"].flatten(),
            dim=0,
        )
        > 0.9
    )
