"""``silc-bench data coco-object`` (COCO-Object from COCO-Stuff-164k) and ``silc-bench data synth-ovss`` (the
ovss8 suite's public layouts filled from the synthetic world)."""

from __future__ import annotations

import argparse
import json


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    """Add ``coco-object`` and ``synth-ovss`` under ``silc-bench data``."""
    p = data_subparsers.add_parser(
        "coco-object",
        help="write COCO-Object's label maps (80 things + background) from COCO-Stuff-164k's",
        description="Write OUT/annotations/<split>/<id>_instanceTrainIds.png (0 background: every stuff and "
        "unlabelled pixel; 1-80 the COCO things in mmseg's COCOStuffDataset order) from the released COCO-Stuff-164k "
        "label maps COCO_STUFF/annotations/<split>/<id>.png, and link OUT/images/<split> to COCO_STUFF's images, as "
        "the open-vocabulary segmentation papers convert it. OUT may be COCO_STUFF itself.",
    )
    p.add_argument(
        "--coco-stuff",
        required=True,
        metavar="DIR",
        help="coco_stuff164k folder with images/<split>/*.jpg and annotations/<split>/*.png",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (the COCO-Object root)")
    p.add_argument(
        "--split", action="append", metavar="NAME", help="split folder(s) to convert (default: val2017)"
    )
    p.set_defaults(func=_coco_object)

    s = data_subparsers.add_parser(
        "synth-ovss",
        help="write the ovss8 suite's eight dataset layouts from the synthetic world's segmentation scenes",
        description="Write VOCdevkit/VOC2012, VOCdevkit/VOC2010, coco_stuff164k, coco_object, cityscapes and "
        "ADEChallengeData2016 under --out from the synthetic world's ADE20K validation scenes, each label map in its "
        "dataset's conventions, for `silc-bench run --suite ovss8_synth --data-root OUT`.",
    )
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    s.add_argument(
        "--world",
        metavar="DIR",
        help="a folder written by `silc-bench data synth` (default: the default suite's cached world, generated "
        "on first use)",
    )
    s.set_defaults(func=_synth_ovss)


def _coco_object(args: argparse.Namespace) -> int:
    from benchmarks.coco_object import convert_coco_object

    summary = convert_coco_object(args.coco_stuff, args.out, tuple(args.split or ("val2017",)))
    print(json.dumps(summary, indent=2))
    return 0


def _synth_ovss(args: argparse.Namespace) -> int:
    from benchmarks.ovss_synth import write_ovss_layouts
    from silc_bench.app.world_cache import ensure_world

    counts = write_ovss_layouts(args.world or ensure_world(), args.out)
    print(json.dumps({"out": args.out, "images": counts}, indent=2))
    return 0
