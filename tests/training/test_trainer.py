"""The trainer: schedule, z-loss, checkpoints (atomic, verified, pruned), corrupt-checkpoint
fallback, exact resume after SIGKILL, LoRA with trainable image rows, 1 vs 2 processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from liquidgen.errors import CheckpointError
from liquidgen.model import load_liquid
from liquidgen.training import checkpoint as ckpt
from liquidgen.training.config import TrainConfig
from liquidgen.training.loss import loss_sums
from liquidgen.training.report import read_metrics
from liquidgen.training.trainer import Trainer, lr_factor, train

from .conftest import REPO, config_dict, run_cli, write_config


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """In-process runs set torch's thread count from the config; give it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _losses(out_dir: Path) -> dict[int, float]:
    return {
        r["step"]: r["loss"]
        for r in read_metrics(out_dir / "metrics.jsonl")
        if r["kind"] == "train"
    }


def test_lr_schedule() -> None:
    base = config_dict(Path("m"), {"train": Path("d"), "val": Path("d")}, Path("o"), max_steps=100)
    base["optim"] = {"lr": 1.0, "warmup_steps": 10, "min_lr_ratio": 0.1}
    cosine = TrainConfig.from_dict(base)
    assert [lr_factor(s, cosine) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, cosine) == pytest.approx(1.0)
    assert lr_factor(55, cosine) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_factor(100, cosine) == pytest.approx(0.1)
    base["optim"]["schedule"] = "constant"
    assert lr_factor(99, TrainConfig.from_dict(base)) == 1.0
    base["optim"].update(schedule="wsd", decay_fraction=0.2)  # stable to step 80, then linear
    wsd = TrainConfig.from_dict(base)
    assert lr_factor(4, wsd) == pytest.approx(0.5) and lr_factor(79, wsd) == 1.0
    assert lr_factor(89, wsd) == pytest.approx(1.0 - 0.9 * 10 / 20)
    assert lr_factor(99, wsd) == pytest.approx(0.1)


def test_validation_splits_the_t2i_loss_by_condition_and_cell(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """The prompt-reading diagnostic: the same validation images with and without prompt,
    image-token loss on background and object cells (training/diagnostics.py)."""
    trainer = Trainer(TrainConfig.from_dict(config_dict(tiny_model, tiny_data, tmp_path / "o")))
    assert set(trainer.diag_sets) == {"cond", "uncond"}
    assert trainer.diag_background  # codes of flat backgrounds from the model's vq/
    metrics = trainer.validate()
    for condition in ("cond", "uncond"):
        for part in ("object", "entry", "background"):
            assert math.isfinite(metrics[f"t2i-diag/{condition}/{part}"]), (condition, part)
    for part in ("object", "entry"):
        gain = metrics[f"t2i-diag/uncond/{part}"] - metrics[f"t2i-diag/cond/{part}"]
        assert metrics[f"t2i-diag/{part}_gain"] == pytest.approx(gain)


def test_loss_sums_cross_entropy_z_loss_and_accuracy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    targets = torch.tensor([0, 2])
    out = loss_sums(logits, targets, accuracy=True)
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    assert float(out.ce) == pytest.approx(float(ce))
    assert float(out.z) == pytest.approx(float((torch.logsumexp(logits, -1) ** 2).sum()))
    assert int(out.correct) == 1


def test_checkpoints_corruption_and_fallback(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = TrainConfig.from_dict(
        config_dict(tiny_model, tiny_data, out, max_steps=4, save_every=2, keep_last=5)
    )
    first = train(config)
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2, 4]
    assert (out / "loss_curve.png").stat().st_size > 1000
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    val = [r for r in records if r["kind"] == "val"][-1]
    assert {"text/loss", "t2i/acc", "caption/loss", "vqa/loss"} <= set(val)

    # the checkpoint root is an ordinary liquidgen checkpoint, VQGAN included
    step4 = ckpt.step_dir(out, 4)
    _, _, layout = load_liquid(step4)
    assert (step4 / "vq").is_dir() and layout.codebook_size == 64
    state = json.loads((step4 / ckpt.STATE_FILE).read_text())
    assert state["step"] == 4 and state["data"]["rows"] == 16

    # truncation and silent corruption are both detected, naming the checkpoint
    weights = step4 / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"step-0000004.*model.safetensors.*truncated"):
        ckpt.verify(step4)
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match=r"step-0000004.*SHA-256"):
        ckpt.verify(step4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ckpt.latest_valid(out) == ckpt.step_dir(out, 2)
    assert any(
        "step-0000004" in str(w.message) and "step-0000002" in str(w.message) for w in caught
    )

    # an explicit resume from the corrupt checkpoint is an error; auto-resume uses step 2
    with pytest.raises(CheckpointError, match="step-0000004"):
        train(TrainConfig.from_dict({**config.to_dict(), "resume": str(step4)}))
    stale = out / "checkpoints" / ".step-0000006.k1ll3d.tmp"  # a save cut short by a kill
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    with pytest.warns(UserWarning, match="step-0000004"):
        second = train(config)
    assert not stale.exists()
    assert second.resumed_from == ckpt.step_dir(out, 2)
    assert second.losses == {3: first.losses[3], 4: first.losses[4]}  # exact
    assert _losses(out) == first.losses  # the log reads as one run


@pytest.mark.usefixtures("native_bf16")
def test_keep_last_prunes_old_checkpoints_bf16(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = config_dict(
        tiny_model, tiny_data, out, max_steps=3, save_every=1, keep_last=2, precision="bf16"
    )
    result = train(TrainConfig.from_dict(config))
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2, 3]
    assert all(math.isfinite(loss) for loss in result.losses.values())


def test_bf16_falls_back_to_fp32_where_the_hardware_has_none(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emulated bf16 trains 17.6x slower than fp32 (benchmarks/README.md): the trainer warns
    and runs fp32; with hardware bf16 it autocasts."""
    config = TrainConfig.from_dict(
        config_dict(tiny_model, tiny_data, tmp_path / "o", precision="bf16")
    )
    monkeypatch.setattr("liquidgen.utils.device.bf16_is_native", lambda device: False)
    with pytest.warns(RuntimeWarning, match="training in fp32 instead"):
        assert not isinstance(Trainer(config).autocast, torch.autocast)
    monkeypatch.setattr("liquidgen.utils.device.bf16_is_native", lambda device: True)
    assert Trainer(config).autocast.fast_dtype == torch.bfloat16


def test_a_fresh_start_drops_the_log_of_a_run_killed_before_its_first_checkpoint(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale = [{"kind": "val", "step": 0, "text/loss": 99.0}, {"kind": "train", "step": 1}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale))
    train(TrainConfig.from_dict(config_dict(tiny_model, tiny_data, out, max_steps=2)))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    zero = [r for r in records if r["kind"] == "val" and r["step"] == 0]
    assert len(zero) == 1 and zero[0]["text/loss"] != 99.0


def test_gradient_checkpointing_changes_nothing_but_memory(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    def losses(name: str, checkpointing: bool) -> dict[int, float]:
        config = config_dict(tiny_model, tiny_data, tmp_path / name, max_steps=2, eval_every=0)
        config["model"]["gradient_checkpointing"] = checkpointing
        return train(TrainConfig.from_dict(config)).losses

    plain, recomputed = losses("plain", False), losses("recomputed", True)
    assert plain.keys() == recomputed.keys()
    for step in plain:
        assert math.isclose(plain[step], recomputed[step], rel_tol=1e-6)


def test_packed_attention_trains_like_sdpa(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """model.attn_implementation=packed: the same losses as sdpa through the whole trainer
    (packed rows, float32), and the saved checkpoint keeps the loadable sdpa setting."""

    def run(name: str, attention: str) -> dict[int, float]:
        config = config_dict(tiny_model, tiny_data, tmp_path / name, max_steps=2, eval_every=0)
        config["model"]["attn_implementation"] = attention
        config["precision"] = "fp32"  # bf16 rounding would differ by ~1e-4 between kernels
        return train(TrainConfig.from_dict(config)).losses

    sdpa, packed = run("sdpa", "sdpa"), run("packed", "packed")
    assert sdpa.keys() == packed.keys()
    for step in sdpa:
        assert math.isclose(sdpa[step], packed[step], rel_tol=1e-5)
    saved = json.loads(next((tmp_path / "packed").rglob("config.json")).read_text())
    assert "liquidgen_packed" not in json.dumps(saved)


def test_lora_trains_the_image_rows(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    config = TrainConfig.from_dict(
        config_dict(
            tiny_model, tiny_data, tmp_path / "lora", max_steps=1, lora={"enabled": True, "r": 4}
        )
    )
    trainer = Trainer(config)
    layout = trainer.layout
    embedding = trainer.lm.get_input_embeddings()

    def rows() -> (
        torch.Tensor
    ):  # the embedding as the model sees it (peft's trainable rows applied)
        return embedding(torch.arange(layout.vocab_size)).detach().clone()

    frozen = {
        n: p.detach().clone() for n, p in trainer.lm.named_parameters() if not p.requires_grad
    }
    before = rows()
    trainer.train_step()
    after = rows()
    changed = (after - before).abs().sum(dim=1) > 0  # (V,)
    image_rows = torch.tensor(layout.added_rows())
    assert bool(changed[image_rows[3:]].all()), "every image-code row must be updated under LoRA"
    assert int(changed.sum()) <= len(image_rows)  # text rows stay as they were
    for name, value in frozen.items():
        assert torch.equal(value, dict(trainer.lm.named_parameters())[name]), name
    lora_b = [p for n, p in trainer.lm.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # adapters moved off their zero init


@pytest.mark.slow
def test_sigkill_then_restart_continues_with_identical_losses(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    common = config_dict(
        tiny_model, tiny_data, tmp_path / "x", max_steps=12, save_every=3, eval_every=0
    )
    # the uninterrupted reference runs in this process: same code, one thread, same arithmetic
    expected = train(
        TrainConfig.from_dict({**common, "out_dir": str(tmp_path / "reference")})
    ).losses
    assert sorted(expected) == list(range(1, 13))

    killed = tmp_path / "killed"
    path = write_config(tmp_path / "b.yaml", {**common, "out_dir": str(killed)})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "liquidgen", "train", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not ckpt.step_dir(killed, 3).exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before_kill = len(_losses(killed))
    assert done_before_kill < 12, "the run finished before it could be killed"

    run_cli(["train", str(path)])
    assert _losses(killed) == expected  # exact float equality, every step


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_match_one_process(
    strategy: str, tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    # global batch 4 = 1 process x 2 micro-batches x 2 rows = 2 processes x 1 micro-batch x 2 rows
    common = config_dict(
        tiny_model, tiny_data, tmp_path / "x", max_steps=10, eval_every=0, distributed=strategy
    )
    single = train(TrainConfig.from_dict({**common, "out_dir": str(tmp_path / "one")})).losses
    run_cli(
        [
            "train",
            str(write_config(tmp_path / "two.yaml", {**common, "out_dir": str(tmp_path / "two")})),
        ],
        torchrun=2,
    )
    double = _losses(tmp_path / "two")
    assert sorted(double) == list(range(1, 11))
    for step, loss in single.items():
        # fp32; the only difference is the order of the gradient sums (all-reduce vs local
        # accumulation): ~1e-7 relative per step, amplified a little by Adam over 10 steps.
        assert math.isclose(double[step], loss, rel_tol=1e-5), (step, double[step], loss)
    one = load_liquid(ckpt.step_dir(tmp_path / "one", 10))[0].state_dict()
    two = load_liquid(ckpt.step_dir(tmp_path / "two", 10))[0].state_dict()
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)


def test_checkpoints_carry_the_generation_defaults(
    tiny_model: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """liquid_generation.json (sizes, buckets, size prefix) travels from the model to checkpoints."""
    import shutil

    from liquidgen.checkpoint import GENERATION_FILE, GenerationDefaults

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    defaults = {"width": 16, "height": 16, "understanding_size": 16, "size_prefix": True,
                "buckets": [[16, 16], [24, 12]]}  # fmt: skip
    (model / GENERATION_FILE).write_text(json.dumps(defaults))
    out = tmp_path / "run"
    train(TrainConfig.from_dict(config_dict(model, tiny_data, out, max_steps=1, save_every=1)))
    (step, folder), *_ = ckpt.list_checkpoints(out)
    assert step == 1
    loaded = GenerationDefaults(**json.loads((folder / GENERATION_FILE).read_text()))
    assert loaded.size_prefix and loaded.buckets == ((16, 16), (24, 12))
    # resumed with keep_last=1: the checkpoint resumed from is pruned after the first save,
    # and the later ones still carry the defaults and the VQGAN (from the model folder)
    more = config_dict(model, tiny_data, out, max_steps=4, save_every=1, keep_last=1)
    train(TrainConfig.from_dict(more))
    ((step, folder),) = ckpt.list_checkpoints(out)
    assert step == 4
    assert (folder / GENERATION_FILE).is_file() and (folder / "vq" / "model.safetensors").is_file()


def test_compare_runs_plots_validation_metrics_of_several_runs(tmp_path: Path) -> None:
    """`liquidgen curves`: one panel per metric; x = step, tokens or 6ND; bad input exits 2."""
    from liquidgen.cli import main
    from liquidgen.training.report import compare_runs

    for name, slope in (("a", 1.0), ("b", 2.0)):
        run = tmp_path / name
        run.mkdir()
        lines = [{"kind": "val", "step": 0, "text/loss": 8.0}]
        for step in (10, 20):
            lines.append({"kind": "train", "step": step, "tokens": 100, "loss": 5.0})
            lines.append({"kind": "val", "step": step, "text/loss": 8.0 - slope * step / 10})
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = compare_runs(
        [("a", tmp_path / "a"), ("b", tmp_path / "b")],
        ["text/loss"],
        tmp_path / "c.png",
        x="tokens",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a grid's dozen runs: a colour each, the legend beside the axes (a wider figure)
    from PIL import Image

    many = compare_runs(
        [(f"run{i}", tmp_path / "ab"[i % 2]) for i in range(12)],
        ["text/loss"],
        tmp_path / "many.png",
    )
    assert Image.open(many).width > Image.open(out).width
    assert (
        main(
            ["curves", str(tmp_path / "a"), "--metric", "vqa/acc", "--out", str(tmp_path / "d.png")]
        )
        == 2
    )
    # FLOPs need a checkpoint to count parameters
    assert (
        main(["curves", str(tmp_path / "a"), "--x", "flops", "--out", str(tmp_path / "d.png")]) == 2
    )
    assert not (tmp_path / "d.png").exists()
