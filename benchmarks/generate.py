"""Text-to-image sampling speed: liquidgen's generator vs the reference-style loop.

For each model shape (random weights, built from a transformers config) and dtype, one image is
generated with CFG (one conditional + one unconditional row, batched) by three methods, each in
its own process so that its peak RSS is its own:

- ``reference``: the authors' style of loop: plain HF forward returning full-vocabulary logits
  for every position, every step, CFG rows batched, ``DynamicCache``, full-vocabulary logit
  processing and ``torch.multinomial``;
- ``liquidgen-full``: :func:`liquidgen.inference.generation.generate_image_tokens` with
  ``image_rows_only=False`` (same loop, last-position logits only);
- ``liquidgen``: the same with ``image_rows_only=True`` (only the image rows of the LM head).

The bandwidth bound is the time to stream, once per step, every byte the step must read (decoder
weights, the LM-head rows it uses, the KV cache at mid-image) at the memory bandwidth measured
here with a large tensor copy. Run ``python benchmarks/generate.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache, PreTrainedModel, Qwen2Config

from liquidgen.inference.generation import cache_kwargs, generate_image_tokens, left_pad
from liquidgen.inference.sampling import (
    DEFAULT_CFG_SCALE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    image_token_probs,
)
from liquidgen.vocab import VocabLayout

CODEBOOK_SIZE = 8192  # Liquid's VQGAN codes appended to the text vocabulary
PROMPT_TOKENS = 24  # text tokens of the conditional prompt before <boi>
WARMUP_TOKENS = 2  # a short untimed run first (allocator, kernel selection)
BANDWIDTH_BYTES = 1 << 30  # size of the tensor copied to measure memory bandwidth
BANDWIDTH_REPEATS = 5
SETTINGS = dict(
    cfg_scale=DEFAULT_CFG_SCALE,
    temperature=DEFAULT_TEMPERATURE,
    top_k=DEFAULT_TOP_K,
    top_p=DEFAULT_TOP_P,
)

# Qwen2 configs: the tiny smoke-test shape and the Qwen2.5-0.5B shape (+ 8192 codes).
MODELS = {
    "tiny": dict(
        text_vocab=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128,
    ),
    "qwen2.5-0.5b": dict(
        text_vocab=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, intermediate_size=4864, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
    ),
}  # fmt: skip
METHODS = ("reference", "liquidgen-full", "liquidgen")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build(name: str, dtype: torch.dtype) -> tuple[PreTrainedModel, VocabLayout]:
    """A randomly initialised Qwen2 model of shape ``name`` and its vocabulary layout."""
    shape = dict(MODELS[name])
    text_vocab = shape.pop("text_vocab")
    layout = VocabLayout(
        image_offset=text_vocab,
        codebook_size=CODEBOOK_SIZE,
        boi_id=text_vocab - 3,
        eoi_id=text_vocab - 2,
        uncond_id=text_vocab - 1,
    )
    config = Qwen2Config(
        vocab_size=layout.vocab_size,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        **shape,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval(), layout


def prompts(layout: VocabLayout) -> tuple[list[int], list[int]]:
    """A fixed random conditional prompt ending in <boi>, and ``<unconditional><boi>``."""
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(0, layout.boi_id, (PROMPT_TOKENS,), generator=generator).tolist()
    return [*text, layout.boi_id], [layout.uncond_id, layout.boi_id]


def reference_loop(
    model: PreTrainedModel, layout: VocabLayout, cond: list[int], uncond: list[int], n_tokens: int
) -> torch.Tensor:
    """The authors' style of sampler: full-vocabulary logits of every position, every step."""
    ids, mask, positions = left_pad([cond, uncond], 0, model.device)
    cache = DynamicCache(config=model.config)
    generator = torch.Generator().manual_seed(0)
    drawn = []
    with torch.no_grad():
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions,
            **cache_kwargs(model, cache),
        )  # fmt: skip
        next_position = positions[:, -1:] + 1  # (2, 1)
        for i in range(n_tokens):
            logits = out.logits[:, -1]  # (2, V)
            probs = image_token_probs(
                logits[:1], logits[1:], image_offset=layout.image_offset,
                codebook_size=layout.codebook_size, **SETTINGS,
            )  # fmt: skip
            token = torch.multinomial(probs, 1, generator=generator)  # (1, 1)
            drawn.append(token)
            if i + 1 == n_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(
                input_ids=torch.cat([token, token]), attention_mask=mask,
                position_ids=next_position, **cache_kwargs(model, cache),
            )  # fmt: skip
            next_position = next_position + 1
    return torch.cat(drawn, dim=1) - layout.image_offset


def _peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(
    name: str,
    dtype_name: str,
    method: str,
    n_tokens: int,
    repeats: int,
    threads: int,
    queue: mp.Queue,
) -> None:
    """Worker process: build the model, warm up, time one image (best of ``repeats``)."""
    torch.set_num_threads(threads)
    model, layout = build(name, DTYPES[dtype_name])
    cond, uncond = prompts(layout)

    def run(tokens: int) -> torch.Tensor:
        if method == "reference":
            return reference_loop(model, layout, cond, uncond, tokens)
        return generate_image_tokens(
            model, layout, [cond], uncond, grid_hw=(1, tokens), seed=0,
            image_rows_only=method == "liquidgen", **SETTINGS,
        )  # fmt: skip

    run(WARMUP_TOKENS)
    _peak_rss_reset()
    seconds = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        codes = run(n_tokens)
        seconds = min(seconds, time.perf_counter() - start)
        assert codes.numel() == n_tokens
    queue.put(
        dict(
            seconds=seconds,
            peak_rss_mb=_peak_rss_mb(),
            step_bytes=step_bytes(model, layout, method, n_tokens),
        )
    )


def step_bytes(model: PreTrainedModel, layout: VocabLayout, method: str, n_tokens: int) -> int:
    """Bytes one decode step of the CFG pair must read: weights, LM-head rows, KV cache.

    Decoder weights are every parameter except the input embedding (a step reads only the two
    embedding rows it looks up); the LM head counts all ``V`` rows, or only the image rows for
    ``liquidgen``; the KV cache of both rows is taken at mid-image.
    """
    embedding = model.get_input_embeddings().weight
    decoder = sum(p.numel() * p.element_size() for p in model.get_decoder().parameters())
    decoder -= embedding.numel() * embedding.element_size()
    head = model.get_output_embeddings().weight
    rows = layout.codebook_size if method == "liquidgen" else head.shape[0]
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    context = PROMPT_TOKENS + 1 + n_tokens // 2
    kv_values = 2 * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * context
    return (
        decoder + rows * head.shape[1] * head.element_size() + kv_values * embedding.element_size()
    )


def copy_bandwidth() -> float:
    """Memory bandwidth in bytes/s: (bytes read + bytes written) / time of a 1 GiB copy, best of 5."""
    src = torch.ones(BANDWIDTH_BYTES // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(BANDWIDTH_REPEATS):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * BANDWIDTH_BYTES / best


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--tokens", type=int, default=256,
        help="image tokens drawn per image (256 = a 16x16 grid; lower it to cap the run time; "
        "seconds per image are then extrapolated linearly to 256 in the 's/img@256' column)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=1, help="time each image this many times, keep the best"
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help="torch intra-op threads (default: all cores); 1 is faster when other work shares the cores",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bandwidth = copy_bandwidth()
    print(f"# {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"# copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write); {args.tokens} image "
          f"tokens per image, CFG batch of 2 rows, best of {args.repeats}\n")  # fmt: skip
    header = (
        f"| {'model':<12} | {'dtype':<8} | {'method':<14} | {'s/image':>8} | {'s/img@256':>9} "
        f"| {'img tok/s':>9} | {'peak RSS MB':>11} | {'bound s/img@256':>15} | {'MB/step':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    ctx = mp.get_context("spawn")
    for name in args.models:
        for dtype_name in args.dtypes:
            for method in args.methods:
                queue = ctx.Queue()
                worker = ctx.Process(
                    target=measure,
                    args=(name, dtype_name, method, args.tokens, args.repeats, args.threads, queue),
                )
                worker.start()
                result = queue.get()
                worker.join()
                per_step = result["step_bytes"]
                bound = 256 * per_step / bandwidth
                seconds = result["seconds"]
                print(
                    f"| {name:<12} | {dtype_name:<8} | {method:<14} | {seconds:8.2f} "
                    f"| {seconds * 256 / args.tokens:9.2f} | {args.tokens / seconds:9.1f} "
                    f"| {result['peak_rss_mb']:11.0f} | {bound:15.2f} | {per_step / 1e6:8.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
