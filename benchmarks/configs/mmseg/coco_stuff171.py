# Zero-shot COCO-Stuff-171 (164k val) with mmseg's COCOStuffDataset and IoUMetric, at the ade-448 recipe
# (TCL / ClearCLIP). Layout (mmseg's): coco_stuff164k/{images/val2017/*.jpg,
# annotations/val2017/*_labelTrainIds.png} as written by mmseg's coco_stuff164k.py converter.
# Run it with mmengine's Runner as the README shows for ade20k_448.py.
custom_imports = dict(imports=["adapters.mmseg", "benchmarks.seg_mmseg"], allow_failed_imports=False)
default_scope = "mmseg"
work_dir = "work_dirs/zeroshot_coco_stuff171"

model = dict(
    type="ZeroShotSegmentor",
    encoder="clip=openclip:ViT-B-16@weights/ViT-B-16.bin",
    class_names=dict(dataset="COCOStuffDataset"),
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
        type="COCOStuffDataset",
        data_root="data/coco_stuff164k",
        data_prefix=dict(img_path="images/val2017", seg_map_path="annotations/val2017"),
        pipeline=test_pipeline,
    ),
)
test_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_cfg = dict(type="TestLoop")
