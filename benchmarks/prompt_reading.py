"""Does a trained model read its prompt? The training diagnostic on any checkpoint.

Runs the trainer's validation (per-modality loss plus ``t2i-diag/*``: image-token loss
with and without the prompt, split into background, object and object-entry cells; see
``liquidgen.training.diagnostics``) on a finished model, without training a step. The
training config names the validation data; ``--model`` replaces its ``model.path``::

    python benchmarks/prompt_reading.py --config runs/liquidgen-tiny-local/train.yaml \\
        --model runs/liquidgen-tiny-local-out --set data.val_examples=128

The validation images must be tokenized with the model's own tokenizer.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from liquidgen.training import load_config
from liquidgen.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a training config (YAML)")
    parser.add_argument("--model", required=True, help="the checkpoint folder to measure")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="more config overrides (repeatable)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"model.path={args.model}", f"out_dir={out}", "precision=fp32", *args.set]
        metrics = Trainer(load_config(args.config, overrides)).validate()
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
        return
    for key in sorted(metrics):
        print(f"{key:32s} {metrics[key]:.4f}")


if __name__ == "__main__":
    main()
