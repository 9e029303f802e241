"""The synthetic world: a seeded generator of scenes written in the real datasets' on-disk formats."""

from silc.data.synth.generate import DATASETS, MANIFEST, PRESETS, generate_world
from silc.data.synth.world import SEG_CLASSES, SHAPES, STUFF

__all__ = ["DATASETS", "MANIFEST", "PRESETS", "SEG_CLASSES", "SHAPES", "STUFF", "generate_world"]
