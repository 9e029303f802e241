# Linear probing on the synthetic world's ADE20K layout, protocol `linear-synth` of `silc-bench eval seg-ade20k`:
# linear_ade20k_512.py's recipe at the world's scale (64-px images: short side 64, 64-px crops and windows every
# 32 px), SynthADE20KDataset (the world's own classnames.txt, reduce_zero_label), a shorter schedule (batch 8,
# 600 iterations, 60 of warmup). Write the world with `silc-bench data synth --out .cache/world`.
# Inherits everything else from linear_ade20k_512.py.
_base_ = ["./linear_ade20k_512.py"]

work_dir = "work_dirs/linear_synth"
crop_size = (64, 64)
data_root = ".cache/world/ADEChallengeData2016"

model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=22),
    test_cfg=dict(crop_size=crop_size, stride=(32, 32)),
)
train_pipeline = [
    dict(t, scale=(2048, 64))
    if t.type == "RandomResize"
    else (dict(t, crop_size=crop_size) if t.type == "RandomCrop" else t)
    for t in _base_.train_pipeline
]
test_pipeline = [dict(t, scale=(2048, 64)) if t.type == "Resize" else t for t in _base_.test_pipeline]
train_dataloader = dict(
    batch_size=8, dataset=dict(type="SynthADE20KDataset", data_root=data_root, pipeline=train_pipeline)
)
test_dataloader = dict(dataset=dict(type="SynthADE20KDataset", data_root=data_root, pipeline=test_pipeline))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=60),
    dict(type="PolyLR", power=1.0, eta_min=0.0, by_epoch=False, begin=60, end=600),
]
train_cfg = dict(max_iters=600)
