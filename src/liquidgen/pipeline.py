"""The inference API: one object that draws images, answers questions about them and chats.

:class:`Pipeline` wraps a loaded checkpoint (the causal LM, its tokenizer, the
:class:`~liquidgen.vocab.VocabLayout` and the VQGAN) and the checkpoint's generation defaults
(:class:`GenerationDefaults`, stored as ``liquid_generation.json``). It turns user inputs into
Liquid's sequence formats (:mod:`liquidgen.formats`), runs the KV-cached decode loops of
:mod:`liquidgen.generation` and turns codes back into pictures with the VQGAN::

    pipe = Pipeline.from_pretrained("path/to/checkpoint")
    images = pipe.generate_image("a red circle", n=4, seed=0)        # list of PIL images
    pipe.answer(images[0], "What colour is the shape?")              # -> str
    pipe.chat([{"role": "user", "content": "Hello!"}])               # -> str

Every user mistake raises a :class:`~liquidgen.errors.LiquidgenError` subclass whose message
is exactly the line ``liquidgen generate|ask|chat`` print: :class:`ConfigError` for bad values
and prompts, :class:`ShapeError` for image sizes, :class:`CheckpointError` for model folders,
:class:`ImageReadError` for image files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError
from PIL import Image
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.errors import CheckpointError, ConfigError, ShapeError
from liquidgen.formats import (
    DEFAULT_T2I_SUFFIX,
    MAX_TEXT_LEN,
    PLAIN_CHAT_TEMPLATE,
    caption_prompt_ids,
    chat_prompt_ids,
    encode_text,
    t2i_prompt_ids,
    text_example,
    vqa_prompt_ids,
)
from liquidgen.generation import (
    FullVocabLogits,
    ProgressFn,
    decode_one_token,
    generate_image_tokens,
    generate_text,
    prefill,
)
from liquidgen.model import find_vq_dir, load_liquid
from liquidgen.sampling import (
    DEFAULT_CFG_SCALE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    greedy,
    validate_sampling_args,
)
from liquidgen.tokenizer import (
    VQGAN,
    load_image,
    pil_to_tensor,
    preprocess_understanding,
    tensor_to_pil,
    to_rgb,
)
from liquidgen.utils.io import atomic_path
from liquidgen.vocab import VocabLayout

GENERATION_FILE = "liquid_generation.json"
# Without a liquid_generation.json the image side is the released model's grid (512x512
# pixels = 32x32 codes at factor 16) at the checkpoint's own factor.
DEFAULT_GRID_SIDE = 32
DEFAULT_MAX_NEW_TOKENS = 256
# Plain sampling for text unless asked otherwise (greedy is the default for text).
TEXT_TEMPERATURE = 1.0
TEXT_TOP_K = 0
TEXT_TOP_P = 1.0
# Accepted ``dtype`` names (``"auto"``: bfloat16 on CUDA, float32 on CPU; see docs/inference.md).
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# The VQGAN always runs in float32: nearest-code search and decoding stay reference-exact.
VQ_DTYPE = torch.float32
PERPLEXITY_BATCH = 8  # texts per forward in :meth:`Pipeline.perplexity`
_FILL = (0, 0, 0)  # colour of empty cells in :func:`image_grid`

ImageInput = Image.Image | str | os.PathLike[str]
StreamFn = Callable[[str], None]


# --------------------------------------------------------------------------- generation defaults
@dataclasses.dataclass(frozen=True)
class GenerationDefaults:
    """The defaults a checkpoint was trained for, stored as ``liquid_generation.json``.

    Every field is optional in the file; missing ones take the values of
    :meth:`for_layout` (the released Liquid-7B's settings at the checkpoint's factor).
    """

    width: int  # default image width in pixels (multiple of the tokenizer's factor)
    height: int  # default image height in pixels
    understanding_size: int  # side of the square that understanding inputs are padded + resized to
    size_prefix: bool = False  # multi-ratio: T2I prompts start with "Image Size: Width is W ..."
    buckets: tuple[tuple[int, int], ...] = ()  # (width, height) sizes trained for (multi-ratio)
    # understanding inputs already at a bucket size are encoded as they are (no pad + resize):
    # for models whose captioning/VQA data was tokenized at the native bucket sizes
    understanding_native: bool = False
    t2i_suffix: str = DEFAULT_T2I_SUFFIX  # instruction appended to every T2I prompt
    cfg_scale: float = DEFAULT_CFG_SCALE  # classifier-free guidance scale (<= 1: off)
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K  # capped to the codebook by the sampler; 0 disables
    top_p: float = DEFAULT_TOP_P

    def __post_init__(self) -> None:
        buckets = tuple(tuple(b) for b in self.buckets)
        if any(len(b) != 2 for b in buckets):
            raise ConfigError(f"buckets must be [width, height] pairs, got {self.buckets!r}")
        object.__setattr__(self, "buckets", buckets)
        for flag in ("size_prefix", "understanding_native"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if not isinstance(self.t2i_suffix, str):
            raise ConfigError(f"t2i_suffix must be a string, got {self.t2i_suffix!r}")
        for name in ("width", "height", "understanding_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        validate_sampling_args(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            cfg_scale=self.cfg_scale,
        )

    @classmethod
    def for_layout(cls, layout: VocabLayout) -> GenerationDefaults:
        """Defaults of a checkpoint without the file: square images of
        :data:`DEFAULT_GRID_SIDE` codes (512x512 for Liquid-7B), the authors' sampler settings."""
        side = DEFAULT_GRID_SIDE * layout.downsample
        return cls(width=side, height=side, understanding_size=side)

    def check(self, layout: VocabLayout) -> None:
        """Raise :class:`ConfigError` unless every size is a multiple of the layout's factor."""
        f = layout.downsample
        sizes = [(self.width, self.height), (self.understanding_size,) * 2, *self.buckets]
        for w, h in sizes:
            if w <= 0 or h <= 0 or w % f or h % f:
                raise ConfigError(f"size {w}x{h} is not a positive multiple of the factor {f}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["buckets"] = [list(b) for b in self.buckets]
        return data

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``liquid_generation.json`` into ``directory`` atomically."""
        path = Path(directory) / GENERATION_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str], layout: VocabLayout) -> GenerationDefaults:
        """Read ``liquid_generation.json`` from a checkpoint (defaults when it is absent)."""
        base = cls.for_layout(layout)
        path = Path(directory) / GENERATION_FILE
        if not path.is_file():
            return base
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: invalid JSON ({e})") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{path}: unknown field(s) {unknown}")
        try:
            defaults = cls(**{**base.to_dict(), **data})
            defaults.check(layout)
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{path}: {e}") from e
        return defaults


# --------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA when available, else CPU. Unknown or unavailable devices raise ConfigError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {device!r}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on CUDA, float32 on CPU.

    CPU bfloat16 was measured (docs/inference.md): faster image decoding at 0.5B parameters
    but different samples than float32, so it is opt-in there.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES.values():
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")
    return dtype


def validate_image_args(
    *,
    n: int = 1,
    cfg_scale: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> None:
    """Check the model-independent text-to-image settings (``None``: the checkpoint default).

    The CLI calls this before loading a model, so a typo fails at once.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n (images per prompt) must be an integer >= 1, got {n!r}")
    validate_sampling_args(
        temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
        top_k=DEFAULT_TOP_K if top_k is None else top_k,
        top_p=DEFAULT_TOP_P if top_p is None else top_p,
        cfg_scale=cfg_scale,
    )


def validate_text_args(
    *, max_new_tokens: int, temperature: float, top_k: int, top_p: float
) -> None:
    """Check text-decoding settings (also when decoding greedily: a bad value is a typo)."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ConfigError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    validate_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p)


def check_prompt(prompt: str, what: str = "prompt") -> None:
    """Refuse a prompt that is not a string or holds nothing but whitespace."""
    if not isinstance(prompt, str):
        raise ConfigError(f"the {what} must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ConfigError(f"the {what} is empty")


def as_rgb_image(image: ImageInput) -> Image.Image:
    """A PIL image (converted to RGB) or a path to one (:class:`ImageReadError` if unreadable)."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, str | os.PathLike):
        return load_image(image)
    raise ConfigError(f"expected a PIL image or a path, got {type(image).__name__}")


def image_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Tile equally sized images row by row into a near-square grid (``ceil(sqrt(n))`` columns)."""
    if not images:
        raise ConfigError("no images to tile")
    width, height = images[0].size
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    canvas = Image.new("RGB", (cols * width, rows * height), _FILL)
    for i, img in enumerate(images):
        canvas.paste(img, ((i % cols) * width, (i // cols) * height))
    return canvas


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    return set(tokenizer.all_special_ids) | {
        i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special
    }


def _turn_end_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token that closes an assistant turn in the tokenizer's chat template.

    Rendered once with a marker answer: the first special token after the marker is the
    end-of-turn (Gemma ``<end_of_turn>``, Qwen ``<|im_end|>``, Llama-3 ``<|eot_id|>``, the
    plain template's eos). ``None`` when the template writes none.
    """
    template = tokenizer.chat_template or PLAIN_CHAT_TEMPLATE
    marker = "liquidgen"
    user = [{"role": "user", "content": "?"}]
    prompt = tokenizer.apply_chat_template(
        user, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [*user, {"role": "assistant", "content": marker}], chat_template=template, tokenize=False
    )
    if not full.startswith(prompt) or marker not in full[len(prompt) :]:
        return None
    after = full[len(prompt) :].split(marker, 1)[1]
    specials = _special_ids(tokenizer)
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    return next((i for i in ids if i in specials), None)


# --------------------------------------------------------------------------- the pipeline
class Pipeline:
    """A loaded Liquid checkpoint ready for text-to-image, image understanding and chat.

    Attributes:
        model: the Hugging Face causal LM (eval mode) whose vocabulary holds the image codes.
        tokenizer: its Hugging Face tokenizer.
        layout: where text, special and image tokens live in the vocabulary.
        vq: the VQGAN image tokenizer (``None`` for a text-only checkpoint).
        defaults: the checkpoint's :class:`GenerationDefaults`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        layout: VocabLayout,
        vq: VQGAN | None,
        defaults: GenerationDefaults | None = None,
    ) -> None:
        if vq is not None and (
            vq.codebook_size != layout.codebook_size or vq.downsample != layout.downsample
        ):
            raise CheckpointError(
                f"the VQGAN ({vq.codebook_size} codes, factor {vq.downsample}) does not match the "
                f"layout ({layout.codebook_size} codes, factor {layout.downsample})"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.layout = layout
        self.vq = vq
        self.defaults = defaults if defaults is not None else GenerationDefaults.for_layout(layout)
        self.defaults.check(layout)
        turn_end = _turn_end_id(tokenizer)
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos_ids = eos if isinstance(eos, list) else [eos]
        # Text decoding stops at any of these: eos, the chat template's end of turn.
        self.stop_ids = {i for i in (layout.eos_id, turn_end, *eos_ids) if i is not None}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        vq_dir: str | os.PathLike[str] | None = None,
    ) -> Pipeline:
        """Load a liquidgen checkpoint or a folder laid out like the released Liquid-7B.

        Args:
            path: the checkpoint folder (nothing is downloaded).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None``: CUDA if present, else CPU.
            dtype: LM weights dtype (``torch.dtype`` or a name in :data:`DTYPES`); ``None`` or
                ``"auto"``: bfloat16 on CUDA, float32 on CPU. The VQGAN stays float32.
            vq_dir: the VQGAN folder when it is not inside ``path`` (``vq/`` or ``vqgan.yaml``).

        Raises:
            CheckpointError: the folder is missing, incomplete, corrupt or inconsistent.
            ConfigError: an unknown or unavailable device or dtype.
        """
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: model folder not found")
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        model, tokenizer, layout = load_liquid(path, device=device, dtype=dtype, vq_dir=vq_dir)
        vq_path = Path(vq_dir) if vq_dir is not None else find_vq_dir(path)
        vq = (
            None
            if vq_path is None
            else VQGAN.from_pretrained(vq_path, device=device, dtype=VQ_DTYPE)
        )
        return cls(model, tokenizer, layout, vq, GenerationDefaults.load(path, layout))

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def vq_device(self) -> torch.device:
        return self._require_vq().quantize.embedding.weight.device

    @property
    def context_length(self) -> int | None:
        """Tokens the model can attend to (``max_position_embeddings``), if it states one."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def _require_vq(self) -> VQGAN:
        if self.vq is None:
            raise CheckpointError(
                "this checkpoint has no image tokenizer (no vq/ folder or vqgan.yaml)"
            )
        return self.vq

    def _check_length(self, n_tokens: int) -> None:
        context = self.context_length
        if context is not None and n_tokens >= context:
            raise ConfigError(
                f"the prompt is {n_tokens} tokens long; the model's context is {context} tokens"
            )

    # ------------------------------------------------------------------ text-to-image
    def image_size(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """The ``(width, height)`` a request resolves to, validated against factor and context.

        Both ``None``: the checkpoint's default. Only one given: the other comes from the first
        trained bucket with that side, else from the default size.
        """
        d = self.defaults
        if width is None and height is None:
            width, height = d.width, d.height
        elif height is None:
            height = next((h for w, h in d.buckets if w == width), d.height)
        elif width is None:
            width = next((w for w, h in d.buckets if h == height), d.width)
        f = self.layout.downsample
        for value in (width, height):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ShapeError(f"width and height must be integers, got {width!r}x{height!r}")
        if width <= 0 or height <= 0 or width % f or height % f:
            raise ShapeError(
                f"width and height must be positive multiples of {f} (the tokenizer's factor), "
                f"got {width}x{height}"
            )
        tokens = (width // f) * (height // f)
        context = self.context_length
        # The shortest prompt is the unconditional one (<bos><unconditional><boi>).
        shortest = len(t2i_prompt_ids(self.tokenizer, self.layout, "", suffix="")[1])
        if context is not None and shortest + tokens > context:
            raise ShapeError(
                f"{width}x{height} needs {tokens} image tokens, too many for the model's context "
                f"of {context} tokens"
            )
        return width, height

    def image_prompt_ids(self, prompt: str, width: int, height: int) -> tuple[list[int], list[int]]:
        """Conditional and unconditional prompt ids (size prefix for multi-ratio checkpoints)."""
        check_prompt(prompt)
        cond, uncond = t2i_prompt_ids(
            self.tokenizer,
            self.layout,
            prompt,
            suffix=self.defaults.t2i_suffix,
            size=(width, height) if self.defaults.size_prefix else None,
        )
        self._check_length(len(cond))
        tokens = (width // self.layout.downsample) * (height // self.layout.downsample)
        context = self.context_length
        if context is not None and len(cond) + tokens > context:
            raise ConfigError(
                f"the prompt ({len(cond)} tokens) and a {width}x{height} image ({tokens} tokens) "
                f"exceed the model's context of {context} tokens"
            )
        return cond, uncond

    def generate_image(
        self,
        prompt: str,
        *,
        width: int | None = None,
        height: int | None = None,
        n: int = 1,
        cfg_scale: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> list[Image.Image]:
        """Draw ``n`` images of ``width`` x ``height`` pixels for ``prompt``.

        ``None`` settings take the checkpoint's defaults (authors': cfg 7.0, temperature 0.99,
        top-k 4096 capped to the codebook, top-p 0.96). Image ``j`` uses seed ``seed + j``, so
        the same seed gives the same images and ``n=1, seed=seed + j`` reproduces image ``j``.
        ``progress(done, total)`` counts image tokens drawn over all ``n`` images.
        """
        return self.generate_images(
            [prompt],
            width=width,
            height=height,
            n=n,
            cfg_scale=cfg_scale,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            progress=progress,
        )[0]

    def generate_images(
        self,
        prompts: Sequence[str],
        *,
        width: int | None = None,
        height: int | None = None,
        n: int = 1,
        cfg_scale: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[list[Image.Image]]:
        """Draw ``n`` images for each prompt; returns one list of images per prompt.

        Prompts run ``batch_size`` at a time (``None``: all together) with their
        unconditional partners in the same forward. Image ``j`` of prompt ``p`` uses seed
        ``seed + p * n + j`` whatever the batching, so ``generate_image(prompts[p],
        seed=seed + p * n)`` gives the same images.
        """
        if isinstance(prompts, str) or not prompts:
            raise ConfigError("prompts must be a non-empty list of strings")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        validate_image_args(
            n=n, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p
        )
        vq = self._require_vq()
        width, height = self.image_size(width, height)
        grid = self.layout.grid(width, height)  # (h, w)
        d = self.defaults
        settings = dict(
            cfg_scale=d.cfg_scale if cfg_scale is None else cfg_scale,
            temperature=d.temperature if temperature is None else temperature,
            top_k=min(d.top_k if top_k is None else top_k, self.layout.codebook_size),
            top_p=d.top_p if top_p is None else top_p,
        )
        ids = [self.image_prompt_ids(p, width, height) for p in prompts]
        uncond = ids[0][1]
        step = batch_size or len(prompts)
        per_image = grid[0] * grid[1]
        total = len(prompts) * n * per_image
        images: list[list[Image.Image]] = []
        for start in range(0, len(prompts), step):
            batch = [cond for cond, _ in ids[start : start + step]]
            done_before = start * n * per_image
            rows = len(batch) * n

            def report(done: int, _total: int, base: int = done_before, rows: int = rows) -> None:
                progress(base + done * rows, total)  # type: ignore[misc]  # set when used

            codes = generate_image_tokens(
                self.model,
                self.layout,
                batch,
                uncond,
                grid_hw=grid,
                n_per_prompt=n,
                seed=seed + start * n,
                progress=None if progress is None else report,
                **settings,
            )  # (len(batch) * n, h, w)
            pictures = self.decode_codes(codes, vq)
            images += [pictures[i : i + n] for i in range(0, len(pictures), n)]
        return images

    def decode_codes(self, codes: torch.Tensor, vq: VQGAN | None = None) -> list[Image.Image]:
        """VQGAN codes ``(B, h, w)`` -> ``B`` PIL images, decoded one at a time (bounded memory)."""
        vq = vq or self._require_vq()
        return [tensor_to_pil(vq.decode(c[None]))[0] for c in codes]

    # ------------------------------------------------------------------ understanding
    def encode_image(self, image: ImageInput) -> torch.Tensor:
        """An image (or path) -> its ``(h, w)`` codes with Liquid's understanding pre-processing
        (pad to a square with (122, 116, 104), resize to ``defaults.understanding_size``), or
        as it is when ``defaults.understanding_native`` and its size is a bucket."""
        return self.encode_images([image])[0]

    def encode_images(self, images: Sequence[ImageInput]) -> list[torch.Tensor]:
        """Several images -> their ``(h, w)`` codes, one VQGAN forward per distinct size."""
        vq = self._require_vq()
        d = self.defaults
        prepared = []
        for image in images:
            rgb = as_rgb_image(image)
            native = d.understanding_native and rgb.size in d.buckets
            prepared.append(rgb if native else preprocess_understanding(rgb, d.understanding_size))
        codes: list[torch.Tensor | None] = [None] * len(prepared)
        for size in dict.fromkeys(p.size for p in prepared):
            index = [i for i, p in enumerate(prepared) if p.size == size]
            pixels = pil_to_tensor([prepared[i] for i in index])  # (b, 3, H, W)
            batch = vq.encode(pixels.to(device=self.vq_device, dtype=VQ_DTYPE)).cpu()  # (b, h, w)
            for i, c in zip(index, batch, strict=True):
                codes[i] = c
        return codes  # type: ignore[return-value]

    def _decode(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int,
        greedy: bool,
        temperature: float,
        top_k: int,
        top_p: float,
        seed: int,
        stream: StreamFn | None,
    ) -> str:
        """Continue ``prompt_ids`` until a stop id; returns the text without surrounding blanks.

        Leading whitespace is held back from ``stream`` too, so the streamed text starts
        like the returned one.
        """
        validate_text_args(
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p
        )
        self._check_length(len(prompt_ids))
        callback = None
        if stream is not None:
            started = False

            def callback(piece: str) -> None:
                nonlocal started
                if not started:
                    piece = piece.lstrip()
                    started = bool(piece)
                if piece:
                    stream(piece)

        result = generate_text(
            self.model,
            self.tokenizer,
            prompt_ids,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_ids=self.stop_ids,
            stream_callback=callback,
        )
        return result.text.strip()

    def answer(
        self,
        image: ImageInput,
        question: str,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        greedy: bool = True,
        temperature: float = TEXT_TEMPERATURE,
        top_k: int = TEXT_TOP_K,
        top_p: float = TEXT_TOP_P,
        seed: int = 0,
        stream: StreamFn | None = None,
    ) -> str:
        """Answer ``question`` about ``image`` (a PIL image or a path).

        The image becomes codes and goes into the chat template as ``<boi>codes<eoi>`` before
        the question; the answer is decoded greedily (default) or sampled with
        ``temperature``/``top_k``/``top_p``/``seed``. ``stream`` receives the text as it
        is produced.
        """
        check_prompt(question, "question")
        codes = self.encode_image(image)
        ids = vqa_prompt_ids(self.tokenizer, self.layout, codes, question)
        return self._decode(
            ids,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stream=stream,
        )

    def answers(
        self,
        images: Sequence[ImageInput],
        questions: Sequence[str],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 8,
    ) -> list[str]:
        """Greedy answers for many (image, question) pairs, ``batch_size`` per forward.

        Same prompts as :meth:`answer`; the prompts of a batch are left-padded and decoded
        together with a KV cache (each row stops at its own stop id).
        """
        if len(images) != len(questions):
            raise ConfigError(f"got {len(images)} images but {len(questions)} questions")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        validate_text_args(
            max_new_tokens=max_new_tokens,
            temperature=TEXT_TEMPERATURE,
            top_k=TEXT_TOP_K,
            top_p=TEXT_TOP_P,
        )
        for q in questions:
            check_prompt(q, "question")
        out: list[str] = []
        for start in range(0, len(images), batch_size):
            codes = self.encode_images(images[start : start + batch_size])  # B x (h, w)
            rows = [
                vqa_prompt_ids(self.tokenizer, self.layout, c, q)
                for c, q in zip(codes, questions[start : start + batch_size], strict=True)
            ]
            for row in rows:
                self._check_length(len(row))
            for ids in self._greedy_batch(rows, max_new_tokens):
                out.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return out

    def _greedy_batch(self, rows: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of left-padded prompts, each row until its first stop id."""
        # Left padding is masked out of attention, so any id fills it when the layout has none.
        pad_id = self.layout.pad_id if self.layout.pad_id is not None else 0
        context = self.context_length
        budget = max_new_tokens
        if context is not None:
            budget = min(budget, context - max(len(r) for r in rows))
        logits_fn = FullVocabLogits(self.model)
        stops = torch.tensor(sorted(self.stop_ids), dtype=torch.long)
        generated: list[list[int]] = [[] for _ in rows]
        finished = torch.zeros(len(rows), dtype=torch.bool)  # (R,)
        with torch.inference_mode():
            logits, state = prefill(self.model, rows, logits_fn, pad_id)
            for step in range(budget):
                tokens = greedy(logits).cpu()  # (R,)
                finished |= torch.isin(tokens, stops)
                for r in torch.nonzero(~finished).flatten().tolist():
                    generated[r].append(int(tokens[r]))
                if bool(finished.all()) or step + 1 == budget:
                    break
                # Finished rows keep decoding a pad token; their output is no longer read.
                tokens = tokens.masked_fill(finished, pad_id)
                logits = decode_one_token(tokens, state, logits_fn)
        return generated

    def caption(
        self,
        image: ImageInput,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        greedy: bool = True,
        temperature: float = TEXT_TEMPERATURE,
        top_k: int = TEXT_TOP_K,
        top_p: float = TEXT_TOP_P,
        seed: int = 0,
        stream: StreamFn | None = None,
    ) -> str:
        """Describe ``image`` with the pre-training captioning prompt
        ``<bos><boi>codes<eoi>The caption of this image is:``."""
        ids = caption_prompt_ids(self.tokenizer, self.layout, self.encode_image(image))
        return self._decode(
            ids,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stream=stream,
        )

    # ------------------------------------------------------------------ text and chat
    def chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        image: ImageInput | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        greedy: bool = True,
        temperature: float = TEXT_TEMPERATURE,
        top_k: int = TEXT_TOP_K,
        top_p: float = TEXT_TOP_P,
        seed: int = 0,
        stream: StreamFn | None = None,
    ) -> str:
        """The assistant's next reply to ``messages`` (``[{"role", "content"}, ...]`` ending with
        a user turn), rendered with the tokenizer's chat template (the plain ``USER:`` /
        ``ASSISTANT:`` format when it has none). ``image`` goes before the first user turn."""
        if not messages:
            raise ConfigError("a chat needs at least one message")
        if isinstance(messages[-1], dict) and messages[-1].get("role") == "user":
            check_prompt(messages[-1].get("content"), "message")
        codes = None if image is None else self.encode_image(image)
        try:
            ids = chat_prompt_ids(self.tokenizer, self.layout, messages, codes=codes)
        except TemplateError as e:  # e.g. Gemma's template raises on a system turn
            raise ConfigError(f"the chat template refused the conversation: {e}") from e
        return self._decode(
            ids,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stream=stream,
        )

    def generate_text(
        self,
        prompt: str,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        greedy: bool = True,
        temperature: float = TEXT_TEMPERATURE,
        top_k: int = TEXT_TOP_K,
        top_p: float = TEXT_TOP_P,
        seed: int = 0,
        stream: StreamFn | None = None,
    ) -> str:
        """Continue ``<bos>{prompt}`` as plain text (Liquid's text pre-training format)."""
        check_prompt(prompt)
        bos = [] if self.layout.bos_id is None else [self.layout.bos_id]
        return self._decode(
            bos + encode_text(self.tokenizer, prompt),
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stream=stream,
        )

    def perplexity(self, texts: Sequence[str], *, batch_size: int = PERPLEXITY_BATCH) -> float:
        """Token-level perplexity of ``texts`` in the text format ``<bos>{text}<eos>``.

        ``exp(total negative log-likelihood / predicted tokens)`` over all texts together,
        each cut to the training length (2048 tokens, or the model's context if shorter); every token after ``<bos>`` (including ``<eos>``) is
        predicted, as in training.
        """
        if isinstance(texts, str) or not texts:
            raise ConfigError("texts must be a non-empty list of strings")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        for t in texts:
            check_prompt(t, "text")
        max_len = min(MAX_TEXT_LEN, self.context_length or MAX_TEXT_LEN)
        sequences = [
            text_example(self.tokenizer, self.layout, t, max_len=max_len).input_ids for t in texts
        ]
        total_nll, total_tokens = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(sequences), batch_size):
                batch = sequences[start : start + batch_size]
                length = max(len(s) for s in batch)
                ids = torch.zeros((len(batch), length), dtype=torch.long)
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for i, s in enumerate(batch):  # right padding: positions of real tokens unchanged
                    ids[i, : len(s)] = torch.tensor(s)
                    mask[i, : len(s)] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
                logprobs = logits[:, :-1].float().log_softmax(dim=-1)  # (B, T-1, V)
                target = ids[:, 1:]  # (B, T-1)
                nll = -logprobs.gather(-1, target[..., None])[..., 0]  # (B, T-1)
                keep = mask[:, 1:].bool()
                total_nll += float(nll[keep].sum())
                total_tokens += int(keep.sum())
        if total_tokens == 0:
            raise ConfigError("the texts hold no token to predict")
        return math.exp(total_nll / total_tokens)
