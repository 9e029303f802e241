# Zero-shot Pascal VOC-20 (VOC 2012 val without background) with PascalVOC20Dataset (mmseg's PascalVOCDataset
# minus `background`, reduce_zero_label) and IoUMetric, at the ade-448 recipe (TCL / ClearCLIP).
# Layout (mmseg's): VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs),
# ImageSets/Segmentation/val.txt}.
# Inherits everything else from ade20k_448.py. Run it with mmengine's Runner as the README shows for that file.
_base_ = ["./ade20k_448.py"]

work_dir = "work_dirs/zeroshot_voc20"

model = dict(class_names=dict(dataset="PascalVOC20Dataset"))
test_dataloader = dict(
    dataset=dict(
        type="PascalVOC20Dataset",
        data_root="data/VOCdevkit/VOC2012",
        ann_file="ImageSets/Segmentation/val.txt",
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
    )
)
