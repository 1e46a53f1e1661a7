"""Tokenizer training (:mod:`liquidgen.tokenizer.training`): training, exact resume, data and
config, and the ``tokenizer train`` / ``tokenizer eval`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from liquidgen.cli import main
from liquidgen.errors import ConfigError, ImageReadError
from liquidgen.tokenizer import VQGAN
from liquidgen.tokenizer.evaluate import evaluate_tokenizer, to_uint8_tensor
from liquidgen.tokenizer.training import ImageBank, load_vq_config, nearest_size, train_vqgan
from liquidgen.tokenizer.training.trainer import VQTrainer

TINY = Path(__file__).resolve().parents[2] / "configs" / "tokenizer-tiny.yaml"
WORLD = TINY.with_name("tokenizer-world.yaml")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: faster than two on a busy 2-core machine, and the same numbers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_shapes(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Synthetic PNGs: a few random rectangles and ellipses on a random background."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(150, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
            box = (x0, y0, x0 + int(rng.integers(6, 16)), y0 + int(rng.integers(6, 16)))
            fill = tuple(int(v) for v in rng.integers(0, 200, 3))
            (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=fill)
        paths.append(folder / f"img_{i:02d}.png")
        img.save(paths[-1])
    return paths


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ training
def test_tiny_world_training_reduces_loss_and_exports(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = load_vq_config(TINY, [f"output.run_dir={run}", "train.steps=30"])
    result = train_vqgan(cfg, progress=False)
    log = read_log(run)
    assert [r["step"] for r in log] == [10, 20, 30]
    first, last = log[0], log[-1]
    assert last["l1"] < 0.5 * first["l1"]
    assert last["l2"] < 0.5 * first["l2"]
    assert last["psnr"] > first["psnr"] + 4.0
    assert sum(r["restarted"] for r in log) > 0  # dead codes were moved
    # The export is a plain tokenizer folder with the configured architecture.
    assert result.export_dir == run / "final"
    model = VQGAN.from_pretrained(result.export_dir)
    assert model.config == cfg.model
    assert result.held_out is not None and result.held_out.images == cfg.data.eval_images
    assert result.held_out.psnr > 12.0
    assert result.held_out.usage > 0.5
    saved = json.loads((run / "eval.json").read_text())
    assert saved["psnr"] == pytest.approx(result.held_out.psnr)
    # save_every=20 plus the last step; keep_last=2 keeps both.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000020",
        "step-00000030",
    ]


def _state(run: Path, step: int) -> dict[str, torch.Tensor]:
    ckpt = run / "checkpoints" / f"step-{step:08d}"
    tensors = dict(load_file(str(ckpt / "tokenizer" / "model.safetensors")))
    tensors |= {
        f"disc.{k}": v for k, v in load_file(str(ckpt / "discriminator.safetensors")).items()
    }
    tensors |= {
        f"state.{k}": v for k, v in load_file(str(ckpt / "train_state.safetensors")).items()
    }
    optim = torch.load(ckpt / "optimizer.pt", weights_only=True)
    for name in ("optimizer", "disc_optimizer"):
        for idx, st in optim[name]["state"].items():
            tensors |= {
                f"{name}.{idx}.{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)
            }
    return tensors


@pytest.mark.usefixtures("native_bf16")
def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path) -> None:
    """Folder data with two sizes, bf16, EMA codebook, the GAN on: resumed in the same process,
    a run is bit-identical (a new process agrees to ~1e-7 only, docs/tokenizer.md)."""
    write_shapes(tmp_path / "imgs", [(32, 32)] * 6 + [(60, 40)] * 6)
    common = [
        "data.source=folder",
        f"data.path={tmp_path / 'imgs'}",
        "train.steps=16",
        "train.batch_size=4",
        "train.bf16=true",
        "codebook.window=4",
        "codebook.ema_decay=0.9",
        "gan.enabled=true",
        "gan.start_step=6",
        "gan.ndf=16",
        "gan.n_layers=2",
        "output.save_every=4",
        "output.log_every=4",
    ]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = train_vqgan(
        load_vq_config(TINY, [*common, f"output.run_dir={full_dir}"]), progress=False
    )
    cut_cfg = load_vq_config(TINY, [*common, f"output.run_dir={cut_dir}"])
    stopped = train_vqgan(cut_cfg, until=12, progress=False)
    assert stopped.export_dir is None and stopped.step == 12
    # A crash while saving step 12 would leave it unreadable: resume must fall back to step 8.
    (cut_dir / "checkpoints" / "step-00000012" / "optimizer.pt").write_bytes(b"not a checkpoint")
    resumed = train_vqgan(cut_cfg, progress=False)
    assert resumed.resumed_from == 8 and resumed.step == 16
    a, b = _state(full_dir, 16), _state(cut_dir, 16)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    strip = [{k: v for k, v in r.items() if k != "sec_per_step"} for r in read_log(full_dir)]
    assert strip == [{k: v for k, v in r.items() if k != "sec_per_step"} for r in read_log(cut_dir)]
    assert full.last == resumed.last


def test_bf16_falls_back_to_fp32_where_the_cpu_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_vq_config(TINY, ["train.bf16=true", f"output.run_dir={tmp_path}"])
    monkeypatch.setattr("liquidgen.utils.device.bf16_is_native", lambda device: False)
    with pytest.warns(RuntimeWarning, match=r"train\.bf16: .* training in fp32 instead"):
        assert VQTrainer(config).bf16 is False
    monkeypatch.setattr("liquidgen.utils.device.bf16_is_native", lambda device: True)
    assert VQTrainer(config).bf16 is True


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_vqgan(
        load_vq_config(TINY, [f"output.run_dir={run}", "train.steps=4"]), until=2, progress=False
    )
    other = load_vq_config(TINY, [f"output.run_dir={run}", "train.steps=4", "model.n_embed=32"])
    with pytest.raises(ConfigError, match="different model config"):
        train_vqgan(other, progress=False)


def test_old_module_reexports_the_old_names() -> None:
    """``liquidgen.tokenizer.train`` stays importable for one release (docs/tokenizer.md)."""
    from liquidgen.tokenizer import train as old
    from liquidgen.tokenizer import training as new

    assert old.train is new.train_vqgan and old.load_config is new.load_vq_config
    assert old.TrainConfig is new.VQTrainConfig and old.DataConfig is new.VQDataConfig
    assert old.OptimConfig is new.VQOptimConfig and old.OutputConfig is new.VQOutputConfig
    assert old.TokenizerTrainer is new.VQTrainer and old.TrainResult is new.VQTrainResult
    assert old.config_from_dict is new.vq_config_from_dict
    assert old.list_checkpoints is new.list_vq_checkpoints
    assert set(old.__all__) <= set(dir(old))


# ------------------------------------------------------------------------------ data & config
def test_folder_images_are_bucketed_by_aspect_ratio(tmp_path: Path) -> None:
    assert nearest_size(200, 100, [(32, 32), (48, 32), (32, 48)]) == (48, 32)
    assert nearest_size(90, 100, [(32, 32), (48, 32), (32, 48)]) == (32, 32)
    bank = ImageBank(
        {
            (32, 32): torch.zeros(5, 3, 32, 32, dtype=torch.uint8),
            (48, 32): torch.ones(3, 3, 32, 48, dtype=torch.uint8),
        }
    )
    rng = np.random.default_rng(0)
    shapes = {tuple(bank.sample(rng, 4).shape) for _ in range(20)}
    assert shapes == {(4, 3, 32, 32), (4, 3, 32, 48)}  # each batch holds one size
    ramp = torch.arange(32 * 48, dtype=torch.float32).view(1, 1, 32, 48).expand(2, 3, 32, 48)
    crops = ImageBank({(48, 32): ramp}).sample(rng, 6, crop=(16, 8))
    assert crops.shape == (6, 3, 8, 16)
    for c in crops:  # a contiguous window of the ramp, at its own offset
        y, x = divmod(int(c[0, 0, 0]), 48)
        assert torch.equal(c, ramp[0, :, y : y + 8, x : x + 16])


def test_world_config_builds_the_shipped_architecture() -> None:
    cfg = load_vq_config(WORLD)
    assert cfg.model.downsample == 16
    assert {(w // 16) * (h // 16) for w, h in cfg.data.sizes} <= {64, 60}
    with torch.device("meta"):
        n = sum(p.numel() for p in VQGAN(cfg.model).parameters())
    assert n * 4 <= 8 * 2**20  # float32 weights fit in 8 MB


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.stepz=3", "train.stepz"),
        ("nosuch.key=1", "nosuch"),
        ("train.lr=fast", "train.lr"),
        ("train.bf16=3", "train.bf16"),
        ("data.sizes=[30x30]", "not divisible"),
        ("perceptual.weight=1.0", "perceptual.vgg"),
        ("model.ddconfig.ch=40", "multiples of 32"),
        ("train.steps", "key=value"),
    ],
)
def test_config_errors_exit_2_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, fragment: str
) -> None:
    run = tmp_path / "run"
    rc = main(["tokenizer", "train", str(TINY), f"output.run_dir={run}", override, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err and err.count("\n") == 1
    assert not run.exists()


def test_unreadable_image_in_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shapes(tmp_path / "imgs", [(32, 32)] * 3)
    (tmp_path / "imgs" / "sub").mkdir()
    (tmp_path / "imgs" / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = load_vq_config(
        TINY,
        [
            "data.source=folder",
            f"data.path={tmp_path / 'imgs'}",
            f"output.run_dir={tmp_path / 'run'}",
        ],
    )
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        train_vqgan(cfg, progress=False)
    rc = main(
        [
            "tokenizer",
            "train",
            str(TINY),
            "data.source=folder",
            f"data.path={tmp_path / 'imgs'}",
            f"output.run_dir={tmp_path / 'run'}",
        ]
    )
    assert rc == 2 and "broken.png" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ eval command
def test_eval_command_reports_psnr_usage_perplexity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_vq_config(TINY)
    torch.manual_seed(0)
    model = VQGAN(cfg.model)
    model.save_pretrained(tmp_path / "tok")
    paths = write_shapes(tmp_path / "held_out", [(32, 32), (48, 32), (37, 35)])
    out = tmp_path / "eval.json"
    rc = main(
        [
            "tokenizer",
            "eval",
            "--tokenizer",
            str(tmp_path / "tok"),
            str(tmp_path / "held_out"),
            "--json",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "PSNR" in text and "codebook usage" in text and "perplexity" in text
    result = json.loads(out.read_text())
    assert result["images"] == 3
    assert result["tokens"] == 8 * 8 + 12 * 8 + 9 * 8  # 37x35 is centre-cropped to 36x32
    assert 0 < result["codes_used"] <= result["codebook_size"] == 64
    assert 1.0 <= result["perplexity"] <= result["codes_used"]
    # The mean PSNR is the mean of the per-image round trips.
    model = VQGAN.from_pretrained(tmp_path / "tok")
    single = [
        evaluate_tokenizer(model, [to_uint8_tensor(Image.open(p).convert("RGB"))]).psnr
        for p in paths[:2]
    ]
    third = evaluate_tokenizer(
        model, [to_uint8_tensor(Image.open(paths[2]).convert("RGB").crop((0, 1, 36, 33)))]
    ).psnr
    assert result["psnr"] == pytest.approx(np.mean([*single, third]))
    assert result["psnr_min"] == pytest.approx(min(*single, third))


def test_eval_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_vq_config(TINY)
    VQGAN(cfg.model).save_pretrained(tmp_path / "tok")
    rc = main(
        ["tokenizer", "eval", "--tokenizer", str(tmp_path / "tok"), str(tmp_path / "missing.png")]
    )
    assert rc == 2 and "missing.png" in capsys.readouterr().err
    write_shapes(tmp_path / "imgs", [(32, 32)])
    rc = main(
        [
            "tokenizer",
            "eval",
            "--tokenizer",
            str(tmp_path / "tok"),
            str(tmp_path / "imgs"),
            "--size",
            "30",
        ]
    )
    assert rc == 2 and "not divisible" in capsys.readouterr().err
