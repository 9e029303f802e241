"""COCO open-vocabulary detection: the det-ovcoco harness, box classification, COCO AP and overlays."""
