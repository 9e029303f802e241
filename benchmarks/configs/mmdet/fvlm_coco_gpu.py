# F-VLM-style open-vocabulary detector on OV-COCO (48 base / 17 novel), protocol `fvlm` of
# `silc-bench eval det-ovcoco` with `--config fvlm_coco_gpu.py`. Frozen encoder, trained: simple pyramid, RPN and
# a text-embedding RoI head, on base boxes only; test-time score = detector^(1-w) * VLM^w (w = alpha base,
# beta novel); metric mmdet's OVCocoMetric (AP, AP50 for base / novel / all).
#
# GPU recipe (not run on this CPU-only machine; time and AP unmeasured): 8 GPUs x 8 images = batch 64,
# 1024 x 1024 inputs (longer side 1024, random flip), AdamW lr 2e-4, weight decay 0.1, 500-iteration linear
# warm-up, 36k iterations (~21 epochs of the 107k base-annotated train2017 images), lr x0.1 at 27k and 33k.
#   .venv/bin/silc-bench data ov-coco --coco data/coco --out data/ov-coco
#   MMDET=$(.venv/bin/python -c "import mmdet, os; print(os.path.dirname(mmdet.__file__))")
#   .venv/bin/torchrun --nproc-per-node 8 $MMDET/.mim/tools/train.py benchmarks/configs/mmdet/fvlm_coco_gpu.py \
#     --launcher pytorch --cfg-options model.backbone.encoder=silc=runs/silc/checkpoints/latest.pt
# Single process, from the repository root, with mmengine's Runner:
#   .venv/bin/python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#     cfg = Config.fromfile('benchmarks/configs/mmdet/fvlm_coco_gpu.py'); \
#     cfg.model.backbone.encoder = 'silc=runs/silc/checkpoints/latest.pt'; Runner.from_cfg(cfg).train()"
# then evaluate the plain weights it writes (work_dir/fvlm_detector.pt) through the harness:
#   .venv/bin/silc-bench eval det-ovcoco --protocol fvlm --config fvlm_coco_gpu.py --model silc=... \
#     --data data/coco --det-weights work_dirs/fvlm_coco/fvlm_detector.pt
_base_ = "./_fvlm_base.py"
work_dir = "work_dirs/fvlm_coco"
# Read by the det-ovcoco preflight: training this recipe anywhere but on CUDA is refused before anything runs
# (evaluating trained weights with --det-weights is not).
silc_bench_requires = dict(train_device="cuda")

# Data, pipelines and evaluator: _fvlm_base.py's (data/ov-coco/, 1024 x 1024 inputs).
train_dataloader = dict(batch_size=8, num_workers=4, persistent_workers=True)
test_dataloader = dict(batch_size=1, num_workers=2, persistent_workers=True)

max_iters = 36000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters + 1)
optim_wrapper = dict(
    type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-4, weight_decay=0.1), clip_grad=dict(max_norm=1.0)
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[27000, 33000], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=64)
