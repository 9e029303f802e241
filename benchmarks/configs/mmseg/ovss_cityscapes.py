# Zero-shot Cityscapes (val, 19 classes), protocol `cityscapes` of `silc-bench eval seg-ade20k` (suite ovss8) at
# NACLIP's settings: short side 560, 224-px windows every 112 px, mmseg's CityscapesDataset and its class names, 80
# OpenAI templates. Layout (mmseg's): cityscapes/{leftImg8bit/val/<city>/*_leftImg8bit.png,
# gtFine/val/<city>/*_gtFine_labelTrainIds.png} (the train ids as cityscapesscripts writes them). Everything else
# is ade20k_448.py's (through ade20k_336.py). Run it with mmengine's Runner as the README shows for ade20k_448.py.
_base_ = ["./ade20k_336.py"]

work_dir = "work_dirs/zeroshot_ovss_cityscapes"

model = dict(class_names=dict(dataset="CityscapesDataset"))
test_pipeline = [dict(t, scale=(2048, 560)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(
    dataset=dict(
        type="CityscapesDataset",
        data_root="data/cityscapes",
        data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"),
        pipeline=test_pipeline,
    )
)
