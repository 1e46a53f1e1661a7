"""``liquidgen demo``: the main job on the shipped model, as ``make demo`` runs it.

Two things a unified model does, on the shipped ``liquidgen-tiny``:

1. **draw**: generate an image for a prompt (default: a two-object prompt of the
   procedural world, drawn from ``--seed``) and, when the prompt is the default one, check the picture with the
   world's exact scorer (the harness's text-to-image judge);
2. **see**: render a world scene, ask the model a question about it (default: one of the
   world's questions, whose answer is known) and print its answer next to the truth.

Outputs: ``OUT/generated.png``, ``OUT/scene.png`` and ``OUT/demo.json`` (prompt, verdict,
question, answer, timings). Files are written atomically: a failure leaves none half-written.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from liquidgen.assets import TINY_MODEL, shipped
from liquidgen.errors import CheckpointError, ShapeError
from liquidgen.utils.args import positive_int_arg, seed_arg
from liquidgen.utils.io import atomic_path, check_writable_dir
from liquidgen.utils.limits import check_image_pixels

DEMO_SCENE_SIZE = (128, 128)
DEMO_PROMPT_TAG = "two_object"  # default prompt: "a SHAPE and a SHAPE" (GenEval's two-object)
DEMO_QUESTION_TYPE = "count"  # default question: "How many ... are there?" (every scene has one)


def run_demo(
    out: Path,
    model_dir: Path,
    *,
    prompt: str | None = None,
    question: str | None = None,
    seed: int = 0,
    width: int | None = None,
    height: int | None = None,
) -> dict[str, Any]:
    """Generate, then answer; writes the PNGs and ``demo.json`` into ``out``; returns the summary."""
    import numpy as np

    from liquidgen.inference.pipeline import Pipeline
    from liquidgen.world import questions, render, sample_scene
    from liquidgen.world.score import score_answer
    from liquidgen.world.text import sample_spec

    pipe = Pipeline.from_pretrained(model_dir)
    spec = None
    if prompt is None:
        spec = sample_spec(np.random.default_rng(seed), DEMO_PROMPT_TAG)
        prompt = spec.prompt
    start = time.perf_counter()
    (image,) = pipe.generate_image(prompt, width=width, height=height, seed=seed)
    generate_s = time.perf_counter() - start
    summary: dict[str, Any] = {
        "model": str(model_dir),
        "prompt": prompt,
        "size": list(image.size),
        "seed": seed,
        "generate_seconds": round(generate_s, 3),
    }
    if spec is not None:
        from liquidgen.evaluation.t2i import score_image

        ok, reasons = score_image(spec, image)
        summary["follows_prompt"] = {"ok": ok, "reasons": list(reasons)}

    scene = sample_scene(np.random.default_rng([seed, 1]), *DEMO_SCENE_SIZE)
    picture = render(scene)
    truth = None
    if question is None:
        asked = next(
            q for q in questions(scene, np.random.default_rng([seed, 2]))
            if q.qtype == DEMO_QUESTION_TYPE
        )  # fmt: skip
        question, truth = asked.question, asked.answer
    start = time.perf_counter()
    answer = pipe.answer(picture, question)
    summary["question"] = {
        "question": question,
        "answer": answer,
        "answer_seconds": round(time.perf_counter() - start, 3),
    }
    if truth is not None:
        summary["question"]["truth"] = truth
        summary["question"]["correct"] = score_answer(truth, answer)

    out.mkdir(parents=True, exist_ok=True)
    for name, img in (("generated.png", image), ("scene.png", picture)):
        with atomic_path(out / name) as tmp:
            img.save(tmp, format="PNG")
    with atomic_path(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def check_demo_args(out: Path, model_dir: Path, width: int | None, height: int | None) -> None:
    """Everything that can be checked before the model loads: the output folder is
    writable, the model folder exists, and a given size is a multiple of the checkpoint's
    factor (read from ``liquid_layout.json``) within the pixel limit."""
    check_writable_dir(out)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model folder")
    try:
        factor = int(json.loads((model_dir / "liquid_layout.json").read_text())["downsample"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # a released-Liquid folder (no layout file): the pipeline checks the size
    for name, value in (("width", width), ("height", height)):
        if value is not None and (factor <= 0 or value % factor):
            raise ShapeError(
                f"--{name} {value} must be a positive multiple of {factor} (the tokenizer's factor)"
            )
    if width is not None and height is not None:
        check_image_pixels(width, height, "--width x --height")


def _cmd_demo(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    out = Path(args.out)
    model_dir = Path(args.model) if args.model else shipped(TINY_MODEL)
    check_demo_args(out, model_dir, args.width, args.height)
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in stderr
    s = run_demo(
        out,
        model_dir,
        prompt=args.prompt,
        question=args.question,
        seed=args.seed,
        width=args.width,
        height=args.height,
    )
    width, height = s["size"]
    print(f'draw: "{s["prompt"]}" -> {out / "generated.png"} ({width}x{height}, '
          f"{s['generate_seconds']:.2f} s)")  # fmt: skip
    if "follows_prompt" in s:
        verdict = s["follows_prompt"]
        detail = "" if verdict["ok"] else f" ({'; '.join(verdict['reasons'])})"
        print(
            f"      world scorer: {'follows the prompt' if verdict['ok'] else 'does not'}{detail}"
        )
    q = s["question"]
    print(f'see:  {out / "scene.png"}: "{q["question"]}" -> {q["answer"]!r}'
          f" ({q['answer_seconds']:.2f} s)")  # fmt: skip
    if "truth" in q:
        print(f"      true answer: {q['truth']!r} ({'right' if q['correct'] else 'wrong'})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``liquidgen demo``."""
    p = subparsers.add_parser(
        "demo",
        help="run the main job on the shipped model",
        description="Generate an image for a prompt and answer a question about a picture "
        "with the shipped liquidgen-tiny model; writes generated.png, scene.png and demo.json.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--model", default=None, help=f"model folder (default: shipped {TINY_MODEL})")
    p.add_argument("--prompt", default=None, help="prompt to draw (default: a world prompt)")
    p.add_argument(
        "--question", default=None, help="question about the rendered scene (default: a world one)"
    )
    p.add_argument(
        "--width", type=positive_int_arg, default=None, help="image width (default: the model's)"
    )
    p.add_argument(
        "--height", type=positive_int_arg, default=None, help="image height (default: the model's)"
    )
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="random seed in [0, 2**63 - 1] (default: 0)"
    )
    p.set_defaults(func=_cmd_demo)
