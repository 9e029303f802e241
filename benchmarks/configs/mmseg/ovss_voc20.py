# Zero-shot Pascal VOC 2012 without background (VOC20), protocol `voc20` of `silc-bench eval seg-ade20k` (suite
# ovss8) at NACLIP's settings: short side 336, whole-image inference (crop and stride 2048: one window the size of
# the image), PascalVOC20Dataset (background 0 and boundaries 255 ignored), class names names/voc20.txt (mmseg's
# with SCLIP/NACLIP's synonyms), 80 OpenAI templates. The dataset and layout are voc20.py's (VOCdevkit/VOC2012),
# everything else ade20k_448.py's. Run it with mmengine's Runner as the README shows for ade20k_448.py.
_base_ = ["./voc20.py"]

work_dir = "work_dirs/zeroshot_ovss_voc20"

model = dict(class_names="{{fileDirname}}/names/voc20.txt", crop_size=2048, stride=2048)
test_pipeline = [dict(t, scale=(2048, 336)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
