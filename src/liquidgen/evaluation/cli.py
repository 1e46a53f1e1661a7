"""CLI: ``liquidgen eval t2i|vqa|text|tokenizer|all`` and ``liquidgen eval fid``.

Thin wrappers of :mod:`liquidgen.evaluation.harness` and :mod:`liquidgen.evaluation.fid`.
Only argparse is imported at registration; torch, transformers and the world load inside
the command functions, so ``liquidgen --help`` stays fast. Usage errors and every
:class:`~liquidgen.errors.LiquidgenError` are one line on stderr with exit status 2; the
settings are checked before the model loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from liquidgen.corpora.text import CORPORA, DEFAULT_CORPUS
from liquidgen.errors import ConfigError
from liquidgen.utils.args import seed_arg
from liquidgen.utils.limits import check_batch, check_image_pixels

if TYPE_CHECKING:
    from PIL import Image

    from liquidgen.inference.pipeline import Pipeline

DEFAULT_OUT = "eval_out"
DEFAULT_FEATURES = "liquidgen.evaluation.fid:color_edge_features"
TASK_HELP = {
    "t2i": "text to image: GenEval-like prompts scored by the world's parser",
    "vqa": "visual question answering on world renders and the easy-VQA test split",
    "text": "perplexity on held-out real text",
    "tokenizer": "image tokenizer PSNR and scene round trip on world renders",
    "all": "every task above, one results JSON, markdown table and sample grid",
}
TASK_DESCRIPTION = {
    "t2i": "Generate N images for each fixed prompt of six GenEval-like categories (single "
    "object, two objects, counting, colours, position, colour attribution) at every size the "
    "checkpoint generates, score each image with the world's parser and report per-category "
    "accuracy and their mean, separately for seen and held-out compositions and per size.",
    "vqa": "Answer questions greedily about world renders (seen and held-out compositions) "
    "and the easy-VQA test split; report exact-match accuracy per question type.",
    "text": "Perplexity on the validation split of the real text corpus.",
    "tokenizer": "Round-trip fixed world renders through the checkpoint's VQGAN at every "
    "size; report PSNR and how often the parser reads the reconstruction as the drawn scene.",
    "all": "Run t2i, vqa, text and tokenizer and write one results.json, results.md "
    "(markdown tables) and samples.png (sample grid with prompts under the images).",
}
LIMIT_HELP = (
    "cap each group at K items: prompts per category (t2i; default 10), questions per source "
    "(vqa; default 300 per world source, 1000 evenly spaced easy-VQA test questions), "
    "documents (text; default all), renders per size (tokenizer; default 50)"
)

BATCH_HELP = (
    "items per forward pass: prompts (t2i, default 8), questions (vqa, default 16), "
    "documents (text, default 8), renders (tokenizer, default 8)"
)
N_HELP = "images per prompt (default 4)"


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """argparse's error, without the usage block: one line, exit status 2."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


class _OneLineParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line (see ``--help`` for the usage)."""

    def error(self, message: str) -> NoReturn:
        _one_line_error(self, message)


def _add_load_args(p: argparse.ArgumentParser, *, model_help: str) -> None:
    p.add_argument("--model", metavar="DIR", default=None, help=model_help)
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (default auto: bfloat16 on cuda, float32 on cpu)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_task_args(p: argparse.ArgumentParser, task: str) -> None:
    _add_load_args(
        p,
        model_help="checkpoint folder (default: the shipped liquidgen-tiny model)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help="output folder, created if missing; results.json, results.md, records.jsonl, "
        "timings.json and (t2i) samples.png are overwritten (default: %(default)s)",
    )
    if task in ("t2i", "all"):
        p.add_argument("--n", type=int, default=None, help=N_HELP)
    if task != "text":
        p.add_argument(
            "--sizes",
            default=None,
            metavar="WxH,...",
            help="generation sizes to evaluate instead of the checkpoint's buckets (or its "
            "default size); vqa and tokenizer also add the square understanding size",
        )
    if task in ("text", "all"):
        p.add_argument(
            "--corpus",
            default=DEFAULT_CORPUS,
            choices=CORPORA,
            help="held-out real text: pydoc (Python reference topics) or stdlib-docs (that + "
            "the standard library's docstrings); default: %(default)s",
        )
    p.add_argument("--limit", type=int, default=None, metavar="K", help=LIMIT_HELP)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=BATCH_HELP,
    )
    p.add_argument(
        "--seed",
        type=seed_arg,
        default=0,
        help="sampling seed of text to image (prompts, scenes and texts are fixed; default 0)",
    )


def _parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    from liquidgen.utils.size import parse_size

    sizes = tuple(parse_size(part.strip()) for part in text.split(",") if part.strip())
    if not sizes:
        raise ConfigError(f"--sizes must list WxH sizes, got {text!r}")
    for w, h in sizes:
        check_image_pixels(w, h, "--sizes")
    return sizes


def _check_out(out: Path) -> None:
    from liquidgen.utils.io import check_writable_dir

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    check_writable_dir(out)  # before the model loads


def _load(args: argparse.Namespace) -> Pipeline:
    """The pipeline for ``--model`` (default: the shipped tiny model), without HF's bars."""
    from liquidgen.assets import TINY_MODEL, shipped
    from liquidgen.inference.pipeline import Pipeline
    from liquidgen.utils.device import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    path = Path(args.model) if args.model is not None else shipped(TINY_MODEL)
    return Pipeline.from_pretrained(path, device=device, dtype=dtype)


# --------------------------------------------------------------------------- eval TASK
def _cmd_eval(args: argparse.Namespace) -> int:
    from liquidgen.evaluation.harness import TASKS, EvalSettings, run_evaluation, write_outputs
    from liquidgen.evaluation.t2i import DEFAULT_IMAGES_PER_PROMPT

    n = getattr(args, "n", None)
    sizes = getattr(args, "sizes", None)
    if args.batch_size is not None:
        check_batch(args.batch_size, "--batch-size")
    settings = EvalSettings(
        tasks=TASKS if args.task == "all" else (args.task,),
        n=DEFAULT_IMAGES_PER_PROMPT if n is None else n,
        limit=args.limit,
        seed=args.seed,
        batch_size=args.batch_size,
        sizes=None if sizes is None else _parse_sizes(sizes),
        text_corpus=getattr(args, "corpus", DEFAULT_CORPUS),
        progress=not args.quiet,
    )
    out = Path(args.out)
    _check_out(out)
    pipe = _load(args)
    run = run_evaluation(pipe, settings, model=args.model)
    paths = write_outputs(out, run)
    from liquidgen.evaluation.report import markdown_report

    sys.stdout.write(markdown_report(run.results))
    sys.stdout.flush()
    for task, t in run.timings.items():
        print(f"{task}: {t['seconds']:.1f} s for {t['items']} items", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- eval fid
def _read_folder(folder: str) -> list[Image.Image]:
    from liquidgen.tokenizer.evaluate import find_images
    from liquidgen.tokenizer.images import load_image

    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder")
    return [load_image(p) for p in find_images([path])]


def _fid_prompts(args: argparse.Namespace) -> list[str]:
    """``--prompts FILE`` (one a line), else the first caption of each ``--real`` record."""
    import json

    if args.prompts is not None:
        path = Path(args.prompts)
        if not path.is_file():
            raise ConfigError(f"{path}: no such prompts file")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        prompts = [p for p in prompts if p]
    else:
        meta = Path(args.real) / "metadata.jsonl"
        if not meta.is_file():
            raise ConfigError(
                "--model needs --prompts FILE (one prompt a line) or a --real folder written "
                "by `liquidgen world make` (its captions are used)"
            )
        lines = meta.read_text(encoding="utf-8").splitlines()
        prompts = [json.loads(line)["captions"][0] for line in lines if line.strip()]
    if not prompts:
        raise ConfigError("no prompts to generate from")
    return prompts


def _cmd_fid(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from liquidgen.evaluation.fid import (
        compute_features,
        frechet_distance,
        gaussian_statistics,
        load_feature_fn,
    )
    from liquidgen.evaluation.report import to_json, write_text
    from liquidgen.utils.io import atomic_path

    if (args.fake is None) == (args.model is None):
        raise ConfigError("give exactly one of --fake DIR and --model DIR")
    if args.n < 1:
        raise ConfigError(f"n (images per prompt) must be an integer >= 1, got {args.n}")
    check_batch(args.batch_size, "--batch-size")
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        _check_out(out)
    features = load_feature_fn(args.features)
    real = _read_folder(args.real)
    if args.fake is not None:
        fake = _read_folder(args.fake)
    else:
        prompts = _fid_prompts(args)
        pipe = _load(args)
        width, height = pipe.image_size(args.width, args.height)
        fake = []
        with tqdm(
            total=len(prompts) * args.n, unit="img", desc="fid images", disable=args.quiet
        ) as bar:
            for start in range(0, len(prompts), args.batch_size):
                chunk = prompts[start : start + args.batch_size]
                rows = pipe.generate_images(
                    chunk, width=width, height=height, n=args.n, seed=args.seed + start * args.n
                )
                fake += [image for row in rows for image in row]
                bar.update(len(chunk) * args.n)
        if out is not None:
            (out / "fake").mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(fake):
                with atomic_path(out / "fake" / f"{i:06d}.png") as tmp:
                    image.save(tmp, format="PNG")
    stats_real = gaussian_statistics(compute_features(features, real))
    stats_fake = gaussian_statistics(compute_features(features, fake))
    distance = frechet_distance(*stats_real, *stats_fake)
    result = {
        "fid": distance,
        "features": args.features,
        "dimensions": int(stats_real[0].shape[0]),
        "real": {"folder": args.real, "images": len(real)},
        "fake": {"folder": args.fake, "images": len(fake)}
        if args.fake is not None
        else {"model": args.model, "images": len(fake), "seed": args.seed},
    }
    print(
        f"FID {distance:.4f} ({args.features}, {result['dimensions']} dims; "
        f"{len(real)} real, {len(fake)} fake images)"
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "fid.json", to_json(result))
    return 0


# --------------------------------------------------------------------------- registration
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``liquidgen eval t2i|vqa|text|tokenizer|all|fid``."""
    ev = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (t2i, vqa, text, tokenizer, all, fid)",
        description="Evaluate a checkpoint on fixed, seeded benchmarks: text to image scored "
        "by the world's parser, VQA, text perplexity, tokenizer round trip, or FID. Reruns "
        "with the same settings write identical results.",
    )
    ev.error = lambda message: _one_line_error(ev, message)  # type: ignore[method-assign]
    tasks = ev.add_subparsers(
        dest="task", metavar="TASK", required=True, parser_class=_OneLineParser
    )
    for task, help_text in TASK_HELP.items():
        p = tasks.add_parser(task, help=help_text, description=TASK_DESCRIPTION[task])
        _add_task_args(p, task)
        p.set_defaults(func=_cmd_eval)
    fid = tasks.add_parser(
        "fid",
        help="Fréchet distance between real and generated images with a pluggable feature net",
        description="Fréchet distance between the feature statistics of --real images and "
        "--fake images (or images generated by --model from --prompts). The feature network is "
        "any Python callable features(list[PIL.Image]) -> array (N, D), named MODULE:ATTR or "
        "file.py:ATTR. The default is a weight-free colour/edge histogram; see "
        "docs/evaluation.md for Inception-v3 (pytorch-fid) features.",
    )
    fid.add_argument(
        "--features",
        default=DEFAULT_FEATURES,
        metavar="MODULE:ATTR",
        help="feature function (default: %(default)s; also "
        "liquidgen.evaluation.fid:scene_features for world images)",
    )
    fid.add_argument("--real", required=True, metavar="DIR", help="folder of reference images")
    fid.add_argument("--fake", default=None, metavar="DIR", help="folder of generated images")
    _add_load_args(fid, model_help="generate the fake images with this checkpoint instead")
    fid.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="with --model: prompts, one a line (default: the first caption of each image of "
        "a --real folder written by `liquidgen world make`)",
    )
    fid.add_argument("--n", type=int, default=1, help="with --model: images per prompt (default 1)")
    fid.add_argument("--width", type=int, default=None, help="with --model: image width")
    fid.add_argument("--height", type=int, default=None, help="with --model: image height")
    fid.add_argument(
        "--seed", type=seed_arg, default=0, help="with --model: sampling seed (default 0)"
    )
    fid.add_argument(
        "--batch-size", type=int, default=8, help="with --model: prompts per forward (default 8)"
    )
    fid.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write fid.json here (and, with --model, the generated images in DIR/fake/)",
    )
    fid.set_defaults(func=_cmd_fid)
