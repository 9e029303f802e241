"""Dataset readers for the public on-disk layouts the global harnesses consume."""

from benchmarks.readers.classification import (
    ClassificationData,
    ClassMeta,
    openai_templates,
    read_class_meta,
    read_classification,
)
from benchmarks.readers.images import ImageDataset, ImageRef, data_fingerprint
from benchmarks.readers.karpathy import RetrievalData, find_annotation_file, read_karpathy

__all__ = [
    "ClassMeta",
    "ClassificationData",
    "ImageDataset",
    "ImageRef",
    "RetrievalData",
    "data_fingerprint",
    "find_annotation_file",
    "openai_templates",
    "read_class_meta",
    "read_classification",
    "read_karpathy",
]
