"""Measure training throughput (tokens/s) of fp32 vs bf16 autocast on this machine.

The trainer's default precision was chosen with this script; ``docs/training.md`` records
its output. It times the trainer's own hot path — :class:`~liquidgen.training.loss.TargetLM`
forward on packed rows, :func:`~liquidgen.training.loss.loss_sums`, backward, AdamW — on a
randomly initialised Llama-shaped model with a Liquid-sized vocabulary, after warm-up::

    python benchmarks/train_throughput.py --hidden 256 --layers 6 --vocab 12288 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from liquidgen.formats import IGNORE_INDEX
from liquidgen.training.loss import TargetLM, loss_sums
from liquidgen.training.mixture import collate, make_row

HEAD_DIM = 64
MLP_RATIO = 4
DOCS_PER_ROW = 4  # rows are packed from this many documents of random lengths


def _batch(vocab: int, seq_len: int, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    packed = []
    for _ in range(rows):
        cuts = np.sort(rng.choice(np.arange(1, seq_len), DOCS_PER_ROW - 1, replace=False))
        lengths = np.diff([0, *cuts, seq_len])
        parts = []
        for n in lengths:
            ids = rng.integers(0, vocab, n)
            targets = np.append(ids[1:], IGNORE_INDEX)
            parts.append((ids, targets))
        packed.append(make_row(parts))
    return collate(packed, pad_id=0)


def measure(
    *,
    hidden: int,
    layers: int,
    vocab: int,
    seq_len: int,
    rows: int,
    precision: str,
    steps: int,
    warmup: int,
) -> float:
    """Tokens per second of full training steps (forward, backward, AdamW) at ``precision``."""
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=hidden * MLP_RATIO,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // HEAD_DIM, 1),
        num_key_value_heads=max(hidden // HEAD_DIM, 1),
        vocab_size=vocab,
        max_position_embeddings=seq_len,
        attn_implementation="sdpa",
    )
    model = TargetLM(LlamaForCausalLM(config).train())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = _batch(vocab, seq_len, rows, seed=0)
    flat = batch.targets.view(-1)
    index = (flat != IGNORE_INDEX).nonzero().squeeze(1)
    targets = flat[index]
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    elapsed = 0.0
    for step in range(warmup + steps):
        start = time.perf_counter()
        with autocast:
            logits = model(batch.input_ids, batch.position_ids, index)
        sums = loss_sums(logits, targets)
        (sums.ce / len(targets)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            elapsed += time.perf_counter() - start
    return batch.tokens * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=4096 + 8192, help="text + image tokens")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = None
    for precision in ("fp32", "bf16"):
        rate = measure(
            hidden=args.hidden,
            layers=args.layers,
            vocab=args.vocab,
            seq_len=args.seq_len,
            rows=args.rows,
            precision=precision,
            steps=args.steps,
            warmup=args.warmup,
        )
        if params is None:
            embed = args.vocab * args.hidden
            block = 4 * args.hidden**2 + 3 * args.hidden * args.hidden * MLP_RATIO
            params = (2 * embed + args.layers * block) / 1e6
        print(
            f"hidden {args.hidden} layers {args.layers} vocab {args.vocab} (~{params:.1f}M params) "
            f"seq {args.seq_len} rows {args.rows} threads {args.threads} {precision}: {rate:,.0f} tokens/s"
        )


if __name__ == "__main__":
    main()
