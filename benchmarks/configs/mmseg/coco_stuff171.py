# Zero-shot COCO-Stuff-171 (164k val) with mmseg's COCOStuffDataset and IoUMetric, at the ade-448 recipe
# (TCL / ClearCLIP). Layout (mmseg's): coco_stuff164k/{images/val2017/*.jpg,
# annotations/val2017/*_labelTrainIds.png} as written by mmseg's coco_stuff164k.py converter.
# Inherits everything else from ade20k_448.py. Run it with mmengine's Runner as the README shows for that file.
_base_ = ["./ade20k_448.py"]

work_dir = "work_dirs/zeroshot_coco_stuff171"

model = dict(class_names=dict(dataset="COCOStuffDataset"))
test_dataloader = dict(
    dataset=dict(
        type="COCOStuffDataset",
        data_root="data/coco_stuff164k",
        data_prefix=dict(img_path="images/val2017", seg_map_path="annotations/val2017"),
    )
)
