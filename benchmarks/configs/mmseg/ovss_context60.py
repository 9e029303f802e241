# Zero-shot Pascal Context with its background class (Context60), protocol `context60` of `silc-bench eval
# seg-ade20k` (suite ovss8) at NACLIP's settings: short side 336, 224-px windows every 112 px, mmseg's
# PascalContextDataset (60 classes, background 0 is a class) and its class names, 80 OpenAI templates; a pixel
# whose top class probability (softmax over every class at logit scale 40) is below 0.1 is background.
# Layout (mmseg's): VOCdevkit/VOC2010/{JPEGImages/*.jpg, SegmentationClassContext/*.png,
# ImageSets/SegmentationContext/val.txt}. The dataset is pascal_context59.py's, everything else ade20k_448.py's.
# Run it with mmengine's Runner as the README shows for ade20k_448.py.
_base_ = ["./pascal_context59.py"]

work_dir = "work_dirs/zeroshot_ovss_context60"

model = dict(
    class_names=dict(dataset="PascalContextDataset"),
    crop_size=224,
    stride=112,
    logit_scale=40.0,
    bg_threshold=0.1,
)
test_pipeline = [dict(t, scale=(2048, 336)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(type="PascalContextDataset", pipeline=test_pipeline))
