# Zero-shot Pascal VOC-20 (VOC 2012 val without background) with PascalVOC20Dataset (mmseg's PascalVOCDataset
# minus `background`, reduce_zero_label) and IoUMetric, at the ade-448 recipe (TCL / ClearCLIP).
# Layout (mmseg's): VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs),
# ImageSets/Segmentation/val.txt}.
# Run it with mmengine's Runner as the README shows for ade20k_448.py.
custom_imports = dict(imports=["adapters.mmseg", "benchmarks.seg_mmseg"], allow_failed_imports=False)
default_scope = "mmseg"
work_dir = "work_dirs/zeroshot_voc20"

model = dict(
    type="ZeroShotSegmentor",
    encoder="clip=openclip:ViT-B-16@weights/ViT-B-16.bin",
    class_names=dict(dataset="PascalVOC20Dataset"),
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
        type="PascalVOC20Dataset",
        data_root="data/VOCdevkit/VOC2012",
        ann_file="ImageSets/Segmentation/val.txt",
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
        pipeline=test_pipeline,
    ),
)
test_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_cfg = dict(type="TestLoop")
