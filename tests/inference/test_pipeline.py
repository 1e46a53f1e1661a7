"""The Python inference API on tiny random checkpoints: all three tasks, seeds, validation."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import liquidgen
from liquidgen.checkpoint import GENERATION_FILE, GenerationDefaults
from liquidgen.errors import CheckpointError, ConfigError, ImageReadError, ShapeError
from liquidgen.formats import caption_prompt_ids, chat_prompt_ids, vqa_prompt_ids
from liquidgen.inference.generation import generate_image_tokens
from liquidgen.inference.pipeline import Pipeline
from liquidgen.inference.sampling import TextSampling
from liquidgen.tokenizer import pil_to_tensor, tensor_to_pil
from liquidgen.utils.device import resolve_device, resolve_dtype

from .conftest import HEIGHT, WIDTH

PROMPT = "a red circle on the left of the picture."


def _pixels(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(img) for img in images]


def _same(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y) for x, y in zip(_pixels(a), _pixels(b), strict=True)
    )


def _reference_greedy(pipe: Pipeline, ids: list[int], max_new_tokens: int) -> str:
    """Hugging Face's own greedy ``generate`` on the same prompt, stopping at the same ids."""
    out = pipe.model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=sorted(pipe.stop_ids),
        pad_token_id=pipe.layout.pad_id,
    )
    new = [t for t in out[0, len(ids) :].tolist() if t not in pipe.stop_ids]
    return pipe.tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def picture(pipe: Pipeline) -> Image.Image:
    return pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, seed=5)[0]


# --------------------------------------------------------------------------- loading
def test_released_layout_loads_with_its_defaults(pipe: Pipeline) -> None:
    assert pipe.layout.image_offset == 512 and pipe.layout.codebook_size == 64
    assert (pipe.layout.boi_id, pipe.layout.eoi_id, pipe.layout.uncond_id) == (7, 8, 9)
    assert pipe.vq is not None and pipe.vq.codebook_size == 64
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32
    # No liquid_generation.json: the released 32x32 code grid at this tokenizer's factor 4,
    # and the authors' sampler settings.
    d = pipe.defaults
    assert (d.width, d.height, d.understanding_size) == (128, 128, 128)
    assert (d.cfg_scale, d.temperature, d.top_k, d.top_p) == (7.0, 0.99, 4096, 0.96)
    assert not d.size_prefix
    # eos and Gemma's <end_of_turn> stop text decoding.
    end_of_turn = pipe.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert pipe.stop_ids == {pipe.layout.eos_id, end_of_turn}


def test_lazy_top_level_export() -> None:
    assert liquidgen.Pipeline is Pipeline
    from liquidgen.inference import Pipeline as from_package

    assert from_package is Pipeline


def test_old_import_paths_are_the_new_modules() -> None:
    """liquidgen.pipeline/.generation/.sampling/.inference_cli stay for one release."""
    import liquidgen.generation
    import liquidgen.inference.cli
    import liquidgen.inference.generation
    import liquidgen.inference.sampling
    import liquidgen.inference_cli
    import liquidgen.pipeline
    import liquidgen.sampling

    assert liquidgen.pipeline.Pipeline is Pipeline
    assert liquidgen.pipeline.GenerationDefaults is GenerationDefaults
    assert liquidgen.pipeline.resolve_dtype is resolve_dtype
    assert liquidgen.generation is liquidgen.inference.generation
    assert liquidgen.sampling is liquidgen.inference.sampling
    assert liquidgen.inference_cli is liquidgen.inference.cli


def test_device_and_dtype_resolution(liquid7b_dir: Path) -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype must be one of"):
        resolve_dtype("float8", cpu)
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    bf16 = Pipeline.from_pretrained(liquid7b_dir, device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    assert bf16.vq.quantize.embedding.weight.dtype == torch.float32  # VQGAN stays exact


# --------------------------------------------------------------------------- text-to-image
def test_generate_image_matches_the_sampler_with_the_authors_defaults(pipe: Pipeline) -> None:
    """The pipeline is the format + Liquid's sampler + the VQGAN, nothing else."""
    images = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=2, seed=3)
    assert [img.size for img in images] == [(WIDTH, HEIGHT)] * 2
    cond, uncond = pipe.image_prompt_ids(PROMPT, WIDTH, HEIGHT)
    text = pipe.tokenizer.decode(cond)
    assert text.startswith("<bos>" + PROMPT) and text.endswith("description.<boi>")
    assert uncond == [pipe.layout.bos_id, pipe.layout.uncond_id, pipe.layout.boi_id]
    codes = generate_image_tokens(
        pipe.model,
        pipe.layout,
        [cond],
        uncond,
        grid_hw=(HEIGHT // 4, WIDTH // 4),
        n_per_prompt=2,
        cfg_scale=7.0,
        temperature=0.99,
        top_k=64,
        top_p=0.96,
        seed=3,
    )
    assert _same(images, [tensor_to_pil(pipe.vq.decode(c))[0] for c in codes])


def test_seeds_reproduce_images(pipe: Pipeline) -> None:
    first = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=3, seed=7)
    again = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=3, seed=7)
    assert _same(first, again)
    assert not _same(first[:1], first[1:2])  # the n images differ from each other
    # Image j of a run is the single image of seed + j.
    single = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=1, seed=9)
    assert _same(single, first[2:])
    other = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=3, seed=8)
    assert not _same(first, other)


def test_pipeline_is_callable_with_one_flat_output_type(pipe: Pipeline) -> None:
    """``pipe(prompt)`` / ``pipe(prompts)``: a flat, prompt-major list of images; the old
    methods are views of it."""
    prompts = [PROMPT, "a star"]
    flat = pipe(prompts, width=WIDTH, height=HEIGHT, n=2, seed=4)
    assert len(flat) == 4 and all(isinstance(img, Image.Image) for img in flat)
    grouped = pipe.generate_images(prompts, width=WIDTH, height=HEIGHT, n=2, seed=4)
    assert _same(flat, [img for group in grouped for img in group])
    assert _same(
        pipe(PROMPT, width=WIDTH, height=HEIGHT, seed=6),
        pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, seed=6),
    )
    request = pipe.image_request(prompts, width=WIDTH, height=HEIGHT, n=2, seed=4)
    assert request.total_tokens == 4 * (HEIGHT // 4) * (WIDTH // 4)
    assert request.sampling.top_k == 64  # the authors' 4096, capped to the codebook
    assert _same(pipe.draw(request, batch_size=1), flat)


def test_to_moves_and_casts_and_loading_is_quiet(
    liquid7b_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = Pipeline.from_pretrained(liquid7b_dir)
    assert capsys.readouterr().err == ""  # no "Loading weights" bar from a library call
    assert fresh.to("cpu", "bfloat16") is fresh and fresh.dtype == torch.bfloat16
    assert fresh.vq.quantize.embedding.weight.dtype == torch.float32  # VQGAN stays exact
    assert fresh.to(dtype=torch.float32).dtype == torch.float32


def test_text_sampling_object_equals_keywords(talker: Pipeline, picture: Image.Image) -> None:
    sampled = TextSampling(max_new_tokens=8, greedy=False, temperature=0.9, seed=2)
    by_object = talker.answer(picture, "Where?", sampled)
    by_keywords = talker.answer(
        picture, "Where?", max_new_tokens=8, greedy=False, temperature=0.9, seed=2
    )
    assert by_object == by_keywords
    assert TextSampling.from_options(top_k=5).greedy is False  # a setting implies sampling
    with pytest.raises(ConfigError, match="max_new_tokens must be"):
        TextSampling(max_new_tokens=0)


def test_several_prompts_batched_like_single_calls(pipe: Pipeline) -> None:
    prompts = [PROMPT, "The square is blue and it sits near the top.", "a star"]
    together = pipe.generate_images(prompts, width=WIDTH, height=HEIGHT, n=2, seed=4)
    assert [len(images) for images in together] == [2, 2, 2]
    chunked = pipe.generate_images(prompts, width=WIDTH, height=HEIGHT, n=2, seed=4, batch_size=2)
    for a, b in zip(together, chunked, strict=True):
        assert _same(a, b)
    # Prompt p alone with seed + p * n gives its images.
    alone = pipe.generate_image(prompts[1], width=WIDTH, height=HEIGHT, n=2, seed=4 + 1 * 2)
    assert _same(together[1], alone)


@pytest.mark.parametrize(("width", "height"), [(12, 8), (8, 12), (4, 8)])
def test_width_and_height_select_the_grid(pipe: Pipeline, width: int, height: int) -> None:
    calls: list[tuple[int, int]] = []
    images = pipe.generate_image(
        PROMPT, width=width, height=height, n=2, progress=lambda d, t: calls.append((d, t))
    )
    tokens = 2 * (width // 4) * (height // 4)  # n * h * w image tokens drawn
    assert [img.size for img in images] == [(width, height)] * 2
    assert calls[-1] == (tokens, tokens)
    assert len(calls) == (width // 4) * (height // 4)  # one report per decode step


def test_multi_ratio_checkpoint_gets_size_prefix_and_defaults(multi_ratio_dir: Path) -> None:
    pipe = Pipeline.from_pretrained(multi_ratio_dir)
    assert pipe.layout.bos_id is None  # qwen2: no <bos>
    stops = set(pipe.tokenizer.convert_ids_to_tokens(sorted(pipe.stop_ids)))
    assert "<|im_end|>" in stops  # the Qwen chat template's end of turn
    cond, uncond = pipe.image_prompt_ids("a cat", 8, 16)
    assert pipe.tokenizer.decode(cond[:-1]) == (
        "Image Size: Width is 8 Height is 16. a cat Generate an image based on this description."
    )
    assert uncond == [pipe.layout.uncond_id, pipe.layout.boi_id]
    assert [img.size for img in pipe.generate_image("a cat")] == [(16, 8)]  # stored default
    assert pipe.image_size(width=8) == (8, 16)  # the trained bucket with that width
    assert pipe.image_size(height=16) == (8, 16)
    assert pipe.image_size(width=32) == (32, 8)  # no bucket: the default height


def test_generation_defaults_file_round_trip_and_errors(tmp_path: Path, pipe: Pipeline) -> None:
    layout = pipe.layout
    defaults = GenerationDefaults(
        width=32, height=16, understanding_size=64, buckets=[[32, 16]], cfg_scale=5.0, top_k=100
    )
    defaults.save(tmp_path)
    assert GenerationDefaults.load(tmp_path, layout) == defaults
    (tmp_path / GENERATION_FILE).write_text(json.dumps({"cfg_scale": 3.0}))
    partial = GenerationDefaults.load(tmp_path, layout)
    assert partial.cfg_scale == 3.0 and partial.width == 128  # missing fields: layout defaults
    for content, message in [
        ("{not json", "invalid JSON"),
        (json.dumps({"colour": 1}), r"unknown field\(s\) \['colour'\]"),
        (json.dumps({"width": 18}), "not a positive multiple of the factor 4"),
        (json.dumps({"temperature": 0}), "temperature must be > 0"),
        (json.dumps({"buckets": [[16]]}), "buckets must be"),
    ]:
        (tmp_path / GENERATION_FILE).write_text(content)
        with pytest.raises(CheckpointError, match=message):
            GenerationDefaults.load(tmp_path, layout)


# --------------------------------------------------------------------------- understanding and text
def test_answer_is_greedy_decoding_of_the_vqa_prompt(
    talker: Pipeline, picture: Image.Image
) -> None:
    # A question whose answer is valid UTF-8: byte-fallback tokens that do not form a
    # character are decoded as U+FFFD only once later bytes arrive, so only then does the
    # streamed text equal the final one.
    question = "Describe the picture."
    pieces: list[str] = []
    answer = talker.answer(picture, question, max_new_tokens=12, stream=pieces.append)
    assert isinstance(answer, str) and answer
    assert "".join(pieces).strip() == answer
    codes = talker.encode_image(picture)
    assert codes.shape == (32, 32)  # understanding inputs are resized to 128x128 (factor 4)
    ids = vqa_prompt_ids(talker.tokenizer, talker.layout, codes, question)
    boi = ids.index(talker.layout.boi_id)
    assert ids[boi + 1 + 32 * 32] == talker.layout.eoi_id  # <boi> codes <eoi> inline
    assert talker.tokenizer.decode(ids[:boi]) == "<bos><start_of_turn>user\n"
    assert answer == _reference_greedy(talker, ids, 12)


def test_answer_accepts_a_path_and_samples_reproducibly(
    talker: Pipeline, picture: Image.Image, tmp_path: Path
) -> None:
    path = tmp_path / "picture.png"
    picture.save(path)
    assert talker.answer(path, "Where?", max_new_tokens=6) == talker.answer(
        picture, "Where?", max_new_tokens=6
    )
    sampled = dict(greedy=False, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8)
    assert talker.answer(picture, "Where?", seed=1, **sampled) == talker.answer(
        picture, "Where?", seed=1, **sampled
    )


def test_batched_answers_equal_single_answers(talker: Pipeline) -> None:
    images = [
        talker.generate_image(PROMPT, width=WIDTH, height=HEIGHT, seed=s)[0] for s in range(3)
    ]
    questions = ["What colour?", "Where is the green square in the picture?", "Is it big?"]
    batched = talker.answers(images, questions, max_new_tokens=10, batch_size=2)
    single = [
        talker.answer(i, q, max_new_tokens=10) for i, q in zip(images, questions, strict=True)
    ]
    assert batched == single
    assert len(set(batched)) == 3 and all(batched)  # rows really differ


def test_caption_uses_the_captioning_prompt(talker: Pipeline, picture: Image.Image) -> None:
    caption = talker.caption(picture, max_new_tokens=10)
    assert caption
    ids = caption_prompt_ids(talker.tokenizer, talker.layout, talker.encode_image(picture))
    after_image = ids[ids.index(talker.layout.eoi_id) + 1 :]
    assert talker.tokenizer.decode(after_image) == "The caption of this image is:"
    assert caption == _reference_greedy(talker, ids, 10)


def test_multi_turn_chat_uses_the_chat_template(talker: Pipeline) -> None:
    messages = [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "What is a square?"},
    ]
    reply = talker.chat(messages, max_new_tokens=10)
    assert reply
    ids = chat_prompt_ids(talker.tokenizer, talker.layout, messages)
    assert talker.tokenizer.decode(ids).endswith(
        "<start_of_turn>user\nWhat is a square?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert reply == _reference_greedy(talker, ids, 10)


def test_chat_with_plain_format_on_a_base_tokenizer(multi_ratio_dir: Path, tmp_path: Path) -> None:
    """A tokenizer without a chat template gets the plain USER:/ASSISTANT: format and stops
    at eos."""
    folder = tmp_path / "plain"
    shutil.copytree(multi_ratio_dir, folder)
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    pipe = Pipeline.from_pretrained(folder)
    assert pipe.tokenizer.chat_template is None
    assert pipe.stop_ids == {pipe.layout.eos_id}
    messages = [{"role": "user", "content": "Hello"}]
    ids = chat_prompt_ids(pipe.tokenizer, pipe.layout, messages)
    assert pipe.tokenizer.decode(ids) == "USER: Hello\nASSISTANT:"
    assert pipe.chat(messages, max_new_tokens=6) == _reference_greedy(pipe, ids, 6)


def test_chat_template_errors_are_user_errors(pipe: Pipeline) -> None:
    """Templates may refuse a conversation (Gemma's raises on a system turn)."""
    tokenizer = copy.deepcopy(pipe.tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}"
        + pipe.tokenizer.chat_template
    )
    strict = Pipeline(pipe.model, tokenizer, pipe.layout, pipe.vq)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    with pytest.raises(ConfigError, match="refused the conversation: System role not supported"):
        strict.chat(messages)


def test_perplexity_is_token_level(pipe: Pipeline) -> None:
    texts = ["a red circle on the left of the picture.", "The numbers 3, 21 and 39."]
    nlls, counts = [], []
    for text in texts:
        ids = [pipe.layout.bos_id, *pipe.tokenizer(text, add_special_tokens=False)["input_ids"]]
        ids = torch.tensor([[*ids, pipe.layout.eos_id]])
        with torch.no_grad():
            loss = pipe.model(input_ids=ids, labels=ids).loss  # mean over T - 1 predictions
        nlls.append(float(loss) * (ids.shape[1] - 1))
        counts.append(ids.shape[1] - 1)
    expected = math.exp(sum(nlls) / sum(counts))
    assert pipe.perplexity(texts) == pytest.approx(expected, rel=1e-5)
    assert pipe.perplexity(texts, batch_size=1) == pytest.approx(expected, rel=1e-5)
    assert pipe.perplexity(texts[:1]) == pytest.approx(math.exp(nlls[0] / counts[0]), rel=1e-5)


def test_text_only_checkpoint_refuses_image_tasks(pipe: Pipeline) -> None:
    text_only = Pipeline(pipe.model, pipe.tokenizer, pipe.layout, None)
    assert isinstance(text_only.chat([{"role": "user", "content": "hi"}], max_new_tokens=2), str)
    with pytest.raises(CheckpointError, match="no image tokenizer"):
        text_only.generate_image(PROMPT, width=WIDTH, height=HEIGHT)
    with pytest.raises(CheckpointError, match="no image tokenizer"):
        text_only.answer(Image.new("RGB", (8, 8)), "what?")


# --------------------------------------------------------------------------- bad input
LONG_PROMPT = "red " * 5000  # more tokens than the 4096-token context


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(prompt=""), ConfigError, "the prompt is empty"),
        (dict(prompt="   "), ConfigError, "the prompt is empty"),
        (
            dict(prompt=LONG_PROMPT),
            ConfigError,
            "the prompt is .* tokens long; the model's context is 4096",
        ),
        (dict(temperature=0.0), ConfigError, "temperature must be > 0"),
        (dict(temperature=-1.0), ConfigError, "temperature must be > 0"),
        (dict(top_p=0.0), ConfigError, r"top_p must lie in \(0, 1\]"),
        (dict(top_p=1.5), ConfigError, r"top_p must lie in \(0, 1\]"),
        (dict(top_k=-1), ConfigError, "top_k must be an integer >= 0"),
        (dict(cfg_scale=-0.5), ConfigError, "cfg_scale must be >= 0"),
        (dict(n=0), ConfigError, "n \\(images per prompt\\) must be an integer >= 1"),
        (dict(width=18), ShapeError, "positive multiples of 4 .* got 18x8"),
        (dict(width=0), ShapeError, "positive multiples of 4"),
        (
            dict(width=512, height=512),
            ShapeError,
            "16384 image tokens, too many for the model's context of 4096",
        ),
    ],
)
def test_generate_image_rejects_bad_input(
    pipe: Pipeline, kwargs: dict, error: type[Exception], message: str
) -> None:
    args = dict(prompt=PROMPT, width=WIDTH, height=HEIGHT) | kwargs
    with pytest.raises(error, match=message):
        pipe.generate_image(args.pop("prompt"), **args)


def test_prompt_and_image_together_too_long(pipe: Pipeline) -> None:
    prompt = "red " * 1000  # about 1000 tokens: fits the context alone, and so does the image
    with pytest.raises(ConfigError, match=r"and a 240x240 image \(3600 tokens\) exceed"):
        pipe.generate_image(prompt, width=240, height=240)


def test_understanding_and_text_reject_bad_input(
    pipe: Pipeline, picture: Image.Image, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="not an image"):
        pipe.answer(broken, "What?")
    with pytest.raises(ImageReadError, match="no such file"):
        pipe.caption(tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="the question is empty"):
        pipe.answer(picture, " ")
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        pipe.answer(picture, "What?", greedy=False, temperature=0.0)
    with pytest.raises(ConfigError, match="the message is empty"):
        pipe.chat([{"role": "user", "content": ""}])
    with pytest.raises(ConfigError, match=r"the prompt is .* tokens long"):
        pipe.chat([{"role": "user", "content": LONG_PROMPT}])
    with pytest.raises(ConfigError, match="max_new_tokens must be"):
        pipe.generate_text("a red", max_new_tokens=0)


def test_missing_and_corrupt_model_folders(tmp_path: Path, liquid7b_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="model folder not found"):
        Pipeline.from_pretrained(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        Pipeline.from_pretrained(tmp_path)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(liquid7b_dir, corrupt)
    shard = sorted(corrupt.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:100])  # truncated weights
    with pytest.raises(CheckpointError, match="cannot load the model"):
        Pipeline.from_pretrained(corrupt)


def test_understanding_native_encodes_bucket_sized_images_as_they_are(
    multi_ratio_dir: Path, tmp_path: Path
) -> None:
    """Models trained on native-size world VQA read bucket-sized images without the square pad;
    other sizes still get Liquid's pad + resize; one VQGAN forward per size."""
    from .conftest import MULTI_RATIO

    native_dir = tmp_path / "native"
    shutil.copytree(multi_ratio_dir, native_dir)
    GenerationDefaults(**MULTI_RATIO, understanding_native=True).save(native_dir)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in ((16, 8), (8, 16), (20, 10), (16, 8))
    ]
    native = Pipeline.from_pretrained(native_dir)
    codes = native.encode_images(images)
    assert [tuple(c.shape) for c in codes] == [(2, 4), (4, 2), (4, 4), (2, 4)]  # (h, w) at /4
    alone = native.vq.encode(pil_to_tensor(images[1]))[0]  # (4, 2)
    assert torch.equal(codes[1], alone)
    padded = Pipeline.from_pretrained(multi_ratio_dir).encode_images(images)
    assert [tuple(c.shape) for c in padded] == [(4, 4)] * 4  # the 16x16 understanding square
    assert torch.equal(padded[2], codes[2])  # not a bucket: the same pad + resize either way
    with pytest.raises(ConfigError, match="understanding_native"):
        GenerationDefaults(**MULTI_RATIO, understanding_native="yes")
