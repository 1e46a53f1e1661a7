"""The inference API: one object that draws images, answers questions about them and chats.

:class:`Pipeline` wraps a loaded checkpoint (the causal LM, its tokenizer, the
:class:`~liquidgen.vocab.VocabLayout`, the VQGAN and the checkpoint's
:class:`~liquidgen.checkpoint.GenerationDefaults`). Like a diffusers pipeline it is callable::

    pipe = Pipeline.from_pretrained("path/to/checkpoint").to("cpu")
    images = pipe("a red circle", n=4, seed=0)                       # list of PIL images
    pipe.answer(images[0], "What colour is the shape?")              # -> str
    pipe.chat([{"role": "user", "content": "Hello!"}])               # -> str
    pipe.answer(images[0], "Where?", TextSampling(greedy=False, seed=1))

Image generation returns one type: a flat list of PIL images, prompt-major (image ``j`` of
prompt ``p`` at index ``p * n + j``, drawn with seed ``seed + p * n + j``).
:meth:`Pipeline.generate_images` (one list per prompt) is kept for existing callers.

A request is checked once (:mod:`liquidgen.inference.request`) into an
:class:`~liquidgen.inference.request.ImageRequest` or a
:class:`~liquidgen.inference.sampling.TextSampling`; the decode loops of
:mod:`liquidgen.inference.generation` run it as it is. Every user mistake raises a
:class:`~liquidgen.errors.LiquidgenError` subclass whose message is exactly the line
``liquidgen generate|ask|chat`` print. The library prints nothing (no progress bars) unless
asked (``progress=`` arguments).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError
from PIL import Image
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.checkpoint import GENERATION_FILE, GenerationDefaults
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.formats import (
    MAX_TEXT_LEN,
    caption_prompt_ids,
    chat_prompt_ids,
    encode_text,
    text_example,
    turn_end_id,
    vqa_prompt_ids,
)
from liquidgen.inference import request as rq
from liquidgen.inference.decoding import ProgressFn
from liquidgen.inference.image_generation import SPECULATIVE_CHOICES, sample_image_codes
from liquidgen.inference.loading import VQ_DTYPE, load_checkpoint
from liquidgen.inference.request import (
    ImageInput,
    ImageRequest,
    as_rgb_image,
    check_context,
    check_prompt,
    context_length,
    validate_image_args,
    validate_text_args,
)
from liquidgen.inference.sampling import (
    DEFAULT_MAX_NEW_TOKENS,
    TEXT_TEMPERATURE,
    TEXT_TOP_K,
    TEXT_TOP_P,
    ImageSampling,
    TextSampling,
)
from liquidgen.inference.scoring import PERPLEXITY_BATCH, TextLoss, sequence_loss
from liquidgen.inference.static import CompileOption
from liquidgen.inference.text_generation import (
    StreamFn,
    generate_text,
    greedy_texts,
    strip_leading,
)
from liquidgen.tokenizer import VQGAN, pil_to_tensor, preprocess_understanding, tensor_to_pil
from liquidgen.utils.device import DTYPES, resolve_device, resolve_dtype
from liquidgen.utils.images import image_grid
from liquidgen.vocab import VocabLayout

# Names that lived here before the inference package (kept for one release; docs/inference.md).
__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DTYPES",
    "GENERATION_FILE",
    "TEXT_TEMPERATURE",
    "TEXT_TOP_K",
    "TEXT_TOP_P",
    "GenerationDefaults",
    "ImageSampling",
    "Pipeline",
    "TextLoss",
    "TextSampling",
    "as_rgb_image",
    "check_prompt",
    "image_grid",
    "resolve_device",
    "resolve_dtype",
    "validate_image_args",
    "validate_text_args",
]


# --------------------------------------------------------------------------- the pipeline
class Pipeline:
    """A loaded Liquid checkpoint ready for text-to-image, image understanding and chat.

    Attributes:
        model: the Hugging Face causal LM (eval mode) whose vocabulary holds the image codes.
        tokenizer: its Hugging Face tokenizer.
        layout: where text, special and image tokens live in the vocabulary.
        vq: the VQGAN image tokenizer (``None`` for a text-only checkpoint).
        defaults: the checkpoint's :class:`GenerationDefaults`.
        stop_ids: ids that end text decoding (eos, the chat template's end of turn).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        layout: VocabLayout,
        vq: VQGAN | None,
        defaults: GenerationDefaults | None = None,
        *,
        compile: CompileOption = False,
        static_cache: bool | None = None,
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
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos_ids = eos if isinstance(eos, list) else [eos]
        turn_end = turn_end_id(tokenizer)
        self.stop_ids = {i for i in (layout.eos_id, turn_end, *eos_ids) if i is not None}
        # Decoding options of every method (docs/inference.md, "Fast decoding").
        self.compile: CompileOption = compile  # torch.compile the one-token step
        self.static_cache = static_cache  # None: static KV cache wherever the model allows

    # ------------------------------------------------------------------ loading and placement
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        vq_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
        quantize: str | None = None,
        compile: CompileOption = False,
    ) -> Pipeline:
        """Load a liquidgen checkpoint or a folder laid out like the released Liquid-7B.

        Args:
            path: the checkpoint folder (nothing is downloaded).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None``: CUDA if present, else CPU.
            dtype: LM weights dtype (``torch.dtype`` or a name in :data:`DTYPES`); ``None`` or
                ``"auto"``: bfloat16 on CUDA, float32 on CPU. The VQGAN stays float32.
            vq_dir: the VQGAN folder when it is not inside ``path`` (``vq/`` or ``vqgan.yaml``).
            progress: show transformers' "Loading weights" bar (off: the library is quiet).
            quantize: ``"int8"``: weight-only int8 of the decoder's linear layers
                (:mod:`liquidgen.inference.quantize`); ``None``: the weights as loaded.
            compile: ``torch.compile`` the one-token decode step (``True``: the measured mode
                for the device, or a mode name); it compiles on first use (20-40 s on CPU).

        Raises:
            CheckpointError: the folder is missing, incomplete, corrupt or inconsistent.
            ConfigError: an unknown or unavailable device or dtype.
        """
        path = Path(path)
        c = load_checkpoint(
            path, device=device, dtype=dtype, vq_dir=vq_dir, progress=progress, quantize=quantize
        )
        try:  # __init__ renders the chat template (its end-of-turn token)
            return cls(c.model, c.tokenizer, c.layout, c.vq, c.defaults, compile=compile)
        except (TemplateError, UnicodeDecodeError) as e:
            reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{path}: the chat template cannot be used ({reason})") from e

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None
    ) -> Pipeline:
        """Move the model (and VQGAN) to ``device`` and cast the model to ``dtype``; returns
        ``self``. ``None`` keeps the current one; the VQGAN stays float32."""
        target = resolve_device(device) if device is not None else self.device
        cast = resolve_dtype(dtype, target) if dtype is not None else self.dtype
        self.model.to(device=target, dtype=cast)
        if self.vq is not None:
            self.vq.to(device=target)
        return self

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
        return context_length(self.model)

    def _require_vq(self) -> VQGAN:
        if self.vq is None:
            raise CheckpointError(
                "this checkpoint has no image tokenizer (no vq/ folder or vqgan.yaml)"
            )
        return self.vq

    # ------------------------------------------------------------------ text-to-image
    def image_size(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """The ``(width, height)`` a request resolves to, validated against factor and context.

        Both ``None``: the checkpoint's default. Only one given: the other comes from the first
        trained bucket with that side, else from the default size.
        """
        return rq.resolve_image_size(self.defaults, self.layout, self.context_length, width, height)

    def image_prompt_ids(self, prompt: str, width: int, height: int) -> tuple[list[int], list[int]]:
        """Conditional and unconditional prompt ids (size prefix for multi-ratio checkpoints)."""
        return rq.image_prompt_ids(
            self.tokenizer, self.layout, self.defaults, self.context_length, prompt, width, height
        )

    def image_request(
        self,
        prompt: str | Sequence[str],
        *,
        width: int | None = None,
        height: int | None = None,
        n: int = 1,
        cfg_scale: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> ImageRequest:
        """Check and resolve a text-to-image request once (``None`` settings: the checkpoint's
        defaults; size as in :meth:`image_size`); :meth:`draw` runs it."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ConfigError("prompts must be a non-empty list of strings")
        rq.check_image_count(n)
        d = self.defaults
        base = ImageSampling(
            cfg_scale=d.cfg_scale, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p
        )
        sampling = rq.image_sampling(
            base, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p
        )
        self._require_vq()
        return rq.resolve_image_request(
            prompts,
            tokenizer=self.tokenizer,
            layout=self.layout,
            defaults=self.defaults,
            context=self.context_length,
            width=width,
            height=height,
            n=n,
            seed=seed,
            sampling=sampling,
        )

    def draw(
        self,
        request: ImageRequest,
        *,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
        speculative: str | None = None,
        stats: dict[str, int] | None = None,
    ) -> list[Image.Image]:
        """Run a resolved request: ``batch_size`` prompts per call (``None``: all prompts;
        within a call the CFG pairs of as many images as the memory budget and the batch limit
        allow share each forward, :func:`~liquidgen.inference.image_generation.images_per_forward`);
        ``progress(done, total)`` counts image tokens. ``speculative="jacobi"``: speculative
        Jacobi decoding (lossless in distribution, fewer forwards; one image at a time).
        ``stats`` gets the forward passes and tokens added (see ``sample_image_codes``)."""
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if speculative not in (None, *SPECULATIVE_CHOICES):
            raise ConfigError(
                f"unknown speculative method {speculative!r} (known: {', '.join(SPECULATIVE_CHOICES)})"
            )
        vq = self._require_vq()
        images: list[Image.Image] = []
        done_before = 0
        for part in request.batches(batch_size):

            def report(done: int, _total: int, base: int = done_before) -> None:
                progress(base + done, request.total_tokens)  # type: ignore[misc]

            codes = sample_image_codes(
                self.model,
                self.layout,
                part,
                progress=None if progress is None else report,
                static_cache=self.static_cache,
                compile=self.compile,
                speculative=speculative,
                stats=stats,
            )  # (len(part.prompts) * n, h, w)
            images += self.decode_codes(codes, vq)
            done_before += part.total_tokens
        return images

    def __call__(
        self,
        prompt: str | Sequence[str],
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
        speculative: str | None = None,
    ) -> list[Image.Image]:
        """Draw ``n`` images of ``width`` x ``height`` pixels for ``prompt`` (or each prompt of
        a list); returns them flat, prompt-major: image ``j`` of prompt ``p`` is item
        ``p * n + j`` and uses seed ``seed + p * n + j`` whatever the batching.

        ``None`` settings take the checkpoint's defaults (authors': cfg 7.0, temperature 0.99,
        top-k 4096 capped to the codebook, top-p 0.96). ``progress(done, total)`` counts image
        tokens drawn over all images. ``speculative="jacobi"``: speculative Jacobi decoding
        (same distribution as plain sampling, fewer forward passes; not the same images for a
        seed).
        """
        request = self.image_request(
            prompt,
            width=width,
            height=height,
            n=n,
            cfg_scale=cfg_scale,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
        return self.draw(request, batch_size=batch_size, progress=progress, speculative=speculative)

    def generate_image(self, prompt: str, **kwargs: Any) -> list[Image.Image]:
        """``n`` images for one prompt (:meth:`__call__` with a single prompt)."""
        return self(prompt, **kwargs)

    def generate_images(
        self, prompts: Sequence[str], *, n: int = 1, **kwargs: Any
    ) -> list[list[Image.Image]]:
        """:meth:`__call__` grouped per prompt: one list of ``n`` images per prompt."""
        if isinstance(prompts, str) or not prompts:
            raise ConfigError("prompts must be a non-empty list of strings")
        images = self(list(prompts), n=n, **kwargs)
        return [images[i : i + n] for i in range(0, len(images), n)]

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

    # ------------------------------------------------------------------ text
    def _decode(
        self, prompt_ids: list[int], sampling: TextSampling, stream: StreamFn | None
    ) -> str:
        """Continue ``prompt_ids`` until a stop id; returns the text without surrounding blanks.

        Leading whitespace is held back from ``stream`` too, so the streamed text starts
        like the returned one.
        """
        check_context(self.context_length, len(prompt_ids))
        result = generate_text(
            self.model,
            self.tokenizer,
            prompt_ids,
            sampling=sampling,
            stop_ids=self.stop_ids,
            stream_callback=None if stream is None else strip_leading(stream),
            static_cache=self.static_cache,
            compile=self.compile,
        )
        return result.text.strip()

    def answer(
        self,
        image: ImageInput,
        question: str,
        sampling: TextSampling | None = None,
        *,
        stream: StreamFn | None = None,
        **settings: Any,
    ) -> str:
        """Answer ``question`` about ``image`` (a PIL image or a path).

        The image becomes codes and goes into the chat template as ``<boi>codes<eoi>`` before
        the question. Decoding follows ``sampling`` (:class:`TextSampling`; greedy by default)
        with any of its fields given as keywords (``max_new_tokens=...``, ``greedy=False``,
        ``temperature``, ``top_k``, ``top_p``, ``seed``). ``stream`` receives the text as it
        is produced.
        """
        sampling = rq.text_sampling(sampling, settings)
        check_prompt(question, "question")
        ids = vqa_prompt_ids(self.tokenizer, self.layout, self.encode_image(image), question)
        return self._decode(ids, sampling, stream)

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
        TextSampling(max_new_tokens=max_new_tokens)
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
                check_context(self.context_length, len(row))
            generated = greedy_texts(
                self.model,
                rows,
                max_new_tokens=max_new_tokens,
                stop_ids=self.stop_ids,
                pad_id=self.layout.padding_id,
                static_cache=self.static_cache,
                compile=self.compile,
            )
            out += [
                self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated
            ]
        return out

    def caption(
        self,
        image: ImageInput,
        sampling: TextSampling | None = None,
        *,
        stream: StreamFn | None = None,
        **settings: Any,
    ) -> str:
        """Describe ``image`` with the pre-training captioning prompt
        ``<bos><boi>codes<eoi>The caption of this image is:`` (decoding as in :meth:`answer`)."""
        sampling = rq.text_sampling(sampling, settings)
        ids = caption_prompt_ids(self.tokenizer, self.layout, self.encode_image(image))
        return self._decode(ids, sampling, stream)

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        sampling: TextSampling | None = None,
        *,
        image: ImageInput | None = None,
        stream: StreamFn | None = None,
        **settings: Any,
    ) -> str:
        """The assistant's next reply to ``messages`` (``[{"role", "content"}, ...]`` ending with
        a user turn), rendered with the tokenizer's chat template (the plain ``USER:`` /
        ``ASSISTANT:`` format when it has none). ``image`` goes before the first user turn;
        decoding as in :meth:`answer`."""
        sampling = rq.text_sampling(sampling, settings)
        if not messages:
            raise ConfigError("a chat needs at least one message")
        if isinstance(messages[-1], dict) and messages[-1].get("role") == "user":
            check_prompt(messages[-1].get("content"), "message")
        codes = None if image is None else self.encode_image(image)
        try:
            ids = chat_prompt_ids(self.tokenizer, self.layout, messages, codes=codes)
        except TemplateError as e:  # e.g. Gemma's template raises on a system turn
            raise ConfigError(f"the chat template refused the conversation: {e}") from e
        return self._decode(ids, sampling, stream)

    def generate_text(
        self,
        prompt: str,
        sampling: TextSampling | None = None,
        *,
        stream: StreamFn | None = None,
        **settings: Any,
    ) -> str:
        """Continue ``<bos>{prompt}`` as plain text (Liquid's text pre-training format)."""
        sampling = rq.text_sampling(sampling, settings)
        check_prompt(prompt)
        bos = [] if self.layout.bos_id is None else [self.layout.bos_id]
        return self._decode(bos + encode_text(self.tokenizer, prompt), sampling, stream)

    # ------------------------------------------------------------------ scoring text
    def text_ids(self, text: str) -> list[int]:
        """``<bos>{text}<eos>`` ids cut to the training length (2048 tokens, or the model's
        context if shorter): what :meth:`text_loss` scores."""
        max_len = min(MAX_TEXT_LEN, self.context_length or MAX_TEXT_LEN)
        return text_example(self.tokenizer, self.layout, text, max_len=max_len).input_ids

    def sequence_loss(
        self, sequences: Sequence[Sequence[int]], *, batch_size: int = PERPLEXITY_BATCH
    ) -> TextLoss:
        """Summed negative log-likelihood of every token after the first of each id sequence,
        ``batch_size`` sequences per forward (right-padded; :mod:`liquidgen.inference.scoring`)."""
        return sequence_loss(self.model, sequences, batch_size=batch_size)

    def text_loss(self, texts: Sequence[str], *, batch_size: int = PERPLEXITY_BATCH) -> TextLoss:
        """Loss sums of ``texts`` in the text format ``<bos>{text}<eos>`` (:meth:`text_ids`);
        every token after ``<bos>`` (including ``<eos>``) is predicted, as in training."""
        if isinstance(texts, str) or not texts:
            raise ConfigError("texts must be a non-empty list of strings")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        for t in texts:
            check_prompt(t, "text")
        loss = self.sequence_loss([self.text_ids(t) for t in texts], batch_size=batch_size)
        if loss.tokens == 0:
            raise ConfigError("the texts hold no token to predict")
        return loss

    def perplexity(self, texts: Sequence[str], *, batch_size: int = PERPLEXITY_BATCH) -> float:
        """Token-level perplexity ``exp(total NLL / predicted tokens)`` of ``texts`` together
        (:meth:`text_loss`)."""
        return self.text_loss(texts, batch_size=batch_size).perplexity
