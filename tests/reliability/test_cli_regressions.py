"""Issue 17, case by case: every bad input is one line on stderr with exit status 2, and the
file system is as it was (no partial output, no user file touched, no temporaries left).

Each case runs the real CLI in a subprocess (``python -m liquidgen``). The resource cases run
under an address-space limit (``prlimit --as``) in which the same command on a normal input
succeeds, so "bounded" means the refusal comes before any large allocation.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from .helpers import (
    assert_one_line_error,
    can_drop_privileges,
    cli_env,
    run_cli,
    snapshot,
)

pytestmark = pytest.mark.slow  # about 40 CLI subprocesses: 2-3 minutes on 2 busy cores

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "liquidgen-tiny"
ADDRESS_SPACE = 1_500_000_000  # bytes: ample for the tiny models, far below any huge request


@pytest.fixture
def work(tmp_path: Path, assets: Path) -> Path:
    """A fresh folder holding links to the shared assets and a user's files to protect."""
    for name in ("vq", "avq", "pvq", "img.png", "codes.jsonl", "base"):
        (tmp_path / name).symlink_to(assets / name)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("the user's file\n")
    (tmp_path / "afile").write_text("a user's file named like an output\n")
    return tmp_path


def _check(work: Path, *args: str, fragments: tuple[str, ...] = (), **kw: object) -> str:
    """Run a failing case; assert one line, status 2, and an unchanged folder."""
    before = snapshot(work)
    line = assert_one_line_error(run_cli(*args, cwd=work, **kw), *fragments)  # type: ignore[arg-type]
    assert snapshot(work) == before
    return line


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ------------------------------------------------------------------ 1. bounded resources
@pytest.mark.parametrize(
    "args",
    [
        ("tokenizer", "encode", "--tokenizer", "vq", "img.png", "--size", "100000x100000",
         "-o", "c.jsonl"),
        ("world", "make", "--n", "1", "--size", "100000x100000", "--seed", "0", "--out", "w"),
        ("eval", "tokenizer", "--limit", "1", "--sizes", "100000x100000"),
        ("tokenizer", "decode", "--tokenizer", "vq", "big.jsonl", "-o", "big.png"),
        ("tokenizer", "roundtrip", "--tokenizer", "vq", "bomb.png", "-o", "r.png"),
        ("world", "parse", "bomb.png"),
    ],
    ids=["encode-size", "world-size", "eval-sizes", "decode-grid", "roundtrip-bomb", "parse-bomb"],
)  # fmt: skip
def test_huge_requests_are_refused_within_bounded_memory(work: Path, args: tuple[str]) -> None:
    grid = [[0] * 1500] * 1500
    (work / "big.jsonl").write_text(json.dumps({"grid": [1500, 1500], "codes": grid}) + "\n")
    (work / "bomb.png").write_bytes(_png_header(20000, 20000))
    assert (work / "bomb.png").stat().st_size < 1_000_000
    _check(work, *args, address_space=ADDRESS_SPACE)


def test_the_same_commands_work_under_the_same_limit(work: Path) -> None:
    """The control: a normal input succeeds under ``ADDRESS_SPACE``."""
    result = run_cli(
        "tokenizer", "roundtrip", "--tokenizer", "vq", "img.png", "-o", "r.png",
        cwd=work, address_space=ADDRESS_SPACE,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (work / "r.png").is_file()


def test_pixel_limit_is_configurable(work: Path) -> None:
    env = cli_env(HOME=str(work), LIQUIDGEN_MAX_MEGAPIXELS="0.001")
    line = _check(
        work, "world", "make", "--n", "1", "--size", "64x64", "--seed", "0", "--out", "w",
        env=env, fragments=("LIQUIDGEN_MAX_MEGAPIXELS",),
    )  # fmt: skip
    assert "0.001 MP" in line


# ------------------------------------------------------------------ 2. user files are never deleted
@pytest.mark.parametrize(
    "args",
    [
        ("tokenizer", "convert", "--from", "avq", "--to", "{}"),
        ("expand", "--base", "base", "--tokenizer", "vq", "--out", "{}"),
        ("world", "make", "--n", "1", "--size", "64x64", "--seed", "0", "--out", "{}"),
        ("import-gguf", "model.gguf", "--out", "{}"),
    ],
    ids=["convert", "expand", "world-make", "import-gguf"],
)
@pytest.mark.parametrize("target", ["notes", "afile"])
def test_foreign_outputs_are_refused(work: Path, args: tuple[str], target: str) -> None:
    (work / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    argv = [a.format(target) for a in args]
    _check(work, *argv, fragments=(target, "--overwrite"))
    assert not list(work.glob(".*old*")) and not list(work.glob(".*.tmp"))


def test_overwrite_replaces_and_own_output_is_replaced(work: Path) -> None:
    result = run_cli(
        "tokenizer", "convert", "--from", "avq", "--to", "notes", "--overwrite", cwd=work
    )
    assert result.code == 0, result.err
    assert sorted(p.name for p in (work / "notes").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    result = run_cli(
        "tokenizer", "convert", "--from", "avq", "--to", "afile", "--overwrite", cwd=work
    )
    assert result.code == 0, result.err
    assert (work / "afile").is_dir()
    result = run_cli("tokenizer", "convert", "--from", "avq", "--to", "notes", cwd=work)  # its own
    assert result.code == 0, result.err
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]
    # 6. every file written has the usual permissions (safetensors alone would write 0600)
    umask = os.umask(0)
    os.umask(umask)
    for file in (work / "notes").iterdir():
        assert file.stat().st_mode & 0o777 == 0o666 & ~umask, file


# ------------------------------------------------------------------ 3. tracebacks -> one line
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("tokenizer", "decode", "--tokenizer", "vq", "codes.jsonl", "-o", "."), "folder"),
        (("tokenizer", "decode", "--tokenizer", "vq", "img.png", "-o", "x.png"), "not UTF-8"),
        (("tokenizer", "decode", "--tokenizer", "vq", "codes.jsonl", "-o", "afile/x.png"), "afile"),
        (("data", "tokenize", "--input", "bad.txt", "--out", "tok"), "not UTF-8"),
        (("data", "tokenize", "--input", "good.txt", "--out", "afile"), "not a folder"),
        (("demo", "--out", "afile"), "not a folder"),
        (("expand", "--base", "tbase", "--tokenizer", "vq", "--out", "e"), "safetensors"),
        (("import-gguf", "fake.gguf", "--out", "g"), "fake.gguf"),
    ],
    ids=["decode-dot", "decode-png", "decode-under-file", "tokenize-utf8", "tokenize-out-file",
         "demo-out-file", "expand-truncated", "import-gguf-fake"],
)  # fmt: skip
def test_bad_files_are_one_line(work: Path, args: tuple[str], fragment: str) -> None:
    (work / "bad.txt").write_bytes(b"hello\n\n\xff\xfe bad\n")
    (work / "good.txt").write_text("a document\n\nanother one\n")
    (work / "fake.gguf").write_text("not a gguf file\n")
    (work / "tbase").mkdir()
    (work / "tbase" / "config.json").write_text('{"model_type": "llama"}\n')
    data = (work / "base" / "model.safetensors").read_bytes()
    (work / "tbase" / "model.safetensors").write_bytes(data[: len(data) // 2])
    _check(work, *args, fragments=(fragment,))


def test_train_out_dir_that_is_a_file(work: Path) -> None:
    _check(
        work, "train", str(REPO / "configs" / "tiny-smoke.yaml"), "out_dir=afile",
        f"model.path={SHIPPED}", fragments=("out_dir", "not a folder"),
    )  # fmt: skip


@pytest.fixture
def readonly() -> Iterator[Path]:
    """A world-readable folder holding ``vq``, ``codes.jsonl``, ``avq`` and a read-only ``ro/``
    (cases run as ``nobody`` when the suite runs as root, for whom nothing is read-only)."""
    if not can_drop_privileges():
        pytest.skip("running as root without setpriv: cannot make a folder read-only")
    root = Path(tempfile.mkdtemp(prefix="liquidgen-ro-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        yield root
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o755)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    "args",
    [
        ("tokenizer", "decode", "--tokenizer", "vq", "codes.jsonl", "-o", "ro/x.png"),
        ("tokenizer", "convert", "--from", "avq", "--to", "ro/new"),
        ("world", "make", "--n", "1", "--size", "64x64", "--seed", "0", "--out", "ro/w"),
        ("data", "tokenize", "--input", "good.txt", "--out", "ro/tok"),
    ],
    ids=["decode", "convert", "world-make", "data-tokenize"],
)
def test_read_only_output_folders(readonly: Path, assets: Path, args: tuple[str]) -> None:
    for name in ("vq", "avq", "codes.jsonl"):
        src = assets / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, readonly / name)
    (readonly / "good.txt").write_text("a document\n")
    for path in readonly.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    (readonly / "ro").mkdir(mode=0o555)
    os.chmod(readonly / "ro", 0o555)
    env = cli_env(HOME=str(readonly / "ro"), HF_HOME=str(readonly / "ro"))
    _check(readonly, *args, as_nobody=os.geteuid() == 0, env=env, fragments=("ro",))


# ------------------------------------------------------------------ 4. value checks
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("eval", "t2i", "--limit", "1", "--seed", "200000000000000000000"), "--seed"),
        (("demo", "--out", "d", "--seed", "200000000000000000000"), "--seed"),
        (("world", "make", "--n", "1", "--size", "64x64", "--seed", "-1", "--out", "w"), "--seed"),
        (("tokenizer", "decode", "--tokenizer", "vq", "float.jsonl", "-o", "o.png"), "integers"),
        (("tokenizer", "decode", "--tokenizer", "vq", "grid.jsonl", "-o", "o.png"), "grid"),
        (("tokenizer", "decode", "--tokenizer", "vq", "range.jsonl", "-o", "o.png"), "[0, 64)"),
        (("demo", "--out", "d", "--width", "7"), "--width"),
        (("tokenizer", "decode", "--tokenizer", "vq", "one.jsonl", "-o", "o.png"), "1x1"),
    ],
    ids=["eval-seed", "demo-seed", "world-seed", "float-codes", "grid-mismatch", "code-range",
         "demo-width", "one-code"],
)  # fmt: skip
def test_values_are_checked(work: Path, args: tuple[str], fragment: str) -> None:
    (work / "float.jsonl").write_text('{"grid": [2, 2], "codes": [[0.5, 1], [1, 1]]}\n')
    (work / "grid.jsonl").write_text('{"grid": [3, 3], "codes": [[0, 1], [1, 1]]}\n')
    (work / "range.jsonl").write_text('{"grid": [1, 2], "codes": [[0, 64]]}\n')
    (work / "one.jsonl").write_text('{"grid": [1, 1], "codes": [[3]]}\n')  # found by the fuzzer
    _check(work, *args, fragments=(fragment,))


# ------------------------------------------------------------------ 5. late failures come first
def test_expand_refuses_a_pickled_tokenizer_before_any_work(work: Path) -> None:
    _check(work, "expand", "--base", "base", "--tokenizer", "pvq", "--out", "e",
           fragments=("vqgan.ckpt", "safely"))  # fmt: skip
    assert not (work / "PWNED").exists()


# ------------------------------------------------------------------ 6. noise and leftovers
def test_malformed_override_is_one_line(work: Path) -> None:
    _check(work, "train", str(REPO / "configs" / "tiny-smoke.yaml"), "optim.lr=[1,",
           fragments=("optim.lr",))  # fmt: skip


def test_failed_tokenize_leaves_no_folder(work: Path) -> None:
    """A dataset whose image is corrupt fails after settings.json was written: nothing stays."""
    (work / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    record = {"image": "broken.png", "captions": ["a red square"]}
    (work / "data.jsonl").write_text(json.dumps(record) + "\n")
    _check(work, "data", "tokenize", "--input", "data.jsonl", "--vqgan", "vq", "--out", "tok")


def test_killed_runs_temporaries_are_cleaned_by_the_next_run(work: Path) -> None:
    dead = work / ".w.999999999-abcdefgh.tmp"  # a pid that cannot exist: its run is gone
    dead.mkdir()
    (dead / "000000.png").write_bytes(b"partial")
    legacy = work / ".w.abcdefgh.tmp"  # an older version's name, a day old
    legacy.mkdir()
    os.utime(legacy, (0, 0))
    live = work / f".w.{os.getpid()}-abcdefgh.tmp"  # a running process's: never touched
    live.mkdir()
    result = run_cli("world", "make", "--n", "1", "--size", "64x64", "--seed", "0", "--out", "w",
                     "--quiet", cwd=work)  # fmt: skip
    assert result.code == 0 and result.err == "", result.err
    assert not dead.exists() and not legacy.exists() and live.exists()
    assert (work / "w" / "metadata.jsonl").is_file()


def test_demo_bad_width_prints_no_progress_bar(work: Path) -> None:
    result = run_cli("demo", "--out", "d", "--width", "24", cwd=work)
    assert_one_line_error(result, "--width 24")
    assert "Loading weights" not in result.err


def test_expand_in_a_pipe_prints_its_result_only(work: Path) -> None:
    """A successful ``expand`` whose stderr is not a terminal: one line on stdout, nothing on
    stderr (before: transformers' "Loading weights" and "Writing model shards" bars and its
    "use mean_resizing=False" notice, 7 lines). The files get the usual permissions."""
    from tiny_models import make_tiny_backbone

    make_tiny_backbone(work / "hf", "llama")
    result = run_cli("expand", "--base", "hf", "--tokenizer", "vq", "--out", "e", cwd=work)
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.startswith("wrote e: image_offset=") and len(result.out.splitlines()) == 1
    umask = os.umask(0)
    os.umask(umask)
    for file in (work / "e").rglob("*"):
        assert file.is_dir() or file.stat().st_mode & 0o777 == 0o666 & ~umask, file


@pytest.mark.parametrize("text", ["null", "5", "[1, 2]", '"vq"'])
def test_json_files_that_are_not_objects(work: Path, text: str) -> None:
    """A tokenizer's ``config.json`` and a checkpoint's ``liquid_layout.json`` that are valid
    JSON but not an object (before: ``TypeError`` tracebacks for null and numbers)."""
    shutil.copytree(work / "vq", work / "jvq")
    (work / "jvq" / "config.json").write_text(text + "\n")
    _check(work, "tokenizer", "encode", "--tokenizer", "jvq", "img.png", "-o", "c.jsonl",
           fragments=("config.json", "JSON object"))  # fmt: skip
    (work / "jm").mkdir()
    for entry in SHIPPED.iterdir():
        if entry.name != "liquid_layout.json":
            (work / "jm" / entry.name).symlink_to(entry)
    (work / "jm" / "liquid_layout.json").write_text(text + "\n")
    _check(work, "generate", "a red circle", "-o", "o.png", "--width", "32", "--height", "32",
           "--model", "jm", fragments=("liquid_layout.json",))  # fmt: skip


def test_layout_values_that_are_not_integers(work: Path) -> None:
    (work / "jm").mkdir()
    for entry in SHIPPED.iterdir():
        if entry.name != "liquid_layout.json":
            (work / "jm" / entry.name).symlink_to(entry)
    layout = json.loads((SHIPPED / "liquid_layout.json").read_text())
    for key, value in (("image_offset", 2048.5), ("boi_id", True), ("downsample", "16")):
        (work / "jm" / "liquid_layout.json").write_text(json.dumps({**layout, key: value}))
        _check(work, "generate", "a red circle", "-o", "o.png", "--width", "32", "--height",
               "32", "--model", "jm", fragments=("liquid_layout.json", key, "integer"))  # fmt: skip


# ------------------------------------------------------------------ the inference commands
PROMPT = "a red circle"
SMALL = ("--width", "32", "--height", "32")  # a 2x2 code grid of the shipped model: quick


@pytest.fixture
def models(work: Path) -> Path:
    """``work`` with two model folders: ``nomodel``, the shipped model's JSON files without
    its weights (a case refused with its own message on it was refused before any model
    loading), and ``badtpl``, the shipped model with a chat template jinja cannot compile."""
    (work / "nomodel").mkdir()
    for name in ("config.json", "liquid_layout.json", "liquid_generation.json"):
        shutil.copy(SHIPPED / name, work / "nomodel" / name)
    (work / "badtpl").mkdir()
    for entry in SHIPPED.iterdir():
        if entry.name != "chat_template.jinja":
            (work / "badtpl" / entry.name).symlink_to(entry)
    (work / "badtpl" / "chat_template.jinja").write_text("{% for m in messages %}{{ m }")
    (work / "o_1.png").mkdir()  # a folder where `generate -o o.png -n 3` writes its image 1
    (work / "bomb.png").write_bytes(_png_header(20000, 20000))
    return work


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("generate", PROMPT, "-o", "o.png", "--seed", "200000000000000000000"), "--seed"),
        (("generate", PROMPT, "-o", "o.png", "--seed", "-1"), "--seed"),
        (("generate", PROMPT, "-o", "o.png", "--seed", str(2**63 - 1), "-n", "2"), "2**63 - 1"),
        (("generate", PROMPT, "-o", "o.png", "--cfg", "inf"), "--cfg"),
        (("generate", PROMPT, "-o", "o.png", "--temperature", "inf"), "--temperature"),
        (("generate", PROMPT, "-o", "o.png", "--top-p", "nan"), "--top-p"),
        (("ask", "img.png", "What?", "--temperature", "inf"), "--temperature"),
        (("ask", "img.png", "What?", "--seed", "200000000000000000000"), "--seed"),
        (("generate", PROMPT, "-o", "o.png", "--width", "24", "--height", "32"), "multiples of 16"),
        (("generate", PROMPT, "-o", "o.png", "--width", "100000", "--height", "100000"),
         "limit per image"),
        (("generate", PROMPT, "-o", "o.png", "--width", "100000"), "limit per image"),
        (("generate", PROMPT, "-o", "notes"), "folder"),
        (("generate", PROMPT, "-o", "afile/o.png"), "afile"),
        (("generate", PROMPT, "-o", "o.png", "-n", "3"), "o_1.png"),
        (("generate", PROMPT, "-o", "o.png", "-n", "1000", "--grid"), "--grid"),
        (("generate", "a red \udcff circle", "-o", "o.png"), "not valid UTF-8"),
        (("chat", "--system", "be \udcff brief"), "not valid UTF-8"),
        (("ask", "bomb.png", "What?"), "decoding limit"),
        (("ask", "notes", "What?"), "is a folder"),
    ],
    ids=["generate-seed", "generate-seed-negative", "generate-seed-plus-n", "generate-cfg-inf",
         "generate-temperature-inf", "generate-top-p-nan", "ask-temperature-inf", "ask-seed",
         "generate-factor", "generate-pixels", "generate-width-only", "generate-out-folder",
         "generate-out-under-file", "generate-out-i-folder", "generate-grid-limit",
         "generate-prompt-utf8", "chat-system-utf8", "ask-bomb", "ask-folder"],
)  # fmt: skip
def test_inference_input_is_checked_before_the_model_loads(
    models: Path, args: tuple[str], fragment: str
) -> None:
    """Each mistake is refused before any model loading (``nomodel`` has no weights) and
    within bounded memory (the decompression bomb)."""
    _check(models, *args, "--model", "nomodel", fragments=(fragment,),
           address_space=ADDRESS_SPACE)  # fmt: skip


def test_chat_stdin_that_is_not_utf8(models: Path) -> None:
    before = snapshot(models)
    result = run_cli("chat", "--model", "nomodel", cwd=models, stdin=b"hello \xff\xfe there\n")
    assert_one_line_error(result, "stdin", "not valid UTF-8", "0xff")
    assert snapshot(models) == before


def test_generate_with_a_damaged_chat_template(models: Path) -> None:
    _check(models, "generate", PROMPT, "-o", "o.png", *SMALL, "--model", "badtpl",
           fragments=("badtpl", "chat template"))  # fmt: skip


@pytest.mark.parametrize("n", ["1", "2"])
def test_generate_into_a_read_only_folder(readonly: Path, n: str) -> None:
    """Refused before the model loads (before: after the whole generation)."""
    (readonly / "ro").mkdir(mode=0o555)
    os.chmod(readonly / "ro", 0o555)
    env = cli_env(HOME=str(readonly / "ro"), HF_HOME=str(readonly / "ro"))
    _check(readonly, "generate", PROMPT, "-o", "ro/o.png", "-n", n, "--model", "/nonexistent",
           as_nobody=os.geteuid() == 0, env=env, fragments=("ro", "cannot write"))  # fmt: skip


def test_generate_cleans_a_killed_runs_temporaries_and_writes_every_part(work: Path) -> None:
    """Stale temporaries of ``out_i`` (a dead pid's, an older version's a day old) go, a live
    run's stay; with one image per part (``LIQUIDGEN_MAX_BATCH=1``) every image is written."""
    dead = work / ".o_0.999999999-abcdefgh.png.tmp"
    dead_other = work / ".o_7.999999999-abcdefgh.png.tmp"  # of an earlier, larger -n
    legacy = work / ".o_1.abcdefgh.png.tmp"
    live = work / f".o_0.{os.getpid()}-abcdefgh.png.tmp"
    for path in (dead, dead_other, legacy, live):
        path.write_bytes(b"partial")
    os.utime(legacy, (0, 0))
    env = cli_env(HOME=str(work), LIQUIDGEN_MAX_BATCH="1")
    result = run_cli("generate", PROMPT, "-o", "o.png", "-n", "3", *SMALL, "--model", SHIPPED,
                     "--quiet", cwd=work, env=env, timeout=600)  # fmt: skip
    assert result.code == 0 and result.err == "", result.err
    assert result.out.splitlines() == [f"wrote o_{j}.png (32x32, seed {j})" for j in range(3)]
    assert not dead.exists() and not dead_other.exists() and not legacy.exists()
    assert live.exists()
    for j in range(3):
        with Image.open(work / f"o_{j}.png") as image:
            image.load()
            assert image.size == (32, 32)


def test_generate_a_million_images_streams_parts_within_bounded_memory(work: Path) -> None:
    """``generate -n 1000000`` (before: one batch of ~78 GB) draws ``LIQUIDGEN_MAX_BATCH``
    images at a time under the address-space limit and writes each part before drawing the
    next: two parts are on disk, complete, while the run goes on (then it is killed)."""
    env = cli_env(HOME=str(work), LIQUIDGEN_MAX_BATCH="3")
    command = ["prlimit", f"--as={ADDRESS_SPACE}", "--", sys.executable, "-m", "liquidgen",
               "generate", PROMPT, "-o", "o.png", "-n", "1000000", *SMALL, "--model",
               str(SHIPPED)]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=work, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (work / "o_5.png").exists():  # the second part is written
            assert proc.poll() is None, proc.communicate()  # no error, no out-of-memory
            assert time.monotonic() < deadline, "no second part within 10 minutes"
            time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert b"Traceback" not in err, err.decode()[-3000:]
    lines = out.decode().splitlines()
    assert lines[:6] == [f"wrote o_{j}.png (32x32, seed {j})" for j in range(6)]
    for j in range(6):
        with Image.open(work / f"o_{j}.png") as image:
            image.load()  # complete: written whole, then renamed
            assert image.size == (32, 32)


def test_image_request_parts_keep_order_and_seeds() -> None:
    """What ``generate`` runs part by part: at most ``max_images`` each, every image once,
    in order, with its own seed."""
    from liquidgen.inference.request import ImageRequest
    from liquidgen.inference.sampling import ImageSampling

    def request(prompts: int, n: int) -> ImageRequest:
        return ImageRequest(
            prompts=tuple(f"p{i}" for i in range(prompts)),
            cond_ids=tuple((i, 3) for i in range(prompts)),
            uncond_ids=(5, 3), width=32, height=32, grid=(2, 2), n=n, seed=10,
            sampling=ImageSampling(),
        )  # fmt: skip

    for prompts, n, most in [(1, 7, 3), (1, 2, 256), (3, 5, 2), (4, 2, 5), (2, 1, 1)]:
        whole = request(prompts, n)
        images = []  # (prompt, seed) of every image, in the order written
        for part in whole.chunks(most):
            assert 1 <= part.n_images <= most
            images += [(p, part.seed + i * part.n + j)
                       for i, p in enumerate(part.prompts) for j in range(part.n)]  # fmt: skip
        assert images == [(f"p{i}", 10 + i * n + j) for i in range(prompts) for j in range(n)]


def test_data_tokenize_checks_the_pixels_of_images_kept_at_their_size(work: Path) -> None:
    """Without ``--size`` every image is encoded as it is: within the pixel limit."""
    record = {"image": "img.png", "captions": ["a red square"]}
    (work / "data.jsonl").write_text(json.dumps(record) + "\n")
    env = cli_env(HOME=str(work), LIQUIDGEN_MAX_MEGAPIXELS="0.001")  # img.png is 32x32
    _check(work, "data", "tokenize", "--input", "data.jsonl", "--vqgan", "vq", "--out", "tok",
           env=env, fragments=("32x32", "limit per image"))  # fmt: skip
