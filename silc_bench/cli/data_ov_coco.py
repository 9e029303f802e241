"""``silc-bench data ov-coco``: base-only training and base+novel validation annotations from COCO."""

from __future__ import annotations

import argparse
import json


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    """Add ``ov-coco`` under ``silc-bench data``."""
    p = data_subparsers.add_parser(
        "ov-coco",
        help="write OV-COCO annotations (48 base / 17 novel by default) from COCO instances_{train,val}2017.json",
        description="Write OUT/annotations/instances_train2017_base.json (base categories only), "
        "OUT/annotations/instances_val2017_ov.json (base + novel), OUT/annotations/ov_split.json and links "
        "OUT/{train,val}2017 to the COCO image folders. Category ids are kept; categories are listed base "
        "then novel (the detector's label order).",
    )
    p.add_argument("--coco", required=True, help="COCO root with annotations/instances_{train,val}2017.json")
    p.add_argument("--out", required=True, help="output folder (becomes a COCO-style root)")
    p.add_argument(
        "--split", help="split JSON {base: [...], novel: [...]} (default: the public OV-COCO split)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from benchmarks.ov_coco import load_split, write_ov_coco

    summary = write_ov_coco(args.coco, args.out, load_split(args.split))
    print(json.dumps(summary, indent=2))
    return 0
