"""Tokenizer training, resume, losses and the ``tokenizer train`` / ``tokenizer eval`` commands."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

from liquidgen.cli import main
from liquidgen.errors import CheckpointError, ConfigError, ImageReadError
from liquidgen.tokenizer import VQGAN
from liquidgen.tokenizer.evaluate import code_statistics, evaluate_tokenizer, to_uint8_tensor
from liquidgen.tokenizer.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    foreground_weights,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction_losses,
)
from liquidgen.tokenizer.quantizer import VectorQuantizer
from liquidgen.tokenizer.train import (
    CodebookConfig,
    CodebookEMA,
    ImageBank,
    load_config,
    nearest_size,
    restart_dead_codes,
    train,
)

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
    cfg = load_config(TINY, [f"output.run_dir={run}", "train.steps=30"])
    result = train(cfg, progress=False)
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


def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path) -> None:
    """Folder data with two sizes, bf16, EMA codebook, the GAN on: a resumed run is bit-identical."""
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
    full = train(load_config(TINY, [*common, f"output.run_dir={full_dir}"]), progress=False)
    cut_cfg = load_config(TINY, [*common, f"output.run_dir={cut_dir}"])
    stopped = train(cut_cfg, until=12, progress=False)
    assert stopped.export_dir is None and stopped.step == 12
    # A crash while saving step 12 would leave it unreadable: resume must fall back to step 8.
    (cut_dir / "checkpoints" / "step-00000012" / "optimizer.pt").write_bytes(b"not a checkpoint")
    resumed = train(cut_cfg, progress=False)
    assert resumed.resumed_from == 8 and resumed.step == 16
    a, b = _state(full_dir, 16), _state(cut_dir, 16)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    strip = [{k: v for k, v in r.items() if k != "sec_per_step"} for r in read_log(full_dir)]
    assert strip == [{k: v for k, v in r.items() if k != "sec_per_step"} for r in read_log(cut_dir)]
    assert full.last == resumed.last


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(load_config(TINY, [f"output.run_dir={run}", "train.steps=4"]), until=2, progress=False)
    other = load_config(TINY, [f"output.run_dir={run}", "train.steps=4", "model.n_embed=32"])
    with pytest.raises(ConfigError, match="different model config"):
        train(other, progress=False)


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
    cfg = load_config(WORLD)
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
    cfg = load_config(
        TINY,
        [
            "data.source=folder",
            f"data.path={tmp_path / 'imgs'}",
            f"output.run_dir={tmp_path / 'run'}",
        ],
    )
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        train(cfg, progress=False)
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


# ------------------------------------------------------------------------------ codebook
def test_restart_moves_only_dead_codes_and_clears_their_moments() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4)
    opt = torch.optim.AdamW(vq.parameters(), lr=0.1)
    vq.embedding.weight.sum().backward()
    opt.step()
    before = vq.embedding.weight.detach().clone()
    counts = torch.tensor([3, 0, 1, 0, 5, 0, 2, 2])
    pool = torch.arange(40, dtype=torch.float32).view(10, 4) + 100.0
    n = restart_dead_codes(
        vq, counts, pool, min_uses=1, generator=torch.Generator().manual_seed(0), optimizer=opt
    )
    assert n == 3
    weight = vq.embedding.weight.detach()
    dead, alive = counts == 0, counts > 0
    assert torch.equal(weight[alive], before[alive])
    moved = weight[dead]
    assert all(any(torch.equal(row, p) for p in pool) for row in moved)  # each is a pool vector
    assert len({tuple(r.tolist()) for r in moved}) == 3  # distinct targets
    state = opt.state[vq.embedding.weight]
    assert state["exp_avg"][dead].abs().sum() == 0 and state["exp_avg"][alive].abs().sum() > 0


def test_distance_restarts_skip_outputs_the_live_codes_already_serve() -> None:
    """k-means++ restarts: a pool full of copies of one (served) background vector still
    sends the dead codes to the few outputs far from every live code."""
    vq = VectorQuantizer(4, 2)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [9.0, 9.0], [8.0, 8.0], [7.0, 7.0]]))
    counts = torch.tensor([10, 0, 0, 0])  # only the background code (0, 0) is alive
    pool = torch.cat([torch.zeros(60, 2), torch.tensor([[5.0, 0.0], [0.0, 5.0]])])
    n = restart_dead_codes(
        vq, counts, pool, 1, torch.Generator().manual_seed(0), sampling="distance"
    )
    assert n == 2  # two distinct far targets; the third dead code waits for the next window
    moved = {tuple(r) for r in vq.embedding.weight.detach()[1:3].tolist()}
    assert moved == {(5.0, 0.0), (0.0, 5.0)}
    with pytest.raises(ConfigError, match="restart_sampling"):
        CodebookConfig(restart_sampling="nearest")


def test_ema_codebook_moves_codes_to_the_mean_of_their_vectors() -> None:
    vq = VectorQuantizer(3, 2)
    ema = CodebookEMA(vq, decay=0.5)
    z = torch.tensor([[1.0, 3.0, 10.0], [2.0, 4.0, 10.0]]).view(1, 2, 1, 3)  # (B, D, h, w)
    codes = torch.tensor([[[0, 0, 2]]])  # code 0 <- (1, 2), (3, 4); code 2 <- (10, 10)
    start = vq.embedding.weight.detach().clone()
    ema.update(z, codes)
    # size = 0.5 * 1 + 0.5 * count, total = 0.5 * start + 0.5 * sum (then Laplace smoothing).
    expected0 = (0.5 * start[0] + 0.5 * torch.tensor([4.0, 6.0])) / 1.5
    expected2 = (0.5 * start[2] + 0.5 * torch.tensor([10.0, 10.0])) / 1.0
    torch.testing.assert_close(vq.embedding.weight[0], expected0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(vq.embedding.weight[2], expected2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        vq.embedding.weight[1], start[1], rtol=1e-4, atol=1e-4
    )  # unused: unchanged


def test_code_statistics() -> None:
    assert code_statistics(torch.tensor([5, 5, 5, 5])) == pytest.approx((1.0, 4.0))
    assert code_statistics(torch.tensor([7, 0, 0, 0])) == pytest.approx((0.25, 1.0))
    usage, ppl = code_statistics(torch.tensor([1, 3, 0, 0]))
    assert usage == 0.5 and ppl == pytest.approx(
        math.exp(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    )


# ------------------------------------------------------------------------------ losses
def test_foreground_weights_pick_out_objects_and_weight_the_losses() -> None:
    x = torch.full((1, 3, 8, 8), 0.9)  # light ground
    x[:, :, 2:4, 2:4] = torch.tensor([-0.5, 0.2, 0.8])[:, None, None]  # a 2x2 object
    w = foreground_weights(x, 4.0)
    assert w.shape == (1, 1, 8, 8)
    assert w[0, 0, 2:4, 2:4].eq(5.0).all() and w.sum() == 64 + 4 * 4
    assert foreground_weights(x, 0.0).eq(1.0).all()
    # an error on the object costs more than the same error on the ground
    on_object, on_ground = x.clone(), x.clone()
    on_object[:, :, 2, 2] += 0.5
    on_ground[:, :, 6, 6] += 0.5
    l1_obj, l2_obj = reconstruction_losses(on_object, x, w)
    l1_gnd, l2_gnd = reconstruction_losses(on_ground, x, w)
    assert l1_obj == pytest.approx(5 * l1_gnd) and l2_obj == pytest.approx(5 * l2_gnd)
    # uniform weights reproduce the unweighted means
    plain = reconstruction_losses(on_object, x)
    same = reconstruction_losses(on_object, x, torch.ones(1, 1, 8, 8))
    assert torch.allclose(torch.stack(plain), torch.stack(same))


def test_patch_discriminator_and_hinge_losses() -> None:
    disc = PatchDiscriminator(3, ndf=16, n_layers=2)
    logits = disc(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1, 6, 6)  # 32 -> 16 -> 8 (stride 2) -> 7 -> 6 (stride 1, k4)
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)) == pytest.approx(1.0)
    assert hinge_g_loss(torch.tensor([1.0, 3.0])) == pytest.approx(-2.0)


def test_perceptual_loss_reads_local_weights_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = PerceptualLoss()
    for p in ref.features.parameters():
        p.data.normal_(0, 0.05)
    vgg = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # present in torchvision's file, ignored
    save_file(vgg, str(tmp_path / "vgg16.safetensors"))
    lin = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1)
        for k, c in enumerate((64, 128, 256, 512, 512))
    }
    torch.save(lin, tmp_path / "vgg.pth")
    loss = PerceptualLoss.from_files(tmp_path / "vgg16.safetensors", tmp_path / "vgg.pth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.allclose(loss(x, x), torch.zeros(2))
    d = loss(x, y)
    assert d.shape == (2,) and (d > 0).all()
    del lin["lin3.model.1.weight"]
    torch.save(lin, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"lin3\.model\.1\.weight"):
        PerceptualLoss.from_files(tmp_path / "vgg16.safetensors", tmp_path / "bad.pth")


# ------------------------------------------------------------------------------ eval command
def test_eval_command_reports_psnr_usage_perplexity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(TINY)
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
    cfg = load_config(TINY)
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
