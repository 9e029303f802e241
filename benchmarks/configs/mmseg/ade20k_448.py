# Zero-shot ADE20K-150, protocol `ade-448` of `silc-bench eval seg-ade20k` (TCL / ClearCLIP): short side 448,
# 448-px windows every 224 px, mmseg's 150 ADE20K class names x the 80 OpenAI templates, mmseg's ADE20KDataset
# (reduce_zero_label) and IoUMetric. Run it with mmengine's Runner from the repository root (README:
# "silc-bench eval seg-ade20k"), setting `model.encoder` (any silc-bench model SPEC) and the dataset root.
custom_imports = dict(imports=["adapters.mmseg", "benchmarks.seg_mmseg"], allow_failed_imports=False)
default_scope = "mmseg"
work_dir = "work_dirs/zeroshot_ade20k_448"

model = dict(
    type="ZeroShotSegmentor",
    encoder="clip=openclip:ViT-B-16@weights/ViT-B-16.bin",
    class_names=dict(dataset="ADE20KDataset"),
    templates="openai80",
    dense_mode="naive",
    crop_size=448,
    stride=224,
    logit_scale=100.0,
    bg_threshold=None,
    max_windows_per_forward=None,
    data_preprocessor=dict(type="PaddedSegDataPreProcessor", bgr_to_rgb=True),
)

test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 448), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="ADE20KDataset",
        data_root="data/ade/ADEChallengeData2016",
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
        pipeline=test_pipeline,
    ),
)
test_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_cfg = dict(type="TestLoop")
