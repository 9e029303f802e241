# Zero-shot ADE20K-150, protocol `ade-336` of `silc-bench eval seg-ade20k` (SCLIP / NACLIP): short side 336,
# 224-px windows every 112 px, mmseg's 150 ADE20K class names x the 80 OpenAI templates, mmseg's ADE20KDataset
# (reduce_zero_label) and IoUMetric. Run it with mmengine's Runner from the repository root (README:
# "silc-bench eval seg-ade20k"), setting `model.encoder` (any silc-bench model SPEC) and the dataset root.
# Inherits everything else from ade20k_448.py.
_base_ = ["./ade20k_448.py"]

work_dir = "work_dirs/zeroshot_ade20k_336"

model = dict(crop_size=224, stride=112)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 336), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
