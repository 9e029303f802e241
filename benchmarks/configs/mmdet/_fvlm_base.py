# F-VLM-style open-vocabulary detector on a frozen encoder: the model and runtime shared by fvlm_*.py.
# The parts are registered by adapters/mmdet.py (custom_imports below). FVLM fills in, from the encoder: anchor
# and RoI strides (patch size / pyramid scale), the head's embedding size, and the data preprocessor's
# mean/std/padding. Text embeddings of the split's categories (base while training, base + novel at test)
# are computed once from the frozen encoder; nothing of the encoder is trained or saved.
custom_imports = dict(imports=["adapters.mmdet"], allow_failed_imports=False)
default_scope = "mmdet"

pyramid_channels = 256
model = dict(
    type="FVLM",
    split_file="data/ov-coco/annotations/ov_split.json",
    templates="openai80",
    alpha=0.35,  # VLM weight of the geometric score ensemble, base categories
    beta=0.65,  # ... novel categories
    data_preprocessor=dict(type="DetDataPreprocessor", bgr_to_rgb=True),
    backbone=dict(
        type="FrozenEncoderPyramid",
        encoder="openclip:ViT-B-16@weights/vit_b_16.pt",  # an encoder spec (adapters.load_encoder)
        dense_mode="naive",
        out_channels=pyramid_channels,
        scales=(4.0, 2.0, 1.0, 0.5),
    ),
    rpn_head=dict(
        type="RPNHead",
        in_channels=pyramid_channels,
        feat_channels=pyramid_channels,
        anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=None),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    roi_head=dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            out_channels=pyramid_channels,
            featmap_strides=None,
        ),
        bbox_head=dict(
            type="TextEmbeddingBBoxHead",
            in_channels=pyramid_channels,
            fc_out_channels=1024,
            roi_feat_size=7,
            temperature=0.01,
            reg_class_agnostic=True,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
    ),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type="MaxIoUAssigner",
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1,
            ),
            sampler=dict(
                type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False
            ),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(
            nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(
            assigner=dict(
                type="MaxIoUAssigner",
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1,
            ),
            sampler=dict(
                type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True
            ),
            pos_weight=-1,
            debug=False,
        ),
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100),
    ),
)

dataset_type = "OVCocoDataset"
# The files `silc-bench data ov-coco --coco <COCO root> --out data/ov-coco` writes: base-only train boxes,
# val with every category, and the split. A config for other data sets data_root/split_file and points the
# datasets, the evaluator and model.split_file at them; one for another input size restates the pipelines.
data_root = "data/ov-coco/"
split_file = data_root + "annotations/ov_split.json"
img_scale = (1024, 1024)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=img_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=img_scale, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
# Batch size and workers are each config's own.
train_dataloader = dict(
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_sampler=dict(type="AspectRatioBatchSampler"),
    dataset=dict(
        type=dataset_type,
        split_file=split_file,
        subset="base",
        data_root=data_root,
        ann_file="annotations/instances_train2017_base.json",
        data_prefix=dict(img="train2017/"),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
    ),
)
test_dataloader = dict(
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        split_file=split_file,
        subset="all",
        data_root=data_root,
        ann_file="annotations/instances_val2017_ov.json",
        data_prefix=dict(img="val2017/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_evaluator = dict(
    type="OVCocoMetric",
    ann_file=data_root + "annotations/instances_val2017_ov.json",
    metric="bbox",
    format_only=False,
)
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=5000, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
# The trained detector as a plain state dict (work_dir/fvlm_detector.pt); mmengine's own checkpoints (above,
# for resuming) hold objects that torch's safe loading refuses, so we never load those back.
custom_hooks = [dict(type="PlainStateDictHook")]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
