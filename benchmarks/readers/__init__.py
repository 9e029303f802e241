"""Dataset readers for the public on-disk layouts the global harnesses consume."""

from benchmarks.readers.classification import (
    ClassificationData,
    ClassMeta,
    read_class_meta,
    read_classification,
)
from benchmarks.readers.images import ImageRef, data_fingerprint
from benchmarks.readers.karpathy import RetrievalData, find_annotation_file, read_karpathy

__all__ = [
    "ClassMeta",
    "ClassificationData",
    "ImageRef",
    "RetrievalData",
    "data_fingerprint",
    "find_annotation_file",
    "read_class_meta",
    "read_classification",
    "read_karpathy",
]
