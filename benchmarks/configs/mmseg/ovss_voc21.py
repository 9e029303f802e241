# Zero-shot Pascal VOC 2012 with its background class (VOC21), protocol `voc21` of `silc-bench eval seg-ade20k`
# (suite ovss8) at NACLIP's settings: short side 336, whole-image inference (one window the size of the image:
# crop and stride 2048, the longest side the resize keeps), mmseg's PascalVOCDataset (background 0 is a class, 255
# ignored), class names names/voc21.txt (mmseg's with SCLIP/NACLIP's synonyms; the best synonym scores), 80 OpenAI
# templates; a pixel whose top class probability (softmax over every query at logit scale 40) is below 0.1 is
# background. Layout (mmseg's): VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs),
# ImageSets/Segmentation/val.txt}. The dataset is voc20.py's, everything else ade20k_448.py's. Run it with
# mmengine's Runner as the README shows for ade20k_448.py.
_base_ = ["./voc20.py"]

work_dir = "work_dirs/zeroshot_ovss_voc21"

model = dict(
    class_names="{{fileDirname}}/names/voc21.txt",
    crop_size=2048,
    stride=2048,
    logit_scale=40.0,
    bg_threshold=0.1,
)
test_pipeline = [dict(t, scale=(2048, 336)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(type="PascalVOCDataset", pipeline=test_pipeline))
