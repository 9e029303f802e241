# F-VLM-style detector on the synthetic world's COCO (64 px images, its own base/novel split), small enough to
# train on CPU: the default config of protocol `fvlm` of `silc-bench eval det-ovcoco`. Same parts as
# fvlm_coco_gpu.py (see _fvlm_base.py); narrower pyramid (64 channels, strides p/2, p, 2p), 16-px anchors,
# batch 4, AdamW lr 1e-3, 200 iterations.
# From the repository root, with mmengine's Runner:
#   .venv/bin/silc-bench data synth --out .cache/world
#   .venv/bin/silc-bench data ov-coco --coco .cache/world/coco --out .cache/world-ov \
#     --split .cache/world/coco/annotations/ov_split.json
#   .venv/bin/python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#     cfg = Config.fromfile('benchmarks/configs/mmdet/fvlm_synth_cpu.py'); \
#     cfg.model.backbone.encoder = 'tiny=openclip:silc/model_configs/silc-tiny-vit.json'; \
#     r = Runner.from_cfg(cfg); r.train(); print(r.test())"
_base_ = "./_fvlm_base.py"
work_dir = "work_dirs/fvlm_synth"

data_root = ".cache/world-ov/"
split_file = data_root + "annotations/ov_split.json"
img_scale = (64, 64)
pyramid_channels = 64
model = dict(
    split_file=split_file,
    backbone=dict(
        encoder="tiny=openclip:silc/model_configs/silc-tiny-vit.json",
        out_channels=pyramid_channels,
        scales=(2.0, 1.0, 0.5),
    ),
    rpn_head=dict(
        in_channels=pyramid_channels, feat_channels=pyramid_channels, anchor_generator=dict(scales=[4])
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=pyramid_channels, finest_scale=28),
        bbox_head=dict(in_channels=pyramid_channels, fc_out_channels=256),
    ),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)),
)

# _fvlm_base.py's pipelines at this scale, and its datasets and evaluator on these files.
train_pipeline = [dict(t, scale=img_scale) if t.type == "Resize" else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=img_scale) if t.type == "Resize" else t for t in _base_.test_pipeline]
# One process, no workers: serialize_data=False skips the dataset's copy (and its gc pass).
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(
        split_file=split_file,
        data_root=data_root,
        filter_cfg=dict(min_size=0),
        serialize_data=False,
        pipeline=train_pipeline,
    ),
)
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(split_file=split_file, data_root=data_root, serialize_data=False, pipeline=test_pipeline),
)
test_evaluator = dict(ann_file=data_root + "annotations/instances_val2017_ov.json")

max_iters = 200
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters + 1)
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=20)]
default_hooks = dict(logger=dict(interval=10), checkpoint=None)
