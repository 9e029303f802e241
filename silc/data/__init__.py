"""Data: image-text pipelines (webdataset, CSV) and the synthetic world generator."""
