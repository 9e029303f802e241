# Zero-shot COCO-Object (COCO-Stuff-164k val's 80 things + background), protocol `coco-object` of `silc-bench eval
# seg-ade20k` (suite ovss8) at NACLIP's settings: short side 336, 224-px windows every 112 px, COCOObjectDataset
# (benchmarks/seg_mmseg.py: background 0 is a class), class names names/coco-object.txt (mmseg's with SCLIP/NACLIP's
# synonyms), 80 OpenAI templates; a pixel whose top class probability (softmax over every query at logit scale 40)
# is below 0.1 is background. Layout: coco_object/{images/val2017/*.jpg, annotations/val2017/*_instanceTrainIds.png}
# as `silc-bench data coco-object` writes it from COCO-Stuff-164k. Everything else is ade20k_448.py's (through
# coco_stuff171.py). Run it with mmengine's Runner as the README shows for ade20k_448.py.
_base_ = ["./coco_stuff171.py"]

work_dir = "work_dirs/zeroshot_ovss_coco_object"

model = dict(
    class_names="{{fileDirname}}/names/coco-object.txt",
    crop_size=224,
    stride=112,
    logit_scale=40.0,
    bg_threshold=0.1,
)
test_pipeline = [dict(t, scale=(2048, 336)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(
    dataset=dict(type="COCOObjectDataset", data_root="data/coco_object", pipeline=test_pipeline)
)
