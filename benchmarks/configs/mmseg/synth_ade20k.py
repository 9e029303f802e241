# Zero-shot segmentation on the synthetic world's ADE20K layout, protocol `synth` of `silc-bench eval seg-ade20k`
# (the `default` suite's): the ade-448 recipe at the world's scale (64-px images: short side 64, 64-px windows
# every 32 px), SynthADE20KDataset (the ADE20K layout with the world's own classnames.txt, reduce_zero_label),
# the class names read from that file. Write the world with `silc-bench data synth --out .cache/world`, then run
# it with mmengine's Runner as the README shows for ade20k_448.py.
# Inherits everything else from ade20k_448.py.
_base_ = ["./ade20k_448.py"]

work_dir = "work_dirs/zeroshot_synth"

model = dict(class_names=".cache/world/ADEChallengeData2016/classnames.txt", crop_size=64, stride=32)
# ade20k_448.py's test pipeline with the short side at 64.
test_pipeline = [dict(t, scale=(2048, 64)) if t.type == "Resize" else t for t in _base_.test_pipeline]
test_dataloader = dict(
    dataset=dict(
        type="SynthADE20KDataset", data_root=".cache/world/ADEChallengeData2016", pipeline=test_pipeline
    )
)
