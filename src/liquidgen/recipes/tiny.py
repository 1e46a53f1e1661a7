"""The liquidgen-tiny recipe: a Liquid model trained from scratch, on 2 CPU cores.

Stages (each resumable: a finished stage is skipped, an interrupted one continues):

1. ``vq``       — a VQGAN on world renders (``liquidgen tokenizer train``);
2. ``world``    — world datasets at every bucket size (``liquidgen world make``);
3. ``text-tok`` — a byte-level BPE on the real corpus + every world/easy-vqa text;
4. ``backbone`` — a random transformers backbone (``liquidgen init-backbone``);
5. ``model``    — Liquid's vocabulary layout (``liquidgen expand``) + generation defaults;
6. ``tok/*``    — images -> codes once (``liquidgen data tokenize``);
7. ``train``    — the mixed-modality trainer (``liquidgen train``);
8. export       — the last checkpoint without training state, plus a model card.

Every path in the stage configs may use ``{work}`` for the recipe's work folder. Run it
with ``make tiny-model`` (``configs/liquidgen-tiny/recipe.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from liquidgen.errors import ConfigError, LiquidgenError
from liquidgen.utils.config import read_yaml_mapping
from liquidgen.utils.io import atomic_dir

_TRAINING_STATE = ("optimizer.pt", "rng.pt", "trainer_state.json", "manifest.json")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """``configs/liquidgen-tiny/recipe.yaml``: what to build and where."""

    work_dir: str  # intermediate outputs (gitignored), reused on rerun
    out_dir: str  # the exported model
    sizes: list[str]  # image buckets "WxH" (first = default size)
    understanding_size: int  # square side of understanding inputs
    tokenizer: dict[str, Any]  # {config: PATH, overrides: [key=value]}
    world: dict[str, int]  # {train: N, val: N, seed: S}
    text_tokenizer: dict[str, int]  # {vocab_size: N}
    backbone: str  # YAML: model_type + sizes
    train: dict[str, Any]  # {config: PATH, overrides: [key=value]}
    easy_vqa_size: int = 128  # easy-vqa's 64x64 images are padded/resized to this square

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
        data = read_yaml_mapping(path)
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


def _log(message: str) -> None:
    print(f"[liquidgen-tiny] {message}", flush=True)


def _corpus_texts(world_dir: Path) -> list[str]:
    """Every text the model will see: the real corpus, world captions/prompts/QA, easy-vqa."""
    from liquidgen.corpora.easy_vqa import load_questions
    from liquidgen.corpora.text import load_text_corpus

    corpus = load_text_corpus()
    texts = list(corpus.train)
    for line in (world_dir / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += row["captions"] + [p["prompt"] for p in row["prompts"]]
        texts += [f"{q['question']} {q['answer']}" for q in row["questions"]]
    texts += [f"{q} {a}" for _, q, a in load_questions("train")]
    return texts


def run(recipe: Recipe, *, progress: bool = True) -> Path:
    """Run every stage of ``recipe`` (skipping finished ones); returns the exported folder."""
    from liquidgen.model import expand, save_text_tokenizer, train_text_tokenizer
    from liquidgen.model.scratch import init_backbone, read_backbone_config
    from liquidgen.pipeline import GENERATION_FILE
    from liquidgen.tokenizer import VQGAN
    from liquidgen.tokenizer import train as vq_train
    from liquidgen.training import load_config, train
    from liquidgen.training.data import tokenize_dataset
    from liquidgen.training.inputs import open_input
    from liquidgen.world import write_dataset

    work = Path(recipe.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sizes = recipe.size_pairs()
    started = time.time()

    # 1. the image tokenizer
    vq_cfg = vq_train.load_config(
        recipe.tokenizer["config"],
        [*recipe.tokenizer.get("overrides", []), f"output.run_dir={work / 'vq'}"],
    )
    vq_dir = work / "vq" / "final"
    if not (vq_dir / "model.safetensors").is_file():
        _log("stage 1/7: VQGAN tokenizer")
        vq_train.train(vq_cfg, progress=progress)
    # 2. world data
    seed = recipe.world.get("seed", 0)
    for split, n, s in (
        ("train", recipe.world["train"], seed),
        ("val", recipe.world["val"], seed + 1),
    ):
        if not (work / f"world-{split}" / "metadata.jsonl").is_file():
            _log(f"stage 2/7: world {split} ({n} images at {', '.join(recipe.sizes)})")
            write_dataset(work / f"world-{split}", n, sizes, s, "train", progress=progress)
    # 3. text tokenizer
    if not (work / "text-tok" / "tokenizer.json").is_file():
        _log("stage 3/7: BPE text tokenizer")
        tok = train_text_tokenizer(
            _corpus_texts(work / "world-train"), recipe.text_tokenizer["vocab_size"]
        )
        save_text_tokenizer(tok, work / "text-tok")
    # 4-5. backbone, expansion, generation defaults
    if not (work / "backbone" / "config.json").is_file():
        _log("stage 4/7: random backbone")
        init_backbone(
            read_backbone_config(recipe.backbone), work / "text-tok", work / "backbone", seed=seed
        )
    model_dir = work / "model"
    if not (model_dir / GENERATION_FILE).is_file():
        _log("stage 5/7: Liquid vocabulary layout")
        expand(work / "backbone", vq_dir, model_dir, seed=seed)
        width, height = sizes[0]
        defaults = {
            "width": width,
            "height": height,
            "understanding_size": recipe.understanding_size,
            "size_prefix": len(sizes) > 1,
            "buckets": [list(s) for s in sizes],
        }
        (model_dir / GENERATION_FILE).write_text(json.dumps(defaults, indent=2) + "\n")
    # 6. tokenized data
    vqgan = VQGAN.from_pretrained(vq_dir)
    jobs = [
        (f"world-{split}", str(work / f"world-{split}"), vqgan, None, "generation")
        for split in ("train", "val")
    ]
    easy = (recipe.easy_vqa_size, recipe.easy_vqa_size)
    jobs += [
        (f"easy-vqa-{s}", f"easy-vqa:{s}", vqgan, easy, "understanding") for s in ("train", "test")
    ]
    jobs += [
        (f"pydoc-{s}", f"pydoc:{s}", None, None, "generation") for s in ("train", "validation")
    ]
    for name, spec, vq, size, preprocess in jobs:
        _log(f"stage 6/7: tokenize {name}")
        tokenize_dataset(
            open_input(spec), work / "tok" / name, vqgan=vq, image_size=size,
            preprocess=preprocess, progress=progress,
        )  # fmt: skip
    # 7. training
    train_yaml = work / "train.yaml"
    train_yaml.write_text(
        yaml.safe_dump(_substitute(yaml.safe_load(Path(recipe.train["config"]).read_text()), work))
    )
    config = load_config(train_yaml, recipe.train.get("overrides", []))
    _log(f"stage 7/7: training ({config.max_steps} steps)")
    result = train(config)
    # export
    out = Path(recipe.out_dir)
    with atomic_dir(out) as tmp:
        for item in result.last_checkpoint.iterdir():
            if item.name in _TRAINING_STATE:
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        card = {
            "recipe": dataclasses.asdict(recipe),
            "steps": result.step,
            "wall_clock_s": round(time.time() - started, 1),
            "final_validation": result.val,
        }
        (tmp / "training_summary.json").write_text(json.dumps(card, indent=2) + "\n")
    _log(f"exported {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m liquidgen.recipes.tiny", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--recipe", default="configs/liquidgen-tiny/recipe.yaml", help="recipe YAML"
    )
    parser.add_argument("--work-dir", help="override the recipe's work_dir")
    parser.add_argument("--out-dir", help="override the recipe's out_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("work_dir", args.work_dir), ("out_dir", args.out_dir)) if v}
    try:
        run(Recipe.load(args.recipe, overrides), progress=not args.quiet)
    except LiquidgenError as e:
        print(f"liquidgen: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
