"""Training speed of ``liquidgen train`` itself: tokens/s, packing efficiency and MFU.

Runs the real :class:`~liquidgen.training.trainer.Trainer` on a training config (its model,
data mixture, packing, batch and optimiser) for a few optimiser steps under each *variant*
(precision, ``model.compile``, threads, micro-batch), every variant in a fresh process, and
reports for each:

- tokens/s over the timed steps (real tokens of the global batch, padding excluded; the
  first ``--warmup`` steps, where ``torch.compile`` compiles, are not timed); with
  ``--repeats R`` each variant runs in R fresh processes, alternating with the others, and
  the median launch is reported (the speed of one process differs between launches);
- packing efficiency: real tokens / all positions of the micro-batches;
- MFU: model FLOPs per second / the machine's measured matmul peak at the variant's dtype
  and threads (a 2048^3 matmul, best of 5). FLOPs per step = 6 x non-embedding parameters x
  real tokens + 6 x hidden x vocabulary x targets (the head runs only at target positions)
  + 6 x layers x hidden x the summed squared lengths of the packed documents (causal
  attention within a document: QK^T and AV, forward and backward);
- the losses of the timed steps: every variant draws the same batches from the same seed,
  so precision and compilation can be compared loss for loss (``--json`` keeps them).

    python benchmarks/train_speed.py configs/liquidgen-tiny-local/train.yaml \\
        --set model.path=runs/liquidgen-tiny-local/model --work runs/liquidgen-tiny-local \\
        --variant fp32 --variant bf16 --variant bf16,compile --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine_info import machine


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Measured FLOP/s of one ``size``^3 matmul at ``dtype`` (best of ``repeats``)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _segments(position_ids: torch.Tensor) -> int:
    """Sum over packed documents of length^2 (documents restart their position ids at 0)."""
    total = 0
    for row in position_ids.tolist():
        start = 0
        for i in range(1, len(row) + 1):
            if i == len(row) or row[i] == 0:
                total += (i - start) ** 2
                start = i
    return total


def run_variant(args: argparse.Namespace) -> dict:
    """The child: build the trainer for one variant, time its steps."""
    from liquidgen.training.config import load_config
    from liquidgen.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    variant = set(args.child.split(","))
    overrides = list(args.set)
    overrides.append(f"precision={'bf16' if 'bf16' in variant else 'fp32'}")
    overrides.append(f"model.compile={'true' if 'compile' in variant else 'false'}")
    for item in variant:
        if item.startswith("micro="):
            overrides.append(f"micro_batch={item.split('=', 1)[1]}")
    out = tempfile.mkdtemp(prefix="train-speed-")
    overrides += [f"out_dir={out}", f"threads={args.threads}", "eval_every=0", "save_every=0"]
    overrides += [f"max_steps={args.warmup + args.steps}"]
    config = load_config(args.config, overrides)
    trainer = Trainer(config)
    model_config = trainer.lm.config
    hidden, layers = model_config.hidden_size, model_config.num_hidden_layers
    vocab = trainer.lm.get_output_embeddings().weight.shape[0]
    embeddings = {id(p) for p in trainer.lm.get_input_embeddings().parameters()}
    embeddings |= {id(p) for p in trainer.lm.get_output_embeddings().parameters()}
    non_embedding = sum(p.numel() for p in trainer.lm.parameters() if id(p) not in embeddings)

    losses, tokens, positions, flops, seconds = [], 0, 0, 0.0, 0.0
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        metrics = trainer.train_step()
        elapsed = time.perf_counter() - start
        if step < args.warmup:
            continue
        seconds += elapsed
        losses.append(metrics["loss"])
        tokens += metrics["tokens"]
        flops += 6 * non_embedding * metrics["tokens"] + 6 * hidden * vocab * metrics["targets"]
    # packing and attention FLOPs from as many further batches of the same stream (the
    # trainer's own step consumed the timed ones)
    for _ in range(args.steps):
        for micro in trainer.batcher.next_step().micro_batches:
            positions += micro.input_ids.numel()
            flops += 6 * layers * hidden * _segments(micro.position_ids)
    dtype = torch.bfloat16 if "bf16" in variant else torch.float32
    peak = matmul_peak(dtype)
    return {
        "variant": args.child,
        "threads": args.threads,
        "tokens_per_s": tokens / seconds,
        "s_per_step": seconds / args.steps,
        "packing": tokens / positions,
        "model_flops_per_s": flops / seconds,
        "peak_flops_per_s": peak,
        "mfu": flops / seconds / peak,
        "losses": losses,
        "non_embedding_params": non_embedding,
        "vocab": vocab,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a `liquidgen train` config")
    p.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--work", default=None, help="replaces {work} in the config's paths")
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        help="comma-separated: fp32|bf16, compile, micro=N (default: fp32, bf16, bf16,compile)",
    )
    p.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    p.add_argument("--steps", type=int, default=12, help="timed optimiser steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh launches per variant (the median is reported; per-process speed varies)",
    )
    p.add_argument("--json", default=None, help="write every row here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.work is not None:
        text = Path(args.config).read_text().replace("{work}", args.work)
        resolved = Path(tempfile.mkdtemp(prefix="train-speed-config-")) / "train.yaml"
        resolved.write_text(text)
        args.config = str(resolved)
    if args.child is not None:
        args.threads = args.threads[0]
        print(json.dumps(run_variant(args)))
        return

    variants = args.variant or ["fp32", "bf16", "bf16,compile"]
    print(f"# {machine()}")
    launches: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.repeats):  # variants alternate, so slow spells hit all of them
        for threads in args.threads:
            for variant in variants:
                command = [sys.executable, __file__, args.config, "--child", variant]
                command += ["--threads", str(threads), "--steps", str(args.steps)]
                command += ["--warmup", str(args.warmup)]
                for item in args.set:
                    command += ["--set", item]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{variant} (threads {threads}) failed:\n{done.stderr[-2000:]}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                launches.setdefault((variant, threads), []).append(r)
                print(
                    f"  {variant} threads {threads}: {r['tokens_per_s']:,.0f} tokens/s", flush=True
                )
    rows = []
    for runs in launches.values():  # the launch with the median speed stands for the variant
        ordered = sorted(runs, key=lambda r: r["tokens_per_s"])
        row = dict(ordered[len(ordered) // 2])
        row["launches_tokens_per_s"] = [r["tokens_per_s"] for r in runs]
        rows.append(row)
    base = rows[0]["tokens_per_s"] if rows else 1.0
    ref = rows[0]["losses"] if rows else []
    print(
        "\n| variant | threads | tokens/s (each launch) | x first | s/step | packing | MFU | "
        "max |loss - first's| |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = max(abs(a - b) for a, b in zip(r["losses"], ref, strict=True))
        each = "/".join(f"{v:,.0f}" for v in r["launches_tokens_per_s"])
        print(
            f"| {r['variant']} | {r['threads']} | {r['tokens_per_s']:,.0f} ({each}) | "
            f"{r['tokens_per_s'] / base:.2f} | {r['s_per_step']:.3f} | {r['packing']:.3f} | "
            f"{r['mfu']:.1%} of {r['peak_flops_per_s'] / 1e9:,.0f} GFLOP/s | {diff:.4f} |"
        )
    print(f"# {machine()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
