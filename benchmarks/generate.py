"""Text-to-image sampling speed: liquidgen's generator vs the reference-style loop.

For each model (random weights built from a transformers config, or the shipped
``liquidgen-tiny`` with its real weights and a real prompt) and dtype, one image is generated
with CFG (one conditional + one unconditional row, batched) by each method, each in its own
process so that its peak RSS is its own:

- ``reference``: the authors' style of loop: plain HF forward returning full-vocabulary logits
  for every position, every step, CFG rows batched, ``DynamicCache``, full-vocabulary logit
  processing and ``torch.multinomial``;
- ``liquidgen-full``: :func:`liquidgen.inference.generation.generate_image_tokens` with
  ``image_rows_only=False`` and the ``DynamicCache`` (same loop, last-position logits only);
- ``liquidgen-dynamic``: image rows of the LM head only, ``DynamicCache`` (liquidgen before
  issue 18);
- ``liquidgen``: the library's defaults: image rows only, static KV cache, eager;
- ``liquidgen-static``: + ``torch.compile`` of the one-token step (compile time reported
  separately, not in ``s/image``);
- ``liquidgen-int8``: + weight-only int8 decoder (``quantize="int8"``), compiled;
- ``liquidgen-sjd``: static + compiled + speculative Jacobi decoding (``--jacobi-window``).

``--text`` adds a table of greedy text decoding (the path of answers and chat): DynamicCache
(before) vs the static cache, eager, compiled, and compiled with int8 weights.

The bandwidth bound is the time to stream, once per step, every byte the step must read (decoder
weights, the LM-head rows it uses, the KV cache at mid-image) at the memory bandwidth measured
here with a large tensor copy. Run ``python benchmarks/generate.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache, PreTrainedModel, Qwen2Config

from liquidgen.inference.generation import (
    cache_kwargs,
    generate_image_tokens,
    generate_text,
    left_pad,
)
from liquidgen.inference.quantize import apply_quantization
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
SHIPPED = "liquidgen-tiny"  # real weights and a real prompt, its own grid (8x8 at 128x128)
SHIPPED_PROMPT = "a red circle to the left of a blue square"
METHODS = (
    "reference",
    "liquidgen-full",
    "liquidgen-dynamic",
    "liquidgen",
    "liquidgen-static",
    "liquidgen-int8",
    "liquidgen-sjd",
)
TEXT_METHODS = ("text-dynamic", "text-static", "text-compiled", "text-int8")
INT8_METHODS = ("liquidgen-int8", "text-int8")  # loaded with quantize="int8"
TEXT_TOKENS = 64  # greedy tokens per text generation (no stop id)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build(
    name: str, dtype: torch.dtype, quantize: str | None = None
) -> tuple[PreTrainedModel, VocabLayout]:
    """A randomly initialised Qwen2 model of shape ``name`` (or the shipped model) and its
    vocabulary layout, quantized as the pipeline's ``quantize`` load option does."""
    if name == SHIPPED:
        pipe = shipped_pipeline(dtype, quantize)
        return pipe.model, pipe.layout
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
    return apply_quantization(model.eval(), quantize), layout


def shipped_pipeline(dtype: torch.dtype, quantize: str | None = None):  # -> Pipeline
    from liquidgen.assets import shipped
    from liquidgen.inference.pipeline import Pipeline

    return Pipeline.from_pretrained(shipped(SHIPPED), device="cpu", dtype=dtype, quantize=quantize)


def shipped_request(dtype: torch.dtype) -> tuple[list[int], list[int], tuple[int, int]]:
    """The real prompt's ids, the unconditional ids and the default code grid of the shipped model."""
    request = shipped_pipeline(dtype).image_request(SHIPPED_PROMPT)
    return list(request.cond_ids[0]), list(request.uncond_ids), request.grid


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
    window: int,
    queue: mp.Queue,
) -> None:
    """Worker process: build the model, warm up (compiling if the method does), time one image
    (best of ``repeats``)."""
    torch.set_num_threads(threads)
    dtype = DTYPES[dtype_name]
    model, layout = build(name, dtype, "int8" if method in INT8_METHODS else None)
    if name == SHIPPED:
        cond, uncond, grid = shipped_request(dtype)
        n_tokens = grid[0] * grid[1]
    else:
        cond, uncond = prompts(layout)
    options = {
        "reference": {},
        "liquidgen-full": dict(image_rows_only=False, static_cache=False),
        "liquidgen-dynamic": dict(static_cache=False),
        "liquidgen": dict(),
        "liquidgen-static": dict(compile=True),
        "liquidgen-int8": dict(compile=True),
        "liquidgen-sjd": dict(compile=True, speculative="jacobi", jacobi_window=window),
    }
    stats: dict[str, int] = {}

    def run(tokens: int, record: bool = False) -> torch.Tensor:
        if method == "reference":
            return reference_loop(model, layout, cond, uncond, tokens)
        return generate_image_tokens(
            model, layout, [cond], uncond, grid_hw=(1, tokens), seed=0,
            stats=stats if record else None, **options[method], **SETTINGS,
        )  # fmt: skip

    start = time.perf_counter()
    # compiled methods warm up on the timed run's shapes (the static cache's slots depend on
    # the tokens drawn: a shorter warm-up left the compilation inside the timed run)
    compiled = options[method].get("compile", False)
    run(n_tokens if compiled else WARMUP_TOKENS)  # compiles the step(s)
    warmup = time.perf_counter() - start
    _peak_rss_reset()
    seconds = float("inf")
    for _ in range(repeats):
        stats.clear()
        start = time.perf_counter()
        codes = run(n_tokens, record=True)
        seconds = min(seconds, time.perf_counter() - start)
        assert codes.numel() == n_tokens
    queue.put(
        dict(
            seconds=seconds,
            tokens=n_tokens,
            warmup_seconds=warmup,
            forwards=stats.get("forwards", n_tokens),
            peak_rss_mb=_peak_rss_mb(),
            step_bytes=step_bytes(model, layout, method, n_tokens, len(cond)),
        )
    )


def measure_text(name: str, dtype_name: str, method: str, threads: int, queue: mp.Queue) -> None:
    """Worker process: greedy text decoding of :data:`TEXT_TOKENS` tokens, timed after a warm-up."""
    torch.set_num_threads(threads)
    model, layout = build(name, DTYPES[dtype_name], "int8" if method in INT8_METHODS else None)
    cond, _ = prompts(layout) if name != SHIPPED else shipped_request(DTYPES[dtype_name])[:2]
    prompt = cond[:-1]  # text prompt (no <boi>)
    options = {
        "text-dynamic": dict(static_cache=False),
        "text-static": dict(static_cache=True),
        "text-compiled": dict(static_cache=True, compile=True),
        "text-int8": dict(static_cache=True, compile=True),
    }[method]

    class Ids:
        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return ""

    def run(tokens: int) -> int:
        out = generate_text(model, Ids(), prompt, max_new_tokens=tokens, **options)
        return len(out.token_ids)

    start = time.perf_counter()
    run(TEXT_TOKENS)  # same shapes as the timed run: compiles once
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    produced = run(TEXT_TOKENS)
    seconds = time.perf_counter() - start
    queue.put(dict(seconds=seconds, tokens=produced, warmup_seconds=warmup))


def step_bytes(
    model: PreTrainedModel, layout: VocabLayout, method: str, n_tokens: int, prompt_tokens: int
) -> int:
    """Bytes one decode step of the CFG pair must read: weights, LM-head rows, KV cache.

    Decoder weights are every parameter and buffer except the input embedding (a step reads
    only the two embedding rows it looks up; int8 weights count one byte); the LM head counts
    all ``V`` rows, or only the image rows for the ``liquidgen*`` image-row methods; the KV
    cache of both rows is taken at mid-image.
    """
    embedding = model.get_input_embeddings().weight
    decoder = model.get_decoder()
    tensors = [*decoder.parameters(), *decoder.buffers()]
    total = sum(t.numel() * t.element_size() for t in tensors if t.dim() > 0)
    rotary = sum(b.numel() * b.element_size() for n, b in decoder.named_buffers() if "rotary" in n)
    total -= embedding.numel() * embedding.element_size() + rotary
    head = model.get_output_embeddings().weight
    image_rows = method not in ("reference", "liquidgen-full")
    rows = layout.codebook_size if image_rows else head.shape[0]
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    context = prompt_tokens + n_tokens // 2
    kv_values = 2 * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * context
    return total + rows * head.shape[1] * head.element_size() + kv_values * embedding.element_size()


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


def _run(target, args: tuple) -> dict:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    worker = ctx.Process(target=target, args=(*args, queue))
    worker.start()
    result = queue.get()
    worker.join()
    return result


def _launches(methods: Sequence[str], launches: int, run: Callable[[str], dict]) -> dict:
    """Each method measured in ``launches`` fresh processes, the methods alternating (a slow
    spell of the machine hits all of them); per method the launch of median seconds, with
    every launch's seconds in ``launch_seconds``."""
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(launches):
        for method in methods:
            runs[method].append(run(method))
    out = {}
    for method, results in runs.items():
        ordered = sorted(results, key=lambda r: r["seconds"])
        out[method] = {
            **ordered[len(ordered) // 2],
            "launch_seconds": [r["seconds"] for r in results],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = [*MODELS, SHIPPED]
    parser.add_argument("--models", nargs="+", choices=models, default=models)
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--tokens", type=int, default=256,
        help="image tokens drawn per image of the random models (256 = a 16x16 grid; lower it "
        "to cap the run time; seconds per image are then extrapolated linearly to 256 in the "
        "'s/img@256' column); liquidgen-tiny always draws its own grid",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=1, help="time each image this many times, keep the best"
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help="torch intra-op threads (default: all cores); 1 is faster when other work shares the cores",
    )  # fmt: skip
    parser.add_argument(
        "--jacobi-window", type=int, default=16, help="tokens per SJD forward (liquidgen-sjd)"
    )
    parser.add_argument(
        "--text", action="store_true",
        help=f"also time greedy text decoding ({TEXT_TOKENS} tokens): " + ", ".join(TEXT_METHODS),
    )  # fmt: skip
    parser.add_argument(
        "--launches", type=int, default=1,
        help="fresh processes per method, alternating; the median launch is reported (the speed "
        "of one process varies between launches by up to ~25%% on small machines)",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write every row as JSON to PATH")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bandwidth = copy_bandwidth()
    meta = dict(
        cpu=cpu_model(), cpus=os.cpu_count(), torch=torch.__version__,
        threads=torch.get_num_threads(), load_average=os.getloadavg(),
        bandwidth_gb_s=bandwidth / 1e9, tokens=args.tokens, repeats=args.repeats,
        jacobi_window=args.jacobi_window, argv=sys.argv[1:],
    )  # fmt: skip
    print(f"# {meta['cpu']}, {meta['cpus']} CPUs, torch {meta['torch']}, "
          f"{meta['threads']} threads, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"# copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write); {args.tokens} image "
          f"tokens per image (liquidgen-tiny: its grid), CFG batch of 2 rows, best of "
          f"{args.repeats}; SJD window {args.jacobi_window}\n")  # fmt: skip
    columns = [
        ("model", 14), ("dtype", 8), ("method", 17), ("s/image", 8), ("s/img@256", 9),
        ("x ref", 6), ("fwd/img", 7), ("% bound", 7), ("warm-up s", 9), ("peak RSS MB", 11),
        ("bound s/img@256", 15), ("MB/step", 8),
    ]  # fmt: skip
    print("| " + " | ".join(f"{c:<{w}}" for c, w in columns) + " |")
    print("|" + "|".join("-" * (w + 2) for _, w in columns) + "|")
    rows: list[dict] = []
    for name in args.models:
        for dtype_name in args.dtypes:
            reference = None
            results = _launches(
                args.methods,
                args.launches,
                lambda m, name=name, dtype_name=dtype_name: _run(
                    measure,
                    (name, dtype_name, m, args.tokens, args.repeats, args.threads,
                     args.jacobi_window),
                ),
            )  # fmt: skip
            for method in args.methods:
                result = results[method]
                tokens, seconds = result["tokens"], result["seconds"]
                per_step = result["step_bytes"]
                bound = 256 * per_step / bandwidth
                if method == "reference":
                    reference = seconds
                # a plain loop runs one forward per token: the bound for its forwards
                of_bound = result["forwards"] * per_step / bandwidth / seconds
                row = dict(
                    model=name, dtype=dtype_name, method=method, tokens=tokens,
                    seconds=seconds, seconds_at_256=seconds * 256 / tokens,
                    speedup_vs_reference=None if reference is None else reference / seconds,
                    forwards=result["forwards"], fraction_of_bound=of_bound,
                    warmup_seconds=result["warmup_seconds"], peak_rss_mb=result["peak_rss_mb"],
                    bound_seconds_at_256=bound, step_mb=per_step / 1e6,
                    launch_seconds=result["launch_seconds"],
                )  # fmt: skip
                rows.append(row)
                ratio = "" if reference is None else f"{reference / seconds:.2f}"
                values = [
                    name, dtype_name, method, f"{seconds:.2f}", f"{seconds * 256 / tokens:.2f}",
                    ratio, str(result["forwards"]), f"{100 * of_bound:.0f}%",
                    f"{result['warmup_seconds']:.1f}", f"{result['peak_rss_mb']:.0f}",
                    f"{bound:.2f}", f"{per_step / 1e6:.1f}",
                ]  # fmt: skip
                print(
                    "| " + " | ".join(f"{v:<{w}}" if i < 3 else f"{v:>{w}}"
                                      for i, (v, (_, w)) in enumerate(zip(values, columns, strict=True))) + " |",
                    flush=True,
                )  # fmt: skip
    if args.text:
        print(f"\n# greedy text decoding, {TEXT_TOKENS} new tokens, one row\n")
        print("| model          | dtype    | method        | tokens/s | x dynamic | warm-up s |")
        print("|----------------|----------|---------------|----------|-----------|-----------|")
        for name in args.models:
            for dtype_name in args.dtypes:
                base = None
                results = _launches(
                    TEXT_METHODS,
                    args.launches,
                    lambda m, name=name, dtype_name=dtype_name: _run(
                        measure_text, (name, dtype_name, m, args.threads)
                    ),
                )
                for method in TEXT_METHODS:
                    result = results[method]
                    rate = result["tokens"] / result["seconds"]
                    base = rate if method == "text-dynamic" else base
                    ratio = "" if base is None else f"{rate / base:.2f}"
                    rows.append(dict(
                        model=name, dtype=dtype_name, method=method, tokens=result["tokens"],
                        seconds=result["seconds"], tokens_per_second=rate,
                        speedup_vs_dynamic=None if base is None else rate / base,
                        warmup_seconds=result["warmup_seconds"],
                        launch_seconds=result["launch_seconds"],
                    ))  # fmt: skip
                    print(f"| {name:<14} | {dtype_name:<8} | {method:<13} | {rate:8.1f} "
                          f"| {ratio:>9} | {result['warmup_seconds']:9.1f} |", flush=True)  # fmt: skip
    meta["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
