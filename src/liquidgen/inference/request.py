"""A user's request, checked once and resolved into what the decode loops trust.

Every user mistake is a :class:`~liquidgen.errors.LiquidgenError` whose message is the line
``liquidgen generate|ask|chat`` print. The checks run in two stages:

1. **model-independent** (the CLI runs them before loading a model, so a typo fails at once):
   :func:`check_prompt`, :func:`check_image_count`, :class:`~liquidgen.inference.sampling.ImageSampling`
   and :class:`~liquidgen.inference.sampling.TextSampling` (validated on construction),
   :func:`as_rgb_image`;
2. **against the checkpoint**: :func:`resolve_image_size` (factor, buckets, context) and
   :func:`resolve_image_request`, which tokenizes the prompts once and returns an
   :class:`ImageRequest` — prompt ids, size, code grid, settings with ``top_k`` capped to the
   codebook — that :func:`liquidgen.inference.image_generation.sample_image_codes` runs as it is.

The context length is checked here and nowhere else (:func:`check_context`,
:func:`text_budget`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from liquidgen.errors import ConfigError, ShapeError
from liquidgen.formats import t2i_prompt_ids
from liquidgen.inference.sampling import ImageSampling, TextSampling, check_seed_range
from liquidgen.vocab import VocabLayout

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from liquidgen.checkpoint import GenerationDefaults

ImageInput = Image.Image | str | os.PathLike[str]

__all__ = [
    "ImageInput",
    "ImageRequest",
    "ImageSampling",
    "TextSampling",
    "as_rgb_image",
    "check_context",
    "check_image_count",
    "check_prompt",
    "check_text",
    "context_length",
    "image_sampling",
    "resolve_image_request",
    "resolve_image_size",
    "text_budget",
    "text_sampling",
    "validate_image_args",
    "validate_text_args",
]


# --------------------------------------------------------------------------- model-independent
def check_text(text: str, what: str = "prompt") -> None:
    """Refuse a string that is not valid Unicode text: lone surrogates, which is how bytes
    that are not UTF-8 arrive from the command line (``os.fsdecode``'s surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
        raise ConfigError(
            f"the {what} is not valid UTF-8 text ({byte} at character {e.start})"
        ) from None


def check_prompt(prompt: Any, what: str = "prompt") -> None:
    """Refuse a prompt that is not a string, is not valid UTF-8 text or holds nothing but
    whitespace."""
    if not isinstance(prompt, str):
        raise ConfigError(f"the {what} must be a string, got {type(prompt).__name__}")
    check_text(prompt, what)
    if not prompt.strip():
        raise ConfigError(f"the {what} is empty")


def check_image_count(n: Any) -> None:
    """Images per prompt: an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n (images per prompt) must be an integer >= 1, got {n!r}")


def image_sampling(
    base: ImageSampling | None = None,
    *,
    cfg_scale: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> ImageSampling:
    """``base`` (default: the authors' settings) with the given settings replaced, checked."""
    given = {"cfg_scale": cfg_scale, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    given = {k: v for k, v in given.items() if v is not None}
    return dataclasses.replace(base or ImageSampling(), **given)


def text_sampling(sampling: TextSampling | None, settings: dict[str, Any]) -> TextSampling:
    """The :class:`TextSampling` of a text call: ``sampling`` (default settings when ``None``)
    with the keyword ``settings`` (``max_new_tokens``, ``greedy``, ``temperature``, ``top_k``,
    ``top_p``, ``seed``) replaced."""
    known = {f.name for f in dataclasses.fields(TextSampling)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown text-decoding setting(s) {unknown} (known: {sorted(known)})")
    return dataclasses.replace(sampling or TextSampling(), **settings)


def validate_image_args(
    *,
    n: int = 1,
    cfg_scale: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> None:
    """Check the model-independent text-to-image settings (``None``: the checkpoint default).
    Kept for one release (``liquidgen.inference.pipeline`` exported it)."""
    check_image_count(n)
    image_sampling(cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p)


def validate_text_args(
    *, max_new_tokens: int, temperature: float, top_k: int, top_p: float
) -> None:
    """Check text-decoding settings (also when decoding greedily: a bad value is a typo).
    Kept for one release (``liquidgen.inference.pipeline`` exported it)."""
    TextSampling(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)


def as_rgb_image(image: ImageInput) -> Image.Image:
    """A PIL image (converted to RGB) or a path to one (:class:`ImageReadError` if missing, a
    folder, unreadable or above the decoding limit of :mod:`liquidgen.utils.limits`)."""
    from liquidgen.tokenizer.images import to_rgb
    from liquidgen.utils.limits import open_image

    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, str | os.PathLike):
        return to_rgb(open_image(image))
    raise ConfigError(f"expected a PIL image or a path, got {type(image).__name__}")


# --------------------------------------------------------------------------- the context
def context_length(model: PreTrainedModel) -> int | None:
    """Tokens the model can attend to (``max_position_embeddings``), if it states one."""
    return getattr(model.config, "max_position_embeddings", None)


def check_context(context: int | None, prompt_tokens: int) -> None:
    """Raise :class:`ConfigError` unless a prompt of ``prompt_tokens`` tokens leaves room to
    generate at least one token (``context``: :func:`context_length`, ``None``: unlimited)."""
    if context is None:
        return
    if prompt_tokens >= context:
        raise ConfigError(
            f"the prompt is {prompt_tokens} tokens long; the model's context is {context} tokens"
        )


def _check_image_context(
    context: int | None, prompt_tokens: int, width: int, height: int, image_tokens: int
) -> None:
    if context is not None and prompt_tokens + image_tokens > context:
        raise ConfigError(
            f"the prompt ({prompt_tokens} tokens) and a {width}x{height} image ({image_tokens} "
            f"tokens) exceed the model's context of {context} tokens"
        )


def text_budget(context: int | None, prompt_tokens: int, max_new_tokens: int) -> int:
    """New tokens a prompt of ``prompt_tokens`` may get: ``max_new_tokens``, capped to the
    context (:class:`ConfigError` when the prompt alone fills it)."""
    check_context(context, prompt_tokens)
    return max_new_tokens if context is None else min(max_new_tokens, context - prompt_tokens)


# --------------------------------------------------------------------------- text-to-image
@dataclasses.dataclass(frozen=True)
class ImageRequest:
    """A text-to-image request resolved against one checkpoint; the decode loop trusts it.

    Image ``i = p * n + j`` (sample ``j`` of prompt ``p``) draws with seed ``seed + i``.
    """

    prompts: tuple[str, ...]
    cond_ids: tuple[tuple[int, ...], ...]  # one per prompt, ending with <boi>
    uncond_ids: tuple[int, ...]  # <unconditional><boi> (+ the format's prefix)
    width: int
    height: int
    grid: tuple[int, int]  # (h, w) codes
    n: int  # images per prompt
    seed: int
    sampling: ImageSampling  # top_k already capped to the codebook

    @property
    def n_images(self) -> int:
        return len(self.cond_ids) * self.n

    @property
    def tokens_per_image(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def total_tokens(self) -> int:
        """Image tokens drawn for the whole request."""
        return self.n_images * self.tokens_per_image

    def batches(self, batch_size: int | None) -> Iterator[ImageRequest]:
        """The request ``batch_size`` prompts at a time (``None``: whole), seeds kept."""
        step = batch_size or len(self.prompts)
        for start in range(0, len(self.prompts), step):
            yield dataclasses.replace(
                self,
                prompts=self.prompts[start : start + step],
                cond_ids=self.cond_ids[start : start + step],
                seed=self.seed + start * self.n,
            )

    def chunks(self, max_images: int) -> Iterator[ImageRequest]:
        """The request at most ``max_images`` images at a time, in order, seeds kept: whole
        prompts together while ``n <= max_images``, else each prompt's ``n`` images split
        (image ``j`` of a part keeps seed ``seed + p * n + start + j``). What
        ``liquidgen generate`` runs and writes one part at a time, so its memory does not grow
        with ``n``."""
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise ConfigError(f"max_images must be an integer >= 1, got {max_images!r}")
        if self.n <= max_images:
            yield from self.batches(max_images // self.n)
            return
        for p in range(len(self.prompts)):
            for start in range(0, self.n, max_images):
                yield dataclasses.replace(
                    self,
                    prompts=self.prompts[p : p + 1],
                    cond_ids=self.cond_ids[p : p + 1],
                    n=min(max_images, self.n - start),
                    seed=self.seed + p * self.n + start,
                )


def unconditional_length(layout: VocabLayout) -> int:
    """Tokens of the shortest image prompt, the unconditional ``[<bos>]<unconditional><boi>``."""
    return (layout.bos_id is not None) + 2


def resolve_image_size(
    defaults: GenerationDefaults,
    layout: VocabLayout,
    context: int | None,
    width: int | None = None,
    height: int | None = None,
) -> tuple[int, int]:
    """The ``(width, height)`` a request resolves to, validated against factor and context.

    Both ``None``: the checkpoint's default. Only one given: the other comes from the first
    trained bucket with that side, else from the default size.
    """
    d = defaults
    if width is None and height is None:
        width, height = d.width, d.height
    elif height is None:
        height = next((h for w, h in d.buckets if w == width), d.height)
    elif width is None:
        width = next((w for w, h in d.buckets if h == height), d.width)
    f = layout.downsample
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeError(f"width and height must be integers, got {width!r}x{height!r}")
    if width <= 0 or height <= 0 or width % f or height % f:
        raise ShapeError(
            f"width and height must be positive multiples of {f} (the tokenizer's factor), "
            f"got {width}x{height}"
        )
    tokens = (width // f) * (height // f)
    if context is not None and unconditional_length(layout) + tokens > context:
        raise ShapeError(
            f"{width}x{height} needs {tokens} image tokens, too many for the model's context "
            f"of {context} tokens"
        )
    return width, height


def image_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    defaults: GenerationDefaults,
    context: int | None,
    prompt: str,
    width: int,
    height: int,
) -> tuple[list[int], list[int]]:
    """Conditional and unconditional prompt ids of a checked size (size prefix for multi-ratio
    checkpoints); the prompt must leave room for the image in the context."""
    check_prompt(prompt)
    cond, uncond = t2i_prompt_ids(
        tokenizer,
        layout,
        prompt,
        suffix=defaults.t2i_suffix,
        size=(width, height) if defaults.size_prefix else None,
    )
    check_context(context, len(cond))
    h, w = layout.grid(width, height)
    _check_image_context(context, len(cond), width, height, h * w)
    return cond, uncond


def resolve_image_request(
    prompts: Sequence[str],
    *,
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    defaults: GenerationDefaults,
    context: int | None,
    width: int | None = None,
    height: int | None = None,
    n: int = 1,
    seed: int = 0,
    sampling: ImageSampling,
) -> ImageRequest:
    """Check and tokenize a text-to-image request once (``sampling``: already checked)."""
    check_image_count(n)
    check_seed_range(seed, len(prompts) * n)
    width, height = resolve_image_size(defaults, layout, context, width, height)
    ids = [
        image_prompt_ids(tokenizer, layout, defaults, context, p, width, height) for p in prompts
    ]
    return ImageRequest(
        prompts=tuple(prompts),
        cond_ids=tuple(tuple(cond) for cond, _ in ids),
        uncond_ids=tuple(ids[0][1]),
        width=width,
        height=height,
        grid=layout.grid(width, height),
        n=n,
        seed=seed,
        sampling=sampling.capped(layout.codebook_size),
    )
