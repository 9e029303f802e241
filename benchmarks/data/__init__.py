"""Data files shipped with the benchmarks (e.g. the OV-COCO split)."""
