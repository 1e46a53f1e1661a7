"""Scene round trip of world tokenizers: how often parse(decode(encode(render))) is exact.

Uses the evaluation harness's fixed renders (``liquidgen.evaluation.tokenizer``: 50 scenes
per size at 128x128, 160x96 and 96x160) so that tokenizer folders (no LM needed) compare
on one set. Prints one table row per folder::

    python benchmarks/tokenizer_roundtrip.py models/liquidgen-tiny/vq runs/vq-world-2048/final
"""

from __future__ import annotations

import argparse

import numpy as np

from liquidgen.evaluation.tokenizer import evaluate_roundtrip
from liquidgen.tokenizer import VQGAN

SIZES = [(128, 128), (160, 96), (96, 160)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizers", nargs="+", help="tokenizer folders")
    parser.add_argument("--scenes-per-size", type=int, default=50)
    args = parser.parse_args()
    print("| tokenizer | codes | exact scene round trip | PSNR (dB) | codebook usage |")
    print("|---|---|---|---|---|")
    for path in args.tokenizers:
        vq = VQGAN.from_pretrained(path)
        records, stats = evaluate_roundtrip(
            vq, SIZES, scenes_per_size=args.scenes_per_size, progress=False
        )
        ok = sum(r.roundtrip for r in records)
        psnr = float(np.mean([r.psnr for r in records]))
        print(
            f"| `{path}` | {vq.codebook_size} | {ok} / {len(records)} = {ok / len(records):.2f} "
            f"| {psnr:.2f} | {stats['usage']:.3f} |"
        )


if __name__ == "__main__":
    main()
