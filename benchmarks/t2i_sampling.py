"""Text-to-image accuracy of one checkpoint under several sampling settings.

Picks a checkpoint's sampling defaults (``cfg_scale``, ``temperature``, ``top_k``, ``top_p``
in its ``liquid_generation.json``) on *validation* prompts: GenEval-style prompts of every
category drawn with seeds other than the harness's fixed sets, and with every prompt of the
harness's own sets (``liquidgen.evaluation.t2i.prompt_set``) removed, so a choice made here
is not tuned on the numbers ``liquidgen eval t2i`` reports. Categories with few possible
prompts (single object: one per shape) are all in the harness's set and so have none here;
"overall" is the mean over the categories that do.

    python benchmarks/t2i_sampling.py --model models/liquidgen-tiny \\
        --setting cfg_scale=7 --setting cfg_scale=3 --setting cfg_scale=7,top_k_frac=0.0625

Each ``--setting`` overrides the checkpoint's defaults for one row; the first row is always
the checkpoint's own defaults. Prints one markdown table (accuracy per split and category,
GenEval's overall = mean over categories) and writes it as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from liquidgen.evaluation.t2i import SPLIT_TAGS, SPLITS, prompt_set, score_image
from liquidgen.inference.pipeline import Pipeline
from liquidgen.world.text import PromptSpec

VALIDATION_SEEDS = {"seen": 720_001, "heldout": 720_002}  # not the harness's PROMPT_SEEDS
KNOBS = {
    "cfg_scale": float,
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "top_k_frac": float,
}


def validation_prompts(per_tag: int) -> dict[str, list[PromptSpec]]:
    """``per_tag`` distinct prompts per split and category, none of them in the harness's set."""
    taken = {spec.prompt for specs in prompt_set().values() for spec in specs}
    return prompt_set(per_tag, seeds=VALIDATION_SEEDS, exclude=taken, draws_per_prompt=200)


def parse_setting(text: str, codebook_size: int | None = None) -> dict[str, Any]:
    """``"cfg_scale=3,top_k=64"`` -> ``{"cfg_scale": 3.0, "top_k": 64}``; ``top_k_frac=F``
    sets top-k relative to the codebook, ``round(F * codebook_size)`` codes."""
    setting: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in KNOBS:
            raise SystemExit(f"unknown sampling knob {key!r} (one of {', '.join(KNOBS)})")
        setting[key] = KNOBS[key](value)
    if "top_k_frac" in setting:
        if codebook_size is None:
            raise SystemExit("top_k_frac needs the checkpoint's codebook size")
        setting["top_k"] = max(1, round(setting.pop("top_k_frac") * codebook_size))
    return setting


def accuracy(
    pipe: Pipeline, prompts: dict[str, list[PromptSpec]], setting: dict[str, Any], n: int, seed: int
) -> dict[str, dict[str, float]]:
    """Per split: per-category accuracy over ``n`` images per prompt at every bucket size."""
    sizes = list(pipe.defaults.buckets) or [(pipe.defaults.width, pipe.defaults.height)]
    result: dict[str, dict[str, float]] = {}
    for split, specs in prompts.items():
        hits: dict[str, list[bool]] = {}
        for width, height in sizes:
            images = pipe.generate_images(
                [s.prompt for s in specs],
                width=width,
                height=height,
                n=n,
                seed=seed,
                batch_size=8,
                **setting,
            )
            for spec, row in zip(specs, images, strict=True):
                hits.setdefault(spec.tag, []).extend(score_image(spec, im)[0] for im in row)
        per_tag = {tag: float(np.mean(v)) for tag, v in hits.items()}
        result[split] = {**per_tag, "overall": float(np.mean(list(per_tag.values())))}
    return result


def _cell(scores: dict[str, dict[str, float]], column: str) -> str:
    """``"0.42"`` for ``"seen/colors"``; ``"—"`` for a category without validation prompts."""
    split, tag = column.split("/")
    value = scores[split].get(tag)
    return "—" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help="comma-separated overrides, e.g. cfg_scale=3,top_k=64 (repeatable)",
    )
    parser.add_argument("--per-tag", type=int, default=4, help="validation prompts per category")
    parser.add_argument("--n", type=int, default=2, help="images per prompt and size")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()

    pipe = Pipeline.from_pretrained(args.model)
    prompts = validation_prompts(args.per_tag)
    d = pipe.defaults
    defaults = {
        "cfg_scale": d.cfg_scale,
        "temperature": d.temperature,
        "top_k": d.top_k,
        "top_p": d.top_p,
    }
    rows = []
    for text in ["", *args.setting]:
        setting = {**defaults, **parse_setting(text, pipe.layout.codebook_size)}
        setting["top_k"] = (
            min(setting["top_k"], pipe.layout.codebook_size) or pipe.layout.codebook_size
        )
        start = time.perf_counter()
        scores = accuracy(pipe, prompts, setting, args.n, args.seed)
        rows.append(
            {"setting": setting, "scores": scores, "seconds": round(time.perf_counter() - start, 1)}
        )
        print(json.dumps(rows[-1]), flush=True)

    tags = [f"{split}/{tag}" for split in SPLITS for tag in [*SPLIT_TAGS[split], "overall"]]
    size = pipe.layout.codebook_size
    print("\n| cfg | temperature | top_k (share of codes) | top_p | " + " | ".join(tags) + " |")
    print("|" + "---|" * (4 + len(tags)))
    for row in rows:
        s = row["setting"]
        cells = [_cell(row["scores"], t) for t in tags]
        print(
            f"| {s['cfg_scale']:g} | {s['temperature']:g} | {s['top_k']} ({s['top_k'] / size:.3g}) "
            f"| {s['top_p']:g} | " + " | ".join(cells) + " |"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "per_tag": args.per_tag,
                    "n": args.n,
                    "seed": args.seed,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
