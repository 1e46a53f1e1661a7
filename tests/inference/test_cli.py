"""``liquidgen generate | ask | chat`` in-process (``liquidgen.cli.main``), plus the real
console script once."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquidgen.cli import main
from liquidgen.errors import LiquidgenError
from liquidgen.inference.pipeline import Pipeline

from .conftest import HEIGHT, WIDTH

PROMPT = "a red circle on the left of the picture."
LONG_PROMPT = "red " * 5000  # more tokens than the 4096-token context
SIZE = ["--width", str(WIDTH), "--height", str(HEIGHT)]


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal (for the interactive chat)."""

    def isatty(self) -> bool:
        return True


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _streamed(method: Callable[..., str], *args: object, **kwargs: object) -> tuple[str, str]:
    """``(text streamed, text returned)`` of a pipeline call: the CLI prints the former."""
    pieces: list[str] = []
    reply = method(*args, stream=pieces.append, **kwargs)
    return "".join(pieces), reply


def _same(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- generate
def test_generate_writes_n_seeded_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, liquid7b_dir: Path, pipe: Pipeline
) -> None:
    argv = ["generate", PROMPT, "-o", str(tmp_path / "out.png"), "--model", str(liquid7b_dir)]
    code, out, _ = _run(capsys, [*argv, *SIZE, "-n", "3", "--seed", "2"])
    assert code == 0
    paths = [tmp_path / f"out_{j}.png" for j in range(3)]
    assert sorted(tmp_path.iterdir()) == paths
    assert out.splitlines() == [
        f"wrote {p} ({WIDTH}x{HEIGHT}, seed {2 + j})" for j, p in enumerate(paths)
    ]
    expected = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=3, seed=2)
    for path, image in zip(paths, expected, strict=True):
        assert _same(Image.open(path), image)
    # One image: exactly the -o path, the first image of the same seed.
    code, _, _ = _run(
        capsys,
        [
            "generate",
            PROMPT,
            "-o",
            str(tmp_path / "one.jpg"),
            "--model",
            str(liquid7b_dir),
            *SIZE,
            "--seed",
            "2",
        ],
    )
    assert code == 0 and Image.open(tmp_path / "one.jpg").size == (WIDTH, HEIGHT)


def test_generate_grid_tiles_the_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, liquid7b_dir: Path, pipe: Pipeline
) -> None:
    out = tmp_path / "grid.png"
    argv = ["generate", PROMPT, "-o", str(out), "--model", str(liquid7b_dir), *SIZE]
    code, stdout, _ = _run(capsys, [*argv, "-n", "3", "--grid"])
    assert code == 0 and sorted(tmp_path.iterdir()) == [out]
    assert stdout.strip() == f"wrote {out} (3 images of {WIDTH}x{HEIGHT}, seeds 0-2)"
    grid = Image.open(out).convert("RGB")
    assert grid.size == (2 * WIDTH, 2 * HEIGHT)  # 2 columns x 2 rows, the last cell empty
    images = pipe.generate_image(PROMPT, width=WIDTH, height=HEIGHT, n=3)
    for j, image in enumerate(images):
        x, y = (j % 2) * WIDTH, (j // 2) * HEIGHT
        assert _same(grid.crop((x, y, x + WIDTH, y + HEIGHT)), image)


def test_generate_progress_bar_shows_tokens_per_second(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    liquid7b_dir: Path,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # tqdm draws on terminals only
    argv = ["generate", PROMPT, "-o", str(tmp_path / "x.png"), "--model", str(liquid7b_dir)]
    code, _, err = _run(capsys, [*argv, *SIZE, "-n", "2"])
    assert code == 0
    assert "image tokens" in err and "16/16" in err and "tok/s" in err  # 2 images x 2x4 codes
    code, _, err = _run(capsys, [*argv, *SIZE, "--quiet"])
    assert code == 0 and err == ""


def test_generate_leaves_no_partial_file_when_interrupted(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    liquid7b_dir: Path,
) -> None:
    def half_written(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", half_written)
    argv = ["generate", PROMPT, "-o", str(tmp_path / "x.png"), "--model", str(liquid7b_dir)]
    code, _, err = _run(capsys, [*argv, *SIZE])
    assert code == 130 and err == "liquidgen: interrupted\n"
    assert list(tmp_path.iterdir()) == []  # neither the image nor its temporary file


# --------------------------------------------------------------------------- ask and chat
def test_ask_streams_the_answer_and_captions_without_question(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, talker_dir: Path, talker: Pipeline
) -> None:
    image = tmp_path / "picture.png"
    picture = talker.generate_image(PROMPT, width=WIDTH, height=HEIGHT, seed=5)[0]
    picture.save(image)
    question = "Describe the picture."
    ask = ["ask", str(image), question, "--model", str(talker_dir)]
    code, out, err = _run(capsys, [*ask, "--max-new-tokens", "12"])
    assert code == 0 and err == ""
    streamed, answer = _streamed(talker.answer, picture, question, max_new_tokens=12)
    assert answer and out == streamed + "\n"
    caption = ["ask", str(image), "--model", str(talker_dir), "--max-new-tokens", "10"]
    code, out, _ = _run(capsys, caption)
    assert code == 0 and out == _streamed(talker.caption, picture, max_new_tokens=10)[0] + "\n"
    code, out, _ = _run(
        capsys, [*ask, "--temperature", "0.8", "--seed", "3", "--max-new-tokens", "8"]
    )
    sampled = dict(greedy=False, temperature=0.8, seed=3, max_new_tokens=8)
    assert code == 0 and out == _streamed(talker.answer, picture, question, **sampled)[0] + "\n"
    greedy = _streamed(talker.answer, picture, question, max_new_tokens=8)[0]
    assert out != greedy + "\n"  # --temperature switched sampling on


def test_chat_one_turn_from_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    talker_dir: Path,
    talker: Pipeline,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello there\n"))
    code, out, err = _run(capsys, ["chat", "--model", str(talker_dir), "--max-new-tokens", "12"])
    assert code == 0 and err == ""
    streamed, reply = _streamed(
        talker.chat, [{"role": "user", "content": "hello there"}], max_new_tokens=12
    )
    assert reply and out == streamed + "\n"


def test_interactive_chat_keeps_history_resets_and_survives_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    talker_dir: Path,
    talker: Pipeline,
) -> None:
    lines = ["hello there", "What is a square?", LONG_PROMPT, "/reset", "What is a square?"]
    monkeypatch.setattr(sys, "stdin", _Terminal("\n".join(lines) + "\n"))  # then end of input
    code, out, err = _run(capsys, ["chat", "--model", str(talker_dir), "--max-new-tokens", "8"])
    assert code == 0
    user1, user2 = ({"role": "user", "content": c} for c in lines[:2])
    shown1, reply1 = _streamed(talker.chat, [user1], max_new_tokens=8)
    assistant1 = {"role": "assistant", "content": reply1}
    shown2, reply2 = _streamed(talker.chat, [user1, assistant1, user2], max_new_tokens=8)
    shown3, reply3 = _streamed(talker.chat, [user2], max_new_tokens=8)  # after /reset
    assert len({reply1, reply2, reply3}) == 3  # the history changed the second reply
    help_line, transcript = out.split("\n", 1)
    assert "/reset" in help_line
    assert transcript == f"> {shown1}\n> {shown2}\n> > (conversation cleared)\n> {shown3}\n> \n"
    assert err.startswith("liquidgen: error: the prompt is ") and err.count("\n") == 1


# --------------------------------------------------------------------------- bad input
def _corrupt(liquid7b_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "corrupt"
    shutil.copytree(liquid7b_dir, folder)
    (folder / "config.json").write_text("{ not json")
    return folder


Api = Callable[[Pipeline, dict[str, str]], object]


def _image(**kwargs: object) -> Api:
    return lambda pipe, _fill: pipe.generate_image(kwargs.pop("prompt", PROMPT), **kwargs)


def _load(folder: str) -> Api:
    return lambda _pipe, fill: Pipeline.from_pretrained(folder.format(**fill))


# (replaced parts of `generate PROMPT -o OUT --model DIR --width 16 --height 8`, more arguments,
#  the error line (regex; {tmp} is the test's folder), the same mistake through the API)
GENERATE_CASES: list[tuple[dict[str, str], list[str], str, Api | None]] = [
    ({"prompt": ""}, [], "the prompt is empty", _image(prompt="")),
    ({"prompt": " \n "}, [], "the prompt is empty", _image(prompt=" ")),
    (
        {"prompt": LONG_PROMPT},
        [],
        r"the prompt is \d+ tokens long; the model's context is 4096 tokens",
        _image(prompt=LONG_PROMPT, width=WIDTH, height=HEIGHT),
    ),
    ({}, ["--temperature", "0"], "temperature must be > 0, got 0.0", _image(temperature=0.0)),
    ({}, ["--temperature", "-1"], "temperature must be > 0, got -1.0", _image(temperature=-1.0)),
    ({}, ["--top-p", "0"], r"top_p must lie in \(0, 1\], got 0.0", _image(top_p=0.0)),
    ({}, ["--top-p", "1.5"], r"top_p must lie in \(0, 1\], got 1.5", _image(top_p=1.5)),
    ({}, ["--top-k", "-1"], "top_k must be an integer >= 0", _image(top_k=-1)),
    ({}, ["--cfg", "-1"], "cfg_scale must be >= 0, got -1.0", _image(cfg_scale=-1.0)),
    ({}, ["-n", "0"], r"n \(images per prompt\) must be an integer >= 1", _image(n=0)),
    (
        {"width": "18"},
        [],
        "width and height must be positive multiples of 4 .* got 18x8",
        _image(width=18, height=HEIGHT),
    ),
    (
        {"width": "512", "height": "512"},
        [],
        "512x512 needs 16384 image tokens, too many for the model's context of 4096 tokens",
        _image(width=512, height=512),
    ),
    ({"out": "{tmp}/missing/out.png"}, [], "{tmp}/missing: output folder does not exist", None),
    ({"out": "{tmp}/out.xyz"}, [], "{tmp}/out.xyz: unsupported image extension '.xyz'", None),
    ({"out": "{tmp}"}, [], "{tmp}: is a folder", None),
    (
        {"model": "{tmp}/nothing"},
        [],
        "{tmp}/nothing: model folder not found",
        _load("{tmp}/nothing"),
    ),
    (
        {"model": "{corrupt}"},
        [],
        "{corrupt}: cannot load the model or tokenizer",
        _load("{corrupt}"),
    ),
    ({"model": ""}, [], "shipped model 'liquidgen-tiny' not found at {tmp}/liquidgen-tiny", None),
    ({}, ["--device", "cuda:x"], "unknown device 'cuda:x'", None),
]


@pytest.mark.parametrize(("parts", "extra", "message", "api"), GENERATE_CASES)
def test_generate_bad_input_is_one_line_exit_2_no_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    liquid7b_dir: Path,
    pipe: Pipeline,
    parts: dict[str, str],
    extra: list[str],
    message: str,
    api: Api | None,
) -> None:
    fill = {"tmp": str(tmp_path), "corrupt": str(tmp_path / "corrupt")}
    _corrupt(liquid7b_dir, tmp_path)
    monkeypatch.setenv("LIQUIDGEN_MODELS", str(tmp_path))  # no shipped model there
    call = {
        "prompt": PROMPT,
        "out": str(tmp_path / "out.png"),
        "model": str(liquid7b_dir),
        "width": str(WIDTH),
        "height": str(HEIGHT),
    }
    call |= {key: value.format(**fill) for key, value in parts.items()}
    argv = ["generate", call["prompt"], "-o", call["out"], "--width", call["width"]]
    argv += ["--height", call["height"], *(["--model", call["model"]] if call["model"] else [])]
    before = sorted(tmp_path.rglob("*"))
    code, out, err = _run(capsys, [*argv, *extra])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert re.match("liquidgen: error: " + message.format(**fill), err), err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temporary file
    if api is not None:  # the API raises the very same message
        with pytest.raises(LiquidgenError) as info:
            api(pipe, fill)
        assert err == f"liquidgen: error: {info.value}\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", "{broken}", "What?"], "{broken}: not an image"),
        (["ask", "{tmp}/missing.png", "What?"], "{tmp}/missing.png: no such file"),
        (["ask", "{image}", " "], "the question is empty"),
        (["ask", "{image}", "What?", "--temperature", "0"], "temperature must be > 0, got 0.0"),
        (["ask", "{image}", "What?", "--top-k", "-2"], "top_k must be an integer >= 0"),
        (
            ["ask", "{image}", "What?", "--max-new-tokens", "0"],
            "max_new_tokens must be an integer >= 1",
        ),
        (
            ["ask", "{image}", "What?", "--model", "{tmp}/nothing"],
            "{tmp}/nothing: model folder not found",
        ),
        (["chat", "--top-p", "2"], r"top_p must lie in \(0, 1\], got 2.0"),
        (["chat", "--image", "{broken}"], "{broken}: not an image"),
        (["chat"], "the message is empty"),  # nothing on stdin
    ],
)
def test_ask_and_chat_bad_input(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    liquid7b_dir: Path,
    argv: list[str],
    message: str,
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    image = tmp_path / "image.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(image)
    fill = dict(tmp=str(tmp_path), broken=str(broken), image=str(image))
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    argv = [a.format(**fill) for a in argv]
    if "--model" not in argv:
        argv += ["--model", str(liquid7b_dir)]
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert re.match("liquidgen: error: " + message.format(**fill), err), err


def test_help_of_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command, flags in [
        ("generate", ["--width", "--cfg", "--top-k", "--grid", "--seed", "--dtype", "tok"]),
        ("ask", ["QUESTION", "--sample", "--max-new-tokens", "caption"]),
        ("chat", ["--system", "--image", "/reset", "stdin"]),
    ]:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for flag in flags:
            assert flag in text, (command, flag)


# --------------------------------------------------------------------------- the real console script
def test_console_script_and_light_import(tmp_path: Path, liquid7b_dir: Path) -> None:
    script = Path(sys.executable).with_name("liquidgen")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "cat.png"
    done = subprocess.run(
        [str(script), "generate", "a cat", "-o", str(out), "--model", str(liquid7b_dir), *SIZE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out} ({WIDTH}x{HEIGHT}, seed 0)"
    assert Image.open(out).size == (WIDTH, HEIGHT)
    light = subprocess.run(
        [sys.executable, "-c", "import sys, liquidgen; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert light.stdout.strip() == "False"
