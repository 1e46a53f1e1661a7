"""The harness end to end on a tiny random checkpoint: outputs, determinism, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liquidgen.cli import main
from liquidgen.errors import ConfigError
from liquidgen.evaluation import report
from liquidgen.evaluation.harness import EvalSettings, generation_sizes, image_sizes
from liquidgen.evaluation.t2i import prompt_set
from liquidgen.evaluation.text import covered_bytes, evaluate_text, validation_documents
from liquidgen.evaluation.tokenizer import evaluate_roundtrip, summarize_tokenizer
from liquidgen.inference.pipeline import Pipeline

OUTPUTS = ("results.json", "results.md", "records.jsonl", "samples.png")
SMALL = ["--limit", "2", "--n", "1", "--quiet"]


def _run(tiny_dir: Path, out: Path, *extra: str) -> int:
    return main(["eval", "all", "--model", str(tiny_dir), "--out", str(out), *SMALL, *extra])


@pytest.fixture(scope="module")
def two_runs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("run_a"), tmp_path_factory.mktemp("run_b")
    assert _run(tiny_dir, a) == 0
    assert _run(tiny_dir, b) == 0
    return a, b


def test_eval_all_writes_every_output(two_runs: tuple[Path, Path], tiny_dir: Path) -> None:
    out = two_runs[0]
    results = json.loads((out / "results.json").read_text())
    assert results["command"] == (
        f"liquidgen eval all --model {tiny_dir} --n 1 --limit 2 --corpus stdlib-docs --seed 0"
    )
    assert results["settings"]["tasks"] == ["t2i", "vqa", "text", "tokenizer"]
    t2i = results["t2i"]
    assert t2i["sizes"] == ["32x32", "48x32"]
    prompts = prompt_set(2)
    assert sum(t2i["seen"]["counts"].values()) == len(prompts["seen"]) * 2  # 1 image, 2 sizes
    assert sum(t2i["heldout"]["counts"].values()) == len(prompts["heldout"]) * 2
    assert 0.0 <= t2i["seen"]["overall"] <= 1.0
    assert set(results["vqa"]["sources"]) == {"world", "world_heldout", "easy_vqa"}
    assert all(s["questions"] == 2 for s in results["vqa"]["sources"].values())
    assert results["vqa"]["world_sizes"] == ["32x32", "48x32"]  # understanding size 32 included
    assert results["text"]["documents"] == 2 and results["text"]["perplexity"] > 1.0
    assert results["tokenizer"]["images"] == 2 * 2  # two renders at each of two sizes
    assert results["tokenizer"]["parser"] == 1.0  # the parser reads clean renders exactly
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["task"] for r in records} == {"t2i", "vqa", "tokenizer"}
    assert sum(r["task"] == "t2i" for r in records) == sum(t2i["seen"]["counts"].values()) + sum(
        t2i["heldout"]["counts"].values()
    )
    markdown = (out / "results.md").read_text()
    assert markdown.startswith(f"Command: `{results['command']}`")
    assert "| text to image, seen compositions |" in markdown
    assert f"{t2i['seen']['overall']:.3f}" in markdown
    grid = Image.open(out / "samples.png")
    assert grid.mode == "RGB" and grid.width > grid.height  # 9 columns, 2 rows
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"t2i", "vqa", "text", "tokenizer"}


def test_reruns_write_identical_results(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_single_tasks_and_the_sampling_seed(tiny_dir: Path, tmp_path: Path) -> None:
    argv = ["eval", "t2i", "--model", str(tiny_dir), *SMALL, "--sizes", "32x32"]
    assert main([*argv, "--out", str(tmp_path / "s0")]) == 0
    assert main([*argv, "--out", str(tmp_path / "s1"), "--seed", "1"]) == 0
    r0 = (tmp_path / "s0" / "records.jsonl").read_text().splitlines()
    r1 = (tmp_path / "s1" / "records.jsonl").read_text().splitlines()
    prompts0 = [json.loads(line)["prompt"] for line in r0]
    assert prompts0 == [json.loads(line)["prompt"] for line in r1]  # the prompts are fixed
    assert [json.loads(line)["seed"] for line in r1] == [s + 1 for s in range(len(r1))]
    results = json.loads((tmp_path / "s0" / "results.json").read_text())
    assert set(results) == {"version", "command", "model", "settings", "t2i"}
    assert results["t2i"]["sizes"] == ["32x32"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "nope"], "invalid choice: 'nope'"),
        (["eval"], "the following arguments are required: TASK"),
        (["eval", "t2i", "--n", "0"], "n (images per prompt) must be an integer >= 1, got 0"),
        (["eval", "vqa", "--limit", "0"], "limit must be an integer >= 1, got 0"),
        (["eval", "t2i", "--n", "x"], "argument --n: invalid int value: 'x'"),
        (["eval", "tokenizer", "--sizes", "abc"], "size must be N or WxH, got 'abc'"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        code = main([*argv, "--model", str(tmp_path / "missing")] if len(argv) > 1 else argv)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "all", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"liquidgen: error: {tmp_path / 'missing'}: model folder not found\n"
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["eval", "text", "--out", str(a_file)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_settings_validate_and_name_their_command() -> None:
    settings = EvalSettings(tasks=("t2i",), n=2, limit=3, sizes=((32, 32), (48, 32)))
    assert (
        settings.command("m")
        == "liquidgen eval t2i --model m --n 2 --limit 3 --sizes 32x32,48x32 --seed 0"
    )
    assert (
        EvalSettings(tasks=("text",)).command(None)
        == "liquidgen eval text --corpus stdlib-docs --seed 0"
    )
    assert (
        EvalSettings(tasks=("text",), text_corpus="pydoc").command(None)
        == "liquidgen eval text --corpus pydoc --seed 0"
    )
    with pytest.raises(ConfigError, match="unknown text corpus"):
        EvalSettings(text_corpus="wiki")
    assert EvalSettings(tasks=("text", "t2i")).command(None).startswith("liquidgen eval t2i,text ")
    with pytest.raises(ConfigError, match="unknown task"):
        EvalSettings(tasks=("fid",))
    with pytest.raises(ConfigError, match="batch size"):
        EvalSettings(batch_size=0)


def test_sizes_come_from_the_checkpoint(tiny_pipe: Pipeline) -> None:
    assert generation_sizes(tiny_pipe) == [(32, 32), (48, 32)]
    assert image_sizes(tiny_pipe, [(48, 32)]) == [(48, 32), (32, 32)]


def test_text_perplexity_pools_batches_exactly(tiny_pipe: Pipeline) -> None:
    documents, _ = validation_documents(3)
    result = evaluate_text(tiny_pipe, limit=3, batch_size=2, progress=False)
    # pooling is exact; float32 forwards of differently padded batches differ in the last bits
    assert result["perplexity"] == pytest.approx(tiny_pipe.perplexity(documents), rel=1e-5)
    assert result["documents"] == 3 and result["tokens"] > 0
    # bits per byte: the same total NLL over the UTF-8 bytes the predicted tokens spell
    nll = result["tokens"] * math.log(result["perplexity"])
    assert result["bits_per_byte"] == pytest.approx(nll / math.log(2) / result["bytes"])
    covered = sum(covered_bytes(tiny_pipe, d) for d in documents)
    assert result["bytes"] == covered and covered <= sum(len(d.encode()) for d in documents)
    with pytest.raises(ConfigError):
        validation_documents(0)
    smaller = evaluate_text(tiny_pipe, limit=2, corpus="pydoc", progress=False)
    assert smaller["corpus"] == "pydoc" and result["corpus"] == "stdlib-docs"  # the default
    assert smaller["source"] != result["source"] and smaller["documents"] == 2


class LosslessVQ(torch.nn.Module):
    """A stand-in tokenizer whose reconstruction is the input: the round trip must be exact."""

    codebook_size = 4
    downsample = 4

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.pixels: torch.Tensor | None = None

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.pixels = pixels
        b, _, h, w = pixels.shape
        return torch.zeros((b, h // self.downsample, w // self.downsample), dtype=torch.long)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.pixels


def test_tokenizer_roundtrip_is_perfect_for_a_lossless_tokenizer(tiny_pipe: Pipeline) -> None:
    records, stats = evaluate_roundtrip(
        LosslessVQ(), [(32, 32), (48, 32)], scenes_per_size=3, progress=False
    )
    summary = summarize_tokenizer(records, stats, LosslessVQ.codebook_size)
    assert summary["roundtrip"] == 1.0 and summary["parser"] == 1.0
    # only the reference uint8 truncation of decoded pixels is lost (some values drop by one)
    assert summary["psnr_min"] > 60.0
    assert summary["codes_used"] == 1 and summary["usage"] == 0.25
    assert list(summary["per_size"]) == ["32x32", "48x32"]
    # the tiny random VQGAN reconstructs nothing recognisable
    records, stats = evaluate_roundtrip(tiny_pipe.vq, [(32, 32)], scenes_per_size=3, progress=False)
    random_vq = summarize_tokenizer(records, stats, tiny_pipe.vq.codebook_size)
    assert random_vq["roundtrip"] == 0.0 and random_vq["psnr"] < 20.0
    with pytest.raises(ConfigError, match="factor"):
        evaluate_roundtrip(tiny_pipe.vq, [(34, 32)], scenes_per_size=1, progress=False)


def test_markdown_and_grid_from_hand_made_results() -> None:
    from liquidgen.evaluation.t2i import T2IRecord, T2ISample

    results = {
        "command": "liquidgen eval all --seed 0",
        "t2i": {
            "sizes": ["32x32"],
            "images_per_prompt": 4,
            "seen": {
                "overall": 0.75,
                "per_tag": {"colors": 0.5, "counting": 1.0},
                "counts": {"colors": 4, "counting": 4},
                "per_size": {},
            },
        },
        "text": {
            "perplexity": 12.3456,
            "bits_per_byte": 0.91234,
            "documents": 2,
            "tokens": 100,
            "bytes": 420,
        },
    }
    markdown = report.markdown_report(results)
    assert (
        "| text to image, seen compositions | GenEval-style overall, mean of 2 categories (8 images) | 0.750 |"
        in markdown
    )
    assert "| colours | 0.500 |" in markdown and "| **overall** | **0.750** |" in markdown
    assert "| text, held-out real text | perplexity (2 documents, 100 tokens) | 12.35 |" in markdown
    assert "| text, held-out real text | bits per byte (420 bytes) | 0.912 |" in markdown
    assert (
        report.to_json({"x": 1 / 3, "y": [math.pi]})
        == '{\n  "x": 0.333333,\n  "y": [\n    3.141593\n  ]\n}\n'
    )

    red = Image.new("RGB", (32, 32), (215, 35, 35))
    samples = [
        T2ISample(T2IRecord("seen", "colors", "a red circle", "32x32", 0, 0, True, ()), red),
        T2ISample(T2IRecord("heldout", "colors", "a purple circle", "32x32", 0, 1, False, ()), red),
    ]
    grid = np.asarray(report.sample_grid(samples))
    green, wrong = np.array(report.CORRECT_COLOR), np.array(report.WRONG_COLOR)
    assert (grid == green).all(-1).any() and (grid == wrong).all(-1).any()
    assert (grid == np.array([215, 35, 35])).all(-1).sum() == 2 * (32 * 5) ** 2  # upscaled x5
    with pytest.raises(ConfigError):
        report.sample_grid([])


def test_help_states_the_real_defaults() -> None:
    """The CLI's help is written without importing the task modules; keep it in step."""
    from liquidgen.evaluation import cli, t2i, text, tokenizer, vqa

    for phrase in (
        f"(t2i; default {t2i.DEFAULT_PROMPTS_PER_TAG})",
        f"default {vqa.DEFAULT_WORLD_QUESTIONS} per world source",
        f"{vqa.DEFAULT_EASY_VQA_QUESTIONS} evenly spaced easy-VQA",
        f"(tokenizer; default {tokenizer.DEFAULT_SCENES_PER_SIZE})",
    ):
        assert phrase in cli.LIMIT_HELP
    assert f"(t2i, default {t2i.DEFAULT_PROMPT_BATCH})" in cli.BATCH_HELP
    assert f"(vqa, default {vqa.DEFAULT_ANSWER_BATCH})" in cli.BATCH_HELP
    assert f"(text, default {text.DEFAULT_TEXT_BATCH})" in cli.BATCH_HELP
    assert f"(tokenizer, default {tokenizer.DEFAULT_TOKENIZER_BATCH})" in cli.BATCH_HELP
    assert f"(default {t2i.DEFAULT_IMAGES_PER_PROMPT})" in cli.N_HELP
