# Zero-shot COCO-Stuff-171 (164k val), protocol `coco-stuff` of `silc-bench eval seg-ade20k` (suite ovss8) at
# NACLIP's settings: short side 336, 224-px windows every 112 px, mmseg's COCOStuffDataset and its class names, 80
# OpenAI templates. The dataset and layout are coco_stuff171.py's (coco_stuff164k, *_labelTrainIds.png),
# everything else ade20k_448.py's. Run it with mmengine's Runner as the README shows for ade20k_448.py.
_base_ = ["./coco_stuff171.py"]

work_dir = "work_dirs/zeroshot_ovss_coco_stuff"

model = dict(crop_size=224, stride=112)
test_pipeline = [dict(t, scale=(2048, 336)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
