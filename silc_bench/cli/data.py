"""``silc-bench data ...``: write the synthetic world (``synth``) and draw a preview of a data folder."""

from __future__ import annotations

import argparse
import importlib

from silc.errors import UserError

# More ``data`` sub-commands: each module listed here defines ``register_data(data_subparsers)``.
DATA_COMMAND_MODULES: list[str] = ["silc_bench.cli.data_ov_coco", "silc_bench.cli.data_ovss"]


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{what} {value!r}: expected an integer") from None


def _synth(args: argparse.Namespace) -> int:
    from silc.data.synth import generate_world

    seed = _int(args.seed, "--seed")
    size = None if args.image_size is None else _int(args.image_size, "--image-size")
    s = generate_world(args.out, seed=seed, preset=args.preset, image_size=size)
    print(
        f"synthetic world (preset {s['preset']}, seed {s['seed']}, {s['image_size']} px) written to "
        f"{s['out_dir']} in {s['seconds']:.1f} s: {s['files']} files, {s['bytes'] / 1e6:.1f} MB"
    )
    for name, count in s["counts"].items():
        print(f"  {name:<34} {count:>7}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from silc.data.synth.preview import preview

    path = preview(args.dir, args.out)
    print(f"preview written to {path}")
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def configure(data: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """``data`` and its sub-commands; returns the ``data`` sub-parsers (for more sub-commands)."""
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(func=lambda _args: _help(data))

    synth = data_sub.add_parser(
        "synth",
        help="write the synthetic world (pretrain, imagenet, flickr30k, ADE20K, COCO formats)",
        description="Write the seeded synthetic world under --out; same seed -> byte-identical files.",
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    synth.add_argument("--seed", default="0", metavar="N", help="random seed (default 0)")
    synth.add_argument(
        "--preset",
        default="tiny",
        metavar="NAME",
        help="tiny (default, 64 px), small or ablation (128 px), bench (photo-sized JPEGs for throughput)",
    )
    synth.add_argument("--image-size", default=None, metavar="N", help="image side in pixels (32-1024)")
    synth.set_defaults(func=_synth)

    prev = data_sub.add_parser(
        "preview",
        help="draw a grid of samples (captions, class names, label maps, boxes) from a data folder",
    )
    prev.add_argument("dir", metavar="DIR", help="a folder written by 'data synth' (or the same layout)")
    prev.add_argument("--out", required=True, metavar="PNG", help="where to write the grid image")
    prev.set_defaults(func=_preview)

    for name in DATA_COMMAND_MODULES:
        importlib.import_module(name).register_data(data_sub)
    return data_sub
