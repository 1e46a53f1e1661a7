"""Hardware bf16 detection and the trainers' fp32 fallback where bf16 would be emulated."""

from __future__ import annotations

import warnings

import pytest
import torch

from liquidgen.utils import device as D

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"fma", "avx", "avx2"}, False),  # AMD Zen 3: AVX2 only
        ({"avx2", "avx512f", "avx512bw"}, False),  # AVX-512 without its bf16 extension
        ({"avx2", "avx512f", "avx512_bf16"}, True),  # Zen 4, Cooper Lake and later
        ({"avx512f", "amx_tile", "amx_bf16"}, True),  # Sapphire Rapids
        ({"fp", "asimd", "bf16"}, True),  # Arm with BF16
    ],
)
def test_native_bf16_follows_the_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], native: bool
) -> None:
    monkeypatch.setattr(D, "_cpu_flags", lambda: frozenset(flags))
    assert D.bf16_is_native(CPU) is native


def test_without_readable_flags_avx512_kernels_count_as_native(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(D, "_cpu_flags", lambda: None)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert D.bf16_is_native(CPU)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not D.bf16_is_native(CPU)


def test_this_machines_flags_are_read() -> None:
    flags = D._cpu_flags()
    if flags is not None:  # Linux: /proc/cpuinfo has a flags line
        assert flags and all(isinstance(f, str) and f for f in flags)
        assert D.bf16_is_native(CPU) == any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))


def test_training_falls_back_to_fp32_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "bf16_is_native", lambda device: False)
    with pytest.warns(RuntimeWarning, match=r"precision: bf16: .* training in fp32 instead"):
        assert D.training_bf16(True, CPU, "precision: bf16") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asking for fp32 says nothing
        assert D.training_bf16(False, CPU, "precision: bf16") is False
    monkeypatch.setattr(D, "bf16_is_native", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.training_bf16(True, CPU, "precision: bf16") is True
