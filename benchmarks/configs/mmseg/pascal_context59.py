# Zero-shot Pascal Context-59 with mmseg's PascalContextDataset59 (reduce_zero_label) and IoUMetric, at the
# ade-448 recipe (TCL / ClearCLIP: short side 448, 448-px windows every 224 px, 80 OpenAI templates).
# Layout (mmseg's): VOCdevkit/VOC2010/{JPEGImages/*.jpg, SegmentationClassContext/*.png,
# ImageSets/SegmentationContext/val.txt}, label maps as written by mmseg's pascal_context.py converter.
# Inherits everything else from ade20k_448.py. Run it with mmengine's Runner as the README shows for that file.
_base_ = ["./ade20k_448.py"]

work_dir = "work_dirs/zeroshot_pascal_context59"

model = dict(class_names=dict(dataset="PascalContextDataset59"))
test_dataloader = dict(
    dataset=dict(
        type="PascalContextDataset59",
        data_root="data/VOCdevkit/VOC2010",
        ann_file="ImageSets/SegmentationContext/val.txt",
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassContext"),
    )
)
