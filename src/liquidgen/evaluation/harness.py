"""One evaluation run over a loaded checkpoint: the tasks, their fixed inputs, the outputs.

:func:`run_evaluation` runs any of :data:`TASKS` on a
:class:`~liquidgen.inference.pipeline.Pipeline` and returns an :class:`EvalRun`;
:func:`write_outputs` writes ``results.json``, ``results.md``, ``samples.png`` (when
text-to-image ran), ``records.jsonl`` (every verdict) and ``timings.json`` (wall-clock
times, the only output that differs between reruns)::

    pipe = Pipeline.from_pretrained("models/liquidgen-tiny")
    run = run_evaluation(pipe, EvalSettings(tasks=TASKS), model="models/liquidgen-tiny")
    write_outputs("eval_out", run)

Sizes: text-to-image uses every size the checkpoint was trained to generate
(``liquid_generation.json`` ``buckets``, else its default ``width x height``); VQA and the
tokenizer add the square understanding size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liquidgen.assets import TINY_MODEL
from liquidgen.corpora.text import DEFAULT_CORPUS, check_corpus
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.evaluation import report
from liquidgen.evaluation.t2i import (
    DEFAULT_IMAGES_PER_PROMPT,
    DEFAULT_PROMPT_BATCH,
    DEFAULT_PROMPTS_PER_TAG,
    T2ISample,
    chance_level,
    evaluate_t2i,
    size_name,
    summarize_t2i,
)
from liquidgen.evaluation.text import DEFAULT_TEXT_BATCH, evaluate_text
from liquidgen.evaluation.tokenizer import (
    DEFAULT_SCENES_PER_SIZE,
    DEFAULT_TOKENIZER_BATCH,
    evaluate_locality,
    evaluate_roundtrip,
    summarize_tokenizer,
)
from liquidgen.evaluation.vqa import (
    DEFAULT_ANSWER_BATCH,
    DEFAULT_EASY_VQA_QUESTIONS,
    DEFAULT_WORLD_QUESTIONS,
    MAX_ANSWER_TOKENS,
    WORLD_SOURCES,
    easy_vqa_items,
    evaluate_vqa,
    summarize_vqa,
    world_items,
)

if TYPE_CHECKING:
    from liquidgen.inference.pipeline import Pipeline

TASKS: tuple[str, ...] = ("t2i", "vqa", "text", "tokenizer")
RESULTS_VERSION = 1  # bump when the layout of results.json changes


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What to run and how much of it.

    ``limit`` caps the items of each group, in the unit of the task: prompts per category
    (t2i), questions per source (vqa), documents (text), renders per size (tokenizer);
    ``None`` keeps each task's default. ``batch_size`` is items per forward pass in the same
    units (``None``: each task's default). ``sizes`` replaces the checkpoint's generation
    sizes. ``seed`` is the sampling seed of text-to-image; prompts, scenes and documents are
    fixed whatever it is.
    """

    tasks: tuple[str, ...] = TASKS
    n: int = DEFAULT_IMAGES_PER_PROMPT  # images per prompt (t2i)
    limit: int | None = None
    seed: int = 0
    batch_size: int | None = None
    sizes: tuple[tuple[int, int], ...] | None = None
    text_corpus: str = DEFAULT_CORPUS  # held-out real text of the text task
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"unknown task(s) {unknown}; expected some of {', '.join(TASKS)}")
        names = {"n": "n (images per prompt)", "limit": "limit", "batch_size": "batch size"}
        for field, name in names.items():
            value = getattr(self, field)
            if value is None and field != "n":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.sizes is not None and not self.sizes:
            raise ConfigError("sizes must not be empty")
        check_corpus(self.text_corpus)

    def command(self, model: str | None) -> str:
        """The ``liquidgen eval`` command line that reproduces these settings
        (``model=None``: the shipped default model, no ``--model``). The command line runs
        one task or all; other subsets, possible from Python, are written as a comma list."""
        chosen = [t for t in TASKS if t in self.tasks]
        task = "all" if chosen == list(TASKS) else ",".join(chosen)
        parts = ["liquidgen eval", task]
        if model is not None:
            parts.append(f"--model {model}")
        if "t2i" in self.tasks:
            parts.append(f"--n {self.n}")
        if self.limit is not None:
            parts.append(f"--limit {self.limit}")
        if self.batch_size is not None:
            parts.append(f"--batch-size {self.batch_size}")
        if self.sizes is not None:
            parts.append("--sizes " + ",".join(size_name(s) for s in self.sizes))
        if "text" in self.tasks:  # always named: the command must outlive a default change
            parts.append(f"--corpus {self.text_corpus}")
        parts.append(f"--seed {self.seed}")
        return " ".join(parts)


@dataclasses.dataclass
class EvalRun:
    """Everything a run produced: summary, per-item verdicts, grid samples, wall-clock times."""

    results: dict[str, Any]
    records: list[dict[str, Any]]
    samples: list[T2ISample]
    timings: dict[str, Any]


def generation_sizes(pipe: Pipeline) -> list[tuple[int, int]]:
    """The ``(width, height)`` sizes a checkpoint generates: its buckets, else its default."""
    d = pipe.defaults
    return list(dict.fromkeys(d.buckets)) if d.buckets else [(d.width, d.height)]


def image_sizes(pipe: Pipeline, sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``sizes`` plus the square understanding size (for VQA and the tokenizer)."""
    side = pipe.defaults.understanding_size
    return list(dict.fromkeys([*sizes, (side, side)]))


def _batch(settings: EvalSettings, default: int) -> int:
    return settings.batch_size if settings.batch_size is not None else default


def run_evaluation(pipe: Pipeline, settings: EvalSettings, *, model: str | None) -> EvalRun:
    """Run ``settings.tasks`` on ``pipe`` in the order of :data:`TASKS`.

    ``model`` names the checkpoint in the results as the user gave it, so the recorded
    command reruns the evaluation (``None``: the shipped default model).
    """
    sizes = list(settings.sizes) if settings.sizes is not None else generation_sizes(pipe)
    results: dict[str, Any] = {
        "version": RESULTS_VERSION,
        "command": settings.command(model),
        "model": model if model is not None else f"{TINY_MODEL} (shipped)",
        "settings": {
            "tasks": [t for t in TASKS if t in settings.tasks],
            "seed": settings.seed,
            "limit": settings.limit,
            "batch_size": settings.batch_size,
            "device": pipe.device.type,
            "dtype": str(pipe.dtype).removeprefix("torch."),
        },
    }
    records: list[dict[str, Any]] = []
    samples: list[T2ISample] = []
    timings: dict[str, Any] = {}
    for task in (t for t in TASKS if t in settings.tasks):
        start = time.perf_counter()
        if task == "t2i":
            prompts_per_tag = settings.limit or DEFAULT_PROMPTS_PER_TAG
            out = evaluate_t2i(
                pipe.generate_images,
                sizes,
                n=settings.n,
                prompts_per_tag=prompts_per_tag,
                seed=settings.seed,
                batch_size=_batch(settings, DEFAULT_PROMPT_BATCH),
                progress=settings.progress,
            )
            results["t2i"] = {
                "sizes": [size_name(s) for s in sizes],
                "images_per_prompt": settings.n,
                "prompts_per_category": prompts_per_tag,
                "sampling": {  # the checkpoint's defaults (liquid_generation.json)
                    "cfg_scale": pipe.defaults.cfg_scale,
                    "temperature": pipe.defaults.temperature,
                    "top_k": min(pipe.defaults.top_k, pipe.layout.codebook_size),
                    "top_p": pipe.defaults.top_p,
                },
                **summarize_t2i(out.records),
                "chance": chance_level(prompts_per_tag),
            }
            records += [r.to_dict() for r in out.records]
            samples = out.samples
            count = len(out.records)
        elif task == "vqa":
            vqa_sizes = image_sizes(pipe, sizes)
            items = [
                item
                for source in WORLD_SOURCES
                for item in world_items(
                    source, settings.limit or DEFAULT_WORLD_QUESTIONS, vqa_sizes
                )
            ]
            items += easy_vqa_items(settings.limit or DEFAULT_EASY_VQA_QUESTIONS)
            answer = functools.partial(
                pipe.answers,
                max_new_tokens=MAX_ANSWER_TOKENS,
                batch_size=_batch(settings, DEFAULT_ANSWER_BATCH),
            )
            vqa_records = evaluate_vqa(
                answer,
                items,
                batch_size=_batch(settings, DEFAULT_ANSWER_BATCH),
                progress=settings.progress,
            )
            results["vqa"] = {
                "world_sizes": [size_name(s) for s in vqa_sizes],
                "understanding_size": pipe.defaults.understanding_size,
                # bucket-sized renders read as they are (True) or padded to the square
                "understanding_native": pipe.defaults.understanding_native,
                "max_answer_tokens": MAX_ANSWER_TOKENS,
                "sources": summarize_vqa(vqa_records),
            }
            records += [r.to_dict() for r in vqa_records]
            count = len(vqa_records)
        elif task == "text":
            results["text"] = evaluate_text(
                pipe,
                limit=settings.limit,
                batch_size=_batch(settings, DEFAULT_TEXT_BATCH),
                corpus=settings.text_corpus,
                progress=settings.progress,
            )
            count = results["text"]["documents"]
        else:
            vq = pipe.vq
            if vq is None:
                raise CheckpointError("this checkpoint has no image tokenizer to evaluate")
            tok_records, stats = evaluate_roundtrip(
                vq,
                image_sizes(pipe, sizes),
                scenes_per_size=settings.limit or DEFAULT_SCENES_PER_SIZE,
                batch_size=_batch(settings, DEFAULT_TOKENIZER_BATCH),
                progress=settings.progress,
            )
            results["tokenizer"] = summarize_tokenizer(tok_records, stats, vq.codebook_size)
            results["tokenizer"]["locality"] = evaluate_locality(
                vq,
                image_sizes(pipe, sizes),
                scenes_per_size=settings.limit or DEFAULT_SCENES_PER_SIZE,
            )
            records += [r.to_dict() for r in tok_records]
            count = len(tok_records)
        seconds = time.perf_counter() - start
        timings[task] = {
            "seconds": round(seconds, 3),
            "items": count,
            "seconds_per_item": round(seconds / max(count, 1), 4),
        }
    return EvalRun(results, records, samples, timings)


def write_outputs(out: str | os.PathLike[str], run: EvalRun) -> list[Path]:
    """Write the run's files into ``out`` (created if missing); returns their paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        report.write_text(out / report.RESULTS_FILE, report.to_json(run.results)),
        report.write_text(out / report.MARKDOWN_FILE, report.markdown_report(run.results)),
        report.write_records(out / report.RECORDS_FILE, run.records),
        report.write_text(out / report.TIMINGS_FILE, report.to_json(run.timings)),
    ]
    if run.samples:
        paths.append(report.write_grid(out / report.GRID_FILE, run.samples))
    return paths
