"""``liquidgen world make | parse``: write a world dataset, or read scenes back from images."""

from __future__ import annotations

import argparse
import sys

from liquidgen.errors import ConfigError
from liquidgen.utils.args import nonnegative_int_arg, seed_arg
from liquidgen.utils.limits import check_image_pixels
from liquidgen.world.make import KINDS, write_dataset
from liquidgen.world.parse import WORLD_VOCABULARY, load_image, parse
from liquidgen.world.scene import SPLITS, parse_size


def _sizes(text: str) -> list[tuple[int, int]]:
    """``WxH[,WxH...]``: each a world size (short side, aspect ratio) under the pixel limit."""
    sizes = [parse_size(part.strip()) for part in text.split(",") if part.strip()]
    if not sizes:
        raise ConfigError(f"--size must list WxH sizes, got {text!r}")
    for w, h in sizes:
        check_image_pixels(w, h, "--size")
    return sizes


def _cmd_make(args: argparse.Namespace) -> int:
    sizes = _sizes(args.size)
    out = write_dataset(
        args.out,
        args.n,
        sizes,
        args.seed,
        args.split,
        kind=args.kind,
        lattice=args.lattice,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.n} images ({', '.join(f'{w}x{h}' for w, h in sizes)}) to {out}")
    return 0


def _cmd_parse(args: argparse.Namespace) -> int:
    vocabulary = WORLD_VOCABULARY
    if args.vocabulary == "easy-vqa":
        from liquidgen.corpora.easy_vqa import EASY_VQA_VOCABULARY

        vocabulary = EASY_VQA_VOCABULARY
    images = [load_image(path) for path in args.images]  # fail before printing anything
    for image in images:
        sys.stdout.write(parse(image, vocabulary=vocabulary).to_json() + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``world make`` and ``world parse`` to the ``liquidgen`` parser."""
    world = subparsers.add_parser(
        "world",
        help="procedural image-text world: write datasets, parse images to scenes",
        description="A world of 1-4 coloured shapes whose scenes are known exactly, "
        "for training and exact scoring.",
    )
    sub = world.add_subparsers(dest="world_command", metavar="SUBCOMMAND", required=True)

    make = sub.add_parser(
        "make",
        help="write N rendered scenes plus metadata.jsonl",
        description="Render N random scenes as PNG files in DIR plus metadata.jsonl (one "
        "record per image: file, scene, captions, prompt specs, questions). Example i "
        "depends only on (seed, i); sizes are used round-robin. DIR is written atomically "
        "and replaced only if it is empty or already holds a world dataset (or with "
        "--overwrite). Images are at most LIQUIDGEN_MAX_MEGAPIXELS (default 4) megapixels.",
    )
    make.add_argument("--n", type=nonnegative_int_arg, required=True, help="number of images")
    make.add_argument(
        "--size",
        required=True,
        metavar="WxH[,WxH...]",
        help="image size(s), width x height, e.g. 128x128,160x96,96x160",
    )
    make.add_argument(
        "--seed", type=seed_arg, required=True, help="random seed, an integer in [0, 2**63 - 1]"
    )
    make.add_argument("--out", required=True, metavar="DIR", help="output folder")
    make.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR whatever it holds (a folder of other files, or a file)",
    )
    make.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="train: no held-out compositions in images or text (default); "
        "heldout: every scene shows a held-out shape-colour pair",
    )
    make.add_argument(
        "--kind",
        choices=KINDS,
        default="scenes",
        help="scenes: random scenes with all their text (default); prompted: a prompt of "
        "each GenEval category in turn and a scene holding exactly what it asks (text to image)",
    )
    make.add_argument(
        "--lattice",
        type=int,
        default=None,
        metavar="PIXELS",
        help="put object centres on multiples of PIXELS (e.g. 8: half a 16-pixel code cell)",
    )
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    make.set_defaults(func=_cmd_make)

    parse_cmd = sub.add_parser(
        "parse",
        help="print the scene recovered from each image as one JSON line",
        description="Recover the objects (shape, colour, size, centre, box) in each image "
        "with classical image processing and print one JSON scene per image, in order. "
        "A blank image gives a scene without objects; an unreadable file is an error "
        "(exit status 2).",
    )
    parse_cmd.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parse_cmd.add_argument(
        "--vocabulary",
        choices=("world", "easy-vqa"),
        default="world",
        help="palette and shapes to look for (default: world)",
    )
    parse_cmd.set_defaults(func=_cmd_parse)
