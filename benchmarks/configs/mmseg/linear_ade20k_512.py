# Linear probing on ADE20K-150, protocol `linear` of `silc-bench eval seg-ade20k` (DINOv2's linear protocol): a
# BNHead (BatchNorm + 1x1 conv) on the frozen dense features of the encoder, trained on the training split with
# mmseg's ADE20K training pipeline (random resize 0.5-2.0 of short side 512, 512 crops with cat_max_ratio 0.75,
# flip, photometric distortion), AdamW lr 1e-3 / weight decay 1e-4, batch 16, 40k iterations (linear warmup for
# 1.5k, then poly), evaluated on the validation split with 512 windows every 341 px and IoUMetric. The harness sets
# `decode_head.in_channels`/`channels` to the encoder's width; run it with mmengine's Runner from the repository
# root, setting `model.backbone.encoder` (any silc-bench model SPEC), those widths and the dataset root.
# The validation data, evaluator and test loop are ade20k_448.py's, at short side 512.
_base_ = ["./ade20k_448.py"]
custom_imports = dict(imports=["adapters.mmseg_probe", "benchmarks.seg_mmseg"], allow_failed_imports=False)
work_dir = "work_dirs/linear_ade20k_512"
crop_size = (512, 512)

model = dict(
    _delete_=True,
    type="LinearProbeSegmentor",
    data_preprocessor=dict(
        type="PaddedSegDataPreProcessor", bgr_to_rgb=True, size=crop_size, pad_val=0, seg_pad_val=255
    ),
    backbone=dict(
        type="FrozenDenseEncoder", encoder="clip=openclip:ViT-B-16@weights/ViT-B-16.bin", dense_mode="naive"
    ),
    decode_head=dict(
        type="BNHead",
        in_channels=512,
        channels=512,
        num_classes=150,
        dropout_ratio=0.0,
        norm_cfg=dict(type="BN", requires_grad=True),
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)),
)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [dict(t, scale=(2048, 512)) if t.type == "Resize" else t for t in _base_.test_pipeline]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="ADE20KDataset",
        data_root="data/ade/ADEChallengeData2016",
        data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        pipeline=train_pipeline,
    ),
)
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(
    type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=40000),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=40000)
