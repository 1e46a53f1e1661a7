"""Text-to-image evaluation: fixed GenEval-like prompts, every image scored exactly.

GenEval (Ghosh et al. 2023) asks a model for N images per prompt in six categories (single
object, two objects, counting, colours, position, colour attribution), checks each image with
an object detector and reports per-category accuracy and their mean. Here the detector is the
world's parser (:func:`liquidgen.world.parse`) and the rules are the world's GenEval port
(:func:`liquidgen.world.score.evaluate_scene`), so a score is a fact about the picture.

The prompt set is fixed: category ``tag`` of split ``s`` draws from its own generator
``default_rng([PROMPT_SEEDS[s], tag index])`` until it has ``prompts_per_tag`` distinct
prompts (or the category has no more: e.g. only six single-object prompts exist), so a
smaller ``prompts_per_tag`` gives a prefix of a larger one. Two splits are reported apart:

- ``seen``: compositions the training text may contain (world split ``train``, all six tags);
- ``heldout``: held-out shape-colour pairs and relations that no training text states
  (world split ``heldout``; only ``colors``, ``position`` and ``color_attr`` can hold out).

**Does the model read its prompt?** Every image is also scored against a *shuffled* prompt:
the next distinct prompt of the same split and category (a fixed derangement). A model that
ignores its prompt scores the same on both; ``own - shuffled`` (the prompt sensitivity) is
what the text explains. :func:`chance_level` is the score of a model that draws a random
world scene whatever it is asked (exact, from the scenes, no rendering), the floor to beat.

Every size of the checkpoint is evaluated with the same prompts. Image ``j`` of prompt ``p``
(``p`` counts seen prompts first, then held-out ones) is drawn with seed ``seed + p * n + j``
at every size, whatever the batching, so reruns give the same images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.world import TAGS, PromptSpec, Scene, aggregate, evaluate_scene, parse, sample_spec
from liquidgen.world.text import HELDOUT_TAGS

DEFAULT_PROMPTS_PER_TAG = 10
DEFAULT_IMAGES_PER_PROMPT = 4
DEFAULT_PROMPT_BATCH = 8  # prompts per generation call (each with n images and a CFG partner)
SPLITS: tuple[str, ...] = ("seen", "heldout")
WORLD_SPLIT = {"seen": "train", "heldout": "heldout"}  # our split name -> the world's
SPLIT_TAGS = {"seen": TAGS, "heldout": HELDOUT_TAGS}
# Seeds of the fixed prompt sets (not the sampling seed); never change them, or old results
# stop being comparable.
PROMPT_SEEDS = {"seen": 610_001, "heldout": 610_002}
DRAWS_PER_PROMPT = 50  # draws per wanted prompt before a category counts as exhausted
CHANCE_SEED = 610_003  # random scenes of the chance level; never change it
CHANCE_SCENES = 64  # random scenes scored per prompt for the chance level

ProgressFn = Callable[[int, int], None]


class ImageGenerator(Protocol):
    """Draws ``n`` images of ``width`` x ``height`` per prompt; image ``j`` of prompt ``p`` uses
    seed ``seed + p * n + j``.
    :meth:`liquidgen.inference.pipeline.Pipeline.generate_images` is one."""

    def __call__(
        self,
        prompts: Sequence[str],
        *,
        width: int,
        height: int,
        n: int,
        seed: int,
        progress: ProgressFn | None = None,
    ) -> list[list[Image.Image]]: ...


@dataclasses.dataclass(frozen=True)
class T2IRecord:
    """The verdict on one generated image."""

    split: str  # "seen" or "heldout"
    tag: str  # GenEval-like category
    prompt: str
    size: str  # "WxH"
    image: int  # index j among the n images of the prompt
    seed: int  # the sampling seed of this image
    correct: bool
    reasons: tuple[str, ...]  # why the image fails the prompt (empty when correct)
    # the same image scored against another prompt of its split and category (None: not run)
    shuffled_correct: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task": "t2i", **dataclasses.asdict(self), "reasons": list(self.reasons)}


@dataclasses.dataclass(frozen=True)
class T2ISample:
    """An image kept for the sample grid with its verdict."""

    record: T2IRecord
    image: Image.Image


@dataclasses.dataclass(frozen=True)
class T2IResult:
    """All verdicts and one sample image per (split, tag, size): the first prompt's first image."""

    records: list[T2IRecord]
    samples: list[T2ISample]


def size_name(size: tuple[int, int]) -> str:
    """``(160, 96)`` -> ``"160x96"`` (width x height)."""
    return f"{size[0]}x{size[1]}"


def prompt_set(
    prompts_per_tag: int = DEFAULT_PROMPTS_PER_TAG,
    *,
    seeds: Mapping[str, int] = PROMPT_SEEDS,
    exclude: Collection[str] = (),
    draws_per_prompt: int = DRAWS_PER_PROMPT,
) -> dict[str, list[PromptSpec]]:
    """The fixed prompts of each split: up to ``prompts_per_tag`` distinct prompts per category.

    ``seeds`` (one per split) and ``exclude`` (prompt texts never chosen) draw other sets the
    same way, e.g. validation prompts disjoint from the evaluation's (benchmarks/t2i_sampling.py).
    """
    if prompts_per_tag < 1:
        raise ConfigError(f"prompts per category must be >= 1, got {prompts_per_tag}")
    prompts: dict[str, list[PromptSpec]] = {}
    for split in SPLITS:
        specs: list[PromptSpec] = []
        for tag in SPLIT_TAGS[split]:
            rng = np.random.default_rng([seeds[split], TAGS.index(tag)])
            chosen: dict[str, PromptSpec] = {}
            for _ in range(draws_per_prompt * prompts_per_tag):
                spec = sample_spec(rng, tag, WORLD_SPLIT[split])
                if spec.prompt not in exclude:
                    chosen.setdefault(spec.prompt, spec)
                if len(chosen) == prompts_per_tag:
                    break
            specs += chosen.values()
        prompts[split] = specs
    return prompts


def shuffled_prompts(specs: Sequence[PromptSpec]) -> list[PromptSpec]:
    """For each spec, the next spec of the same category with a different prompt (cyclic);
    the spec itself when its category has only one prompt."""
    by_tag: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        by_tag.setdefault(spec.tag, []).append(i)
    out = list(specs)
    for members in by_tag.values():
        for k, i in enumerate(members):
            for step in range(1, len(members)):
                other = specs[members[(k + step) % len(members)]]
                if other.prompt != specs[i].prompt:
                    out[i] = other
                    break
    return out


def chance_level(
    prompts_per_tag: int = DEFAULT_PROMPTS_PER_TAG,
    *,
    size: tuple[int, int] = (128, 128),
    scenes: int = CHANCE_SCENES,
) -> dict[str, float]:
    """GenEval overall per split of a model that ignores its prompt and draws a random world
    scene (``sample_scene``, 1-4 objects) for each of ``scenes`` images per prompt."""
    from liquidgen.world import sample_scene

    prompts = prompt_set(prompts_per_tag)
    out: dict[str, float] = {}
    for split in SPLITS:
        rng = np.random.default_rng([CHANCE_SEED, SPLITS.index(split)])
        drawn = [sample_scene(rng, *size, split=WORLD_SPLIT[split]) for _ in range(scenes)]
        out[split] = aggregate(
            (spec.tag, evaluate_scene(spec, scene)[0]) for spec in prompts[split] for scene in drawn
        ).overall
    return out


def parse_generated(image: Image.Image) -> Scene | str:
    """The scene the parser reads in a model's image, or why it could not read one.

    An evaluator must survive any picture a model draws; arithmetic failures of the parser
    on such pictures count as "nothing readable" (the image fails) instead of ending the run.
    """
    try:
        return parse(image)
    except (ValueError, ArithmeticError) as e:
        return f"the parser failed on this image ({type(e).__name__}: {e})"


def score_image(spec: PromptSpec, image: Image.Image) -> tuple[bool, tuple[str, ...]]:
    """Whether ``image`` follows ``spec`` (parse it, apply GenEval's rules), with the reasons."""
    scene = parse_generated(image)
    if isinstance(scene, str):
        return False, (scene,)
    ok, reasons = evaluate_scene(spec, scene)
    return ok, tuple(reasons)


def evaluate_t2i(
    generate: ImageGenerator,
    sizes: Sequence[tuple[int, int]],
    *,
    n: int = DEFAULT_IMAGES_PER_PROMPT,
    prompts_per_tag: int = DEFAULT_PROMPTS_PER_TAG,
    seed: int = 0,
    batch_size: int = DEFAULT_PROMPT_BATCH,
    progress: bool = True,
) -> T2IResult:
    """Generate ``n`` images per fixed prompt at every size and score each one.

    ``generate`` is usually ``pipeline.generate_images``; tests pass a function that renders
    the true scene to check the scoring path without a model.
    """
    if n < 1:
        raise ConfigError(f"n (images per prompt) must be an integer >= 1, got {n}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if not sizes:
        raise ConfigError("no image size to evaluate")
    prompts = prompt_set(prompts_per_tag)
    jobs = [(split, p) for split in SPLITS for p in prompts[split]]  # global prompt index order
    other = {
        (split, spec.prompt): shuffled
        for split in SPLITS
        for spec, shuffled in zip(prompts[split], shuffled_prompts(prompts[split]), strict=True)
    }
    records: list[T2IRecord] = []
    samples: list[T2ISample] = []
    total = len(jobs) * n * len(sizes)
    with tqdm(total=total, unit="img", desc="t2i", disable=not progress) as bar:
        for width, height in sizes:
            size = size_name((width, height))
            sampled: set[tuple[str, str]] = set()
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                done = bar.n

                def report(
                    step: int, steps: int, base: int = done, images: int = len(chunk) * n
                ) -> None:
                    bar.update(base + images * step // steps - bar.n)

                images = generate(
                    [spec.prompt for _, spec in chunk],
                    width=width,
                    height=height,
                    n=n,
                    seed=seed + start * n,
                    progress=report,
                )
                bar.update(done + len(chunk) * n - bar.n)
                if len(images) != len(chunk) or any(len(row) != n for row in images):
                    raise ConfigError(
                        f"the generator returned {[len(r) for r in images]} images, "
                        f"expected {n} for each of {len(chunk)} prompts"
                    )
                for offset, ((split, spec), row) in enumerate(zip(chunk, images, strict=True)):
                    for j, image in enumerate(row):
                        if image.size != (width, height):
                            raise ConfigError(
                                f"the generator returned a {size_name(image.size)} image "
                                f"for size {size}"
                            )
                        ok, reasons = score_image(spec, image)
                        wrong = other[(split, spec.prompt)]
                        record = T2IRecord(
                            split=split,
                            tag=spec.tag,
                            prompt=spec.prompt,
                            size=size,
                            image=j,
                            seed=seed + (start + offset) * n + j,
                            correct=ok,
                            reasons=reasons,
                            shuffled_correct=score_image(wrong, image)[0],
                        )
                        records.append(record)
                        if (split, spec.tag) not in sampled:
                            sampled.add((split, spec.tag))
                            samples.append(T2ISample(record, image))
    return T2IResult(records, samples)


def _accuracies(records: Sequence[T2IRecord]) -> dict[str, Any]:
    report = aggregate((r.tag, r.correct) for r in records)
    return {"overall": report.overall, "per_tag": report.per_tag, "counts": report.counts}


def summarize_t2i(records: Sequence[T2IRecord]) -> dict[str, Any]:
    """Per split: per-category accuracy over all images and sizes, GenEval's overall score
    (the mean of the category accuracies), and the same per size."""
    summary: dict[str, Any] = {}
    for split in SPLITS:
        mine = [r for r in records if r.split == split]
        if not mine:
            continue
        sizes = list(dict.fromkeys(r.size for r in mine))
        summary[split] = {
            **_accuracies(mine),
            "prompts": len({r.prompt for r in mine}),
            "per_size": {s: _accuracies([r for r in mine if r.size == s]) for s in sizes},
        }
        if all(r.shuffled_correct is not None for r in mine):
            shuffled = aggregate((r.tag, bool(r.shuffled_correct)) for r in mine)
            summary[split]["shuffled"] = {"overall": shuffled.overall, "per_tag": shuffled.per_tag}
            summary[split]["sensitivity"] = summary[split]["overall"] - shuffled.overall
    return summary
