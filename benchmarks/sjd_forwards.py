"""Forward passes of speculative Jacobi decoding per image: coupled against independent
re-drafts (``liquidgen.inference.jacobi``), on a checkpoint and a few prompts.

Counts are exact (not timings), so the machine's load does not matter::

    python benchmarks/sjd_forwards.py --model models/liquidgen-tiny --images 16

The window is the library's (``DEFAULT_JACOBI_WINDOW``, 16 tokens).
"""

from __future__ import annotations

import argparse
import time

import torch

import liquidgen.inference.image_generation as image_generation
from liquidgen.inference.jacobi import jacobi_image_codes
from liquidgen.inference.pipeline import Pipeline

PROMPTS = [
    "a red circle on the left",
    "a blue square and a green triangle",
    "two yellow stars",
    "a purple circle above a red square",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/liquidgen-tiny")
    p.add_argument("--images", type=int, default=16, help="images per variant (seeds 0..N-1)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe = Pipeline.from_pretrained(args.model)
    size = pipe.image_request(PROMPTS[0]).width, pipe.image_request(PROMPTS[0]).height
    print("| re-draft | images | tokens | forwards (prefill included) | tokens per forward | s |")
    print("|---|---|---|---|---|---|")
    variants = [("independent", False, False), ("coupled", True, False)]
    variants.append(("coupled, row-above drafts", True, True))
    for name, coupled, above in variants:
        # each variant pinned explicitly, whatever the library's defaults
        def patched(*a, c=coupled, r=above, **k):
            grid_width = pipe.layout.grid(*size)[1]
            return jacobi_image_codes(
                *a, **{**k, "coupled": c, "row_width": grid_width if r else None}
            )

        image_generation.jacobi_image_codes = patched
        stats: dict[str, int] = {}
        start = time.perf_counter()
        for i in range(args.images):
            request = pipe.image_request(PROMPTS[i % len(PROMPTS)], seed=i)
            pipe.draw(request, speculative="jacobi", stats=stats)
        seconds = time.perf_counter() - start
        print(
            f"| {name} | {args.images} | {stats['tokens']} | "
            f"{stats['forwards']} | {stats['tokens'] / stats['forwards']:.2f} | {seconds:.1f} |"
        )
    image_generation.jacobi_image_codes = jacobi_image_codes


if __name__ == "__main__":
    main()
