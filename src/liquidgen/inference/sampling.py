"""Next-token logit processing and drawing, for image codes and for text.

Text-to-image follows Liquid's sampler in the reference order (checked against the
authors' numbers in ``tests/fixtures/golden/cfg_sampling.*``):

1. classifier-free guidance ``logits = uncond + s * (cond - uncond)``, only when ``s > 1``
   (otherwise the conditional logits alone);
2. division by the temperature;
3. every id outside the image range ``[image_offset, image_offset + codebook_size)`` masked;
4. top-k: keep logits ``>=`` the k-th largest (``k = 0`` disables; ``k`` capped to the codebook);
5. top-p: sort descending, drop tokens once the cumulative probability of the tokens ranked
   *before* them exceeds ``p`` (the token that crosses ``p`` is kept, and so is the first);
6. softmax, then one draw.

Steps 1-2 are element-wise, so applying them to the image slice of the vocabulary and then
slicing (step 3) gives bit-identical numbers to the reference's "compute everything, then set
the text ids to -inf". :func:`image_code_probs` therefore works on the image rows only, and
:func:`image_token_probs` (the full-vocabulary interface) slices, calls it and scatters the result
back. The generator can feed :func:`image_code_probs` logits computed only for the image rows of
the LM head, and both paths share every line of the sampler.

Settings travel as two frozen dataclasses validated on construction: :class:`ImageSampling`
(the four text-to-image settings) and :class:`TextSampling` (text decoding: budget, greedy or
sampled, seed). Code that holds one trusts its values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from liquidgen.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from liquidgen.vocab import VocabLayout

# Authors' defaults for text-to-image (Liquid's released sampler).
DEFAULT_CFG_SCALE = 7.0
DEFAULT_TEMPERATURE = 0.99
DEFAULT_TOP_K = 4096
DEFAULT_TOP_P = 0.96
# Text decoding: greedy by default; plain sampling (no filtering) when asked to sample.
DEFAULT_MAX_NEW_TOKENS = 256
TEXT_TEMPERATURE = 1.0
TEXT_TOP_K = 0
TEXT_TOP_P = 1.0
SEED_MAX = 2**63 - 1  # the largest seed (liquidgen.utils.args.SEED_MAX)

Generators = torch.Generator | Sequence[torch.Generator] | None


def validate_sampling_args(
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    cfg_scale: float | None = None,
) -> None:
    """Raise :class:`ConfigError` for settings no sampler can use.

    ``temperature`` must be > 0 (use greedy decoding for "temperature 0"), ``top_p`` in
    ``(0, 1]``, ``top_k >= 0`` (0 disables it) and ``cfg_scale >= 0`` (values <= 1 switch
    guidance off); temperature and scale finite (an infinite temperature draws uniform noise,
    an infinite scale NaN logits).
    """
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if not math.isfinite(temperature):
        raise ConfigError(f"temperature must be a finite number, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must lie in (0, 1], got {top_p}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ConfigError(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
    if cfg_scale is not None and not cfg_scale >= 0:
        raise ConfigError(f"cfg_scale must be >= 0, got {cfg_scale}")
    if cfg_scale is not None and not math.isfinite(cfg_scale):
        raise ConfigError(f"cfg_scale must be a finite number, got {cfg_scale}")


def check_seed_range(seed: int, count: int = 1) -> None:
    """Raise :class:`ConfigError` unless ``seed`` and the ``count - 1`` seeds after it
    (``seed + i`` for image ``i``) are integers in ``[0, SEED_MAX]`` (torch takes 64 bits)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    if seed + count - 1 > SEED_MAX:
        raise ConfigError(
            f"seed {seed} + {count} images goes past 2**63 - 1 (image i uses seed + i); "
            f"use a seed <= {SEED_MAX - count + 1}"
        )


@dataclasses.dataclass(frozen=True)
class ImageSampling:
    """Liquid's text-to-image sampler settings (the authors' by default), checked on creation."""

    cfg_scale: float = DEFAULT_CFG_SCALE  # classifier-free guidance scale (<= 1: off)
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K  # 0 disables; capped to the codebook by :meth:`capped`
    top_p: float = DEFAULT_TOP_P

    def __post_init__(self) -> None:
        validate_sampling_args(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            cfg_scale=self.cfg_scale,
        )

    @property
    def uses_cfg(self) -> bool:
        """Whether guidance is on (``cfg_scale > 1``): unconditional rows join the batch."""
        return self.cfg_scale > 1

    def capped(self, codebook_size: int) -> ImageSampling:
        """The same settings with ``top_k`` capped to the codebook."""
        return dataclasses.replace(self, top_k=min(self.top_k, codebook_size))

    def code_probs(
        self, cond_logits: torch.Tensor, uncond_logits: torch.Tensor | None
    ) -> torch.Tensor:
        """:func:`image_code_probs` with these settings (logits of the image rows only)."""
        return image_code_probs(cond_logits, uncond_logits, **dataclasses.asdict(self))

    def token_probs(
        self,
        cond_logits: torch.Tensor,
        uncond_logits: torch.Tensor | None,
        layout: VocabLayout,
    ) -> torch.Tensor:
        """:func:`image_token_probs` over the whole vocabulary, for ``layout``'s image range."""
        return image_token_probs(
            cond_logits,
            uncond_logits,
            image_offset=layout.image_offset,
            codebook_size=layout.codebook_size,
            **dataclasses.asdict(self),
        )


@dataclasses.dataclass(frozen=True)
class TextSampling:
    """How text is decoded: the one settings object of every text method.

    Greedy (argmax) by default; ``greedy=False`` samples with temperature, top-k and top-p
    from a generator seeded with ``seed``. The settings are checked even for greedy decoding
    (a bad value is a typo).
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  # capped to the model's context
    greedy: bool = True
    temperature: float = TEXT_TEMPERATURE
    top_k: int = TEXT_TOP_K  # 0 disables
    top_p: float = TEXT_TOP_P
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"max_new_tokens must be an integer >= 1, got {n!r}")
        validate_sampling_args(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        check_seed_range(self.seed)

    @classmethod
    def from_options(
        cls,
        *,
        sample: bool = False,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        seed: int = 0,
    ) -> TextSampling:
        """Settings from optional user options (the CLI's): giving any of
        ``temperature``/``top_k``/``top_p`` implies ``sample``; missing ones take the defaults."""
        chosen = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        given = {k: v for k, v in chosen.items() if v is not None}
        return cls(max_new_tokens=max_new_tokens, greedy=not (sample or given), seed=seed, **given)

    def choose(self, logits: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """Next tokens ``(R,)`` from logits ``(R, V)``: argmax, or a filtered draw."""
        if self.greedy:
            return greedy(logits)
        probs = text_token_probs(
            logits, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
        )
        return sample_from_probs(probs, generator)


def _last_step(logits: torch.Tensor, name: str) -> torch.Tensor:
    """Accept ``(B, 1, V)`` or ``(B, V)`` logits and return ``(B, V)`` float32."""
    if logits.dim() == 3 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() != 2:
        raise ShapeError(f"{name} must be shaped (B, 1, V) or (B, V), got {tuple(logits.shape)}")
    return logits.float()


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf (``top_k = 0``: unchanged).

    ``logits``: ``(B, V)``; ``top_k`` is capped to ``V``. Ties with the k-th value are kept.
    """
    if top_k <= 0:
        return logits
    k = min(top_k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest top set whose probability reaches ``top_p``.

    Sorted descending, a token is dropped when the cumulative probability *including* it
    exceeds ``top_p``, shifted by one so that the token crossing ``top_p`` survives; the most
    likely token is always kept. ``top_p >= 1`` returns the logits unchanged (a cumulative sum
    that rounds above 1.0 must not drop the tail). ``logits``: ``(B, V)``.
    """
    if top_p >= 1:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    drop_sorted = torch.zeros_like(cumulative, dtype=torch.bool)
    drop_sorted[..., 1:] = cumulative[..., :-1] > top_p
    drop = drop_sorted.scatter(-1, sorted_idx, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def process_logits(
    logits: torch.Tensor, *, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """Temperature, then top-k, then top-p on ``(B, V)`` (or ``(B, 1, V)``) logits -> ``(B, V)``."""
    validate_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p)
    scaled = _last_step(logits, "logits") / temperature
    return apply_top_p(apply_top_k(scaled, top_k), top_p)


def text_token_probs(
    logits: torch.Tensor, *, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """Next-token probabilities for ordinary text decoding: ``(B, V)`` (zeros where filtered)."""
    return process_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p).softmax(-1)


def image_code_probs(
    cond_logits: torch.Tensor,
    uncond_logits: torch.Tensor | None,
    *,
    cfg_scale: float,
    temperature: float,
    top_k: int,
    top_p: float,
) -> torch.Tensor:
    """Probabilities over the ``K`` image codes from logits of the image rows only.

    ``cond_logits`` / ``uncond_logits``: ``(B, K)`` or ``(B, 1, K)``, column ``c`` being the
    logit of image token ``image_offset + c``. ``uncond_logits`` is needed only when
    ``cfg_scale > 1``. Returns ``(B, K)`` float32; ``top_k`` is capped to ``K``.
    """
    validate_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p, cfg_scale=cfg_scale)
    cond = _last_step(cond_logits, "cond_logits")  # (B, K)
    if cfg_scale > 1:
        if uncond_logits is None:
            raise ConfigError(f"cfg_scale={cfg_scale} > 1 needs unconditional logits")
        uncond = _last_step(uncond_logits, "uncond_logits")  # (B, K)
        if uncond.shape != cond.shape:
            raise ShapeError(
                f"cond and uncond logits differ in shape: {tuple(cond.shape)} vs {tuple(uncond.shape)}"
            )
        logits = uncond + cfg_scale * (cond - uncond)
    else:
        logits = cond
    logits = logits / temperature
    logits = apply_top_p(apply_top_k(logits, top_k), top_p)
    return logits.softmax(dim=-1)


def image_token_probs(
    cond_logits: torch.Tensor,
    uncond_logits: torch.Tensor | None,
    *,
    image_offset: int,
    codebook_size: int,
    cfg_scale: float,
    temperature: float,
    top_k: int,
    top_p: float,
) -> torch.Tensor:
    """Liquid's text-to-image next-token probabilities over the whole vocabulary.

    ``cond_logits`` / ``uncond_logits``: ``(B, 1, V)`` or ``(B, V)`` full-vocabulary logits of
    the conditional and unconditional rows. Returns ``(B, V)`` float32 probabilities, zero
    outside the image range and wherever top-k / top-p filtered. See the module docstring for
    the order of operations.
    """
    cond = _last_step(cond_logits, "cond_logits")  # (B, V)
    image_end = image_offset + codebook_size
    if image_offset < 0 or codebook_size <= 0 or cond.shape[-1] < image_end:
        raise ShapeError(
            f"logits have {cond.shape[-1]} columns; the image range [{image_offset}, {image_end}) "
            "does not fit"
        )
    uncond = None if uncond_logits is None else _last_step(uncond_logits, "uncond_logits")
    if uncond is not None and uncond.shape != cond.shape:
        raise ShapeError(
            f"cond and uncond logits differ in shape: {tuple(cond.shape)} vs {tuple(uncond.shape)}"
        )
    code_probs = image_code_probs(
        cond[:, image_offset:image_end],
        None if uncond is None else uncond[:, image_offset:image_end],
        cfg_scale=cfg_scale,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )  # (B, K)
    probs = torch.zeros_like(cond)  # (B, V)
    probs[:, image_offset:image_end] = code_probs
    return probs


def sample_from_probs(probs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` ``(B, N)`` by inverse-CDF sampling -> ``(B,)`` long.

    One uniform number per row: from ``generator`` (a single ``torch.Generator`` drawing ``B``
    numbers, or a sequence of ``B`` generators, one per row, so that a row's draw does not
    depend on which other rows share the batch). The cumulative sum runs in float64; zero
    entries never get drawn, so padding ``probs`` with zero columns (full vocabulary instead of
    the image slice) draws the same token. Rows need not be normalised.
    """
    if probs.dim() != 2:
        raise ShapeError(f"probs must be shaped (B, N), got {tuple(probs.shape)}")
    rows = probs.shape[0]
    if generator is None or isinstance(generator, torch.Generator):
        uniform = torch.rand(rows, dtype=torch.float64, generator=generator)  # (B,)
    else:
        if len(generator) != rows:
            raise ShapeError(f"got {len(generator)} generators for {rows} rows")
        uniform = torch.cat([torch.rand(1, dtype=torch.float64, generator=g) for g in generator])
    cdf = probs.detach().to(device="cpu", dtype=torch.float64).cumsum(dim=-1)  # (B, N)
    total = cdf[:, -1:]  # (B, 1)
    if not bool((total > 0).all()):
        raise ValueError("every row of probs needs a positive entry")
    # Largest float64 below the total, so a uniform that rounds up still lands on a token.
    target = torch.minimum(
        uniform[:, None] * total, torch.nextafter(total, torch.zeros_like(total))
    )
    index = torch.searchsorted(cdf, target, right=True)  # (B, 1): first cdf > target
    return index[:, 0].to(probs.device)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """Most likely id of each row: ``(B, V)`` or ``(B, 1, V)`` -> ``(B,)`` long."""
    return _last_step(logits, "logits").argmax(dim=-1)
