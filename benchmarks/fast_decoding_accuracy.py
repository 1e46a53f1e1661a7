"""Harness accuracy of the fast decoding options on the shipped model (issue 18).

Runs the text-to-image part of ``liquidgen eval t2i`` (the same prompts, sizes, scoring and
seeds) on ``models/liquidgen-tiny`` once per variant and prints the overall scores with the
wall time and the forward passes per image:

- ``fp32``: float32 weights, plain sampling (the shipped default), seed 0;
- ``fp32-seed1``: the same with seed 1: the run-to-run noise of the harness;
- ``bf16``: bfloat16 weights;
- ``int8``: weight-only int8 decoder (``quantize="int8"``, float32 elsewhere);
- ``sjd``: float32, speculative Jacobi decoding (``speculative="jacobi"``, window 16).

```bash
python benchmarks/fast_decoding_accuracy.py --per-tag 10 --n 4 --threads 2 --json out.json
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

VARIANTS = ("fp32", "fp32-seed1", "bf16", "int8", "sjd")


def run_variant(name: str, per_tag: int, n: int) -> dict:
    from liquidgen.assets import TINY_MODEL, shipped
    from liquidgen.evaluation.t2i import evaluate_t2i, summarize_t2i
    from liquidgen.inference.pipeline import Pipeline

    dtype = "bfloat16" if name == "bf16" else "float32"
    quantize = "int8" if name == "int8" else None
    pipe = Pipeline.from_pretrained(
        shipped(TINY_MODEL), device="cpu", dtype=dtype, quantize=quantize
    )
    stats: dict[str, int] = {}
    speculative = "jacobi" if name == "sjd" else None

    def generate(prompts, *, n: int, progress=None, **kwargs):  # type: ignore[no-untyped-def]
        request = pipe.image_request(list(prompts), n=n, **kwargs)
        images = pipe.draw(request, speculative=speculative, stats=stats, progress=progress)
        return [images[i : i + n] for i in range(0, len(images), n)]

    d = pipe.defaults
    sizes = [(d.width, d.height), *[tuple(b) for b in d.buckets if tuple(b) != (d.width, d.height)]]
    start = time.perf_counter()
    out = evaluate_t2i(
        lambda prompts, **kw: generate(prompts, **kw),
        sizes,
        n=n,
        prompts_per_tag=per_tag,
        seed=1 if name == "fp32-seed1" else 0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    summary = summarize_t2i(out.records)
    images = len(out.records)
    return dict(
        variant=name,
        seen=summary["seen"]["overall"],
        heldout=summary.get("heldout", {}).get("overall"),
        images=images,
        seconds=seconds,
        forwards_per_image=stats.get("forwards", 0) / max(1, images),
        tokens_per_image=stats.get("tokens", 0) / max(1, images),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--per-tag", type=int, default=10, help="prompts per category")
    parser.add_argument("--n", type=int, default=4, help="images per prompt and size")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# load average {os.getloadavg()[0]:.2f}, {args.threads} threads, "
          f"{args.per_tag} prompts per category, {args.n} images per prompt and size")  # fmt: skip
    print(
        "| variant | seen overall | held-out overall | images | s | forwards/image | tokens/image |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in args.variants:
        row = run_variant(name, args.per_tag, args.n)
        rows.append(row)
        held = "" if row["heldout"] is None else f"{row['heldout']:.3f}"
        print(f"| {name} | {row['seen']:.3f} | {held} | {row['images']} | {row['seconds']:.0f} "
              f"| {row['forwards_per_image']:.1f} | {row['tokens_per_image']:.0f} |", flush=True)  # fmt: skip
    if args.json:
        meta = dict(argv=sys.argv[1:], load_average=os.getloadavg())
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
