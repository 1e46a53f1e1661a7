"""Weight-only int8 quantization of a causal LM's decoder (a load option of the pipeline).

Every ``nn.Linear`` inside the decoder layers (attention and MLP projections) becomes an
:class:`Int8Linear`: the weight rounded per output channel to int8 with one scale per row,
``w ~= scale[o] * q[o, i]`` with ``scale[o] = max_i |w[o, i]| / 127`` (symmetric, round to
nearest). Activations stay floating point. A decode step of a memory-bound model reads about
half the bytes of bfloat16 (a quarter of float32) for those matrices.

The embedding and the LM head are left as they are: the head is usually tied to the
embedding, the image sampler slices its rows (:class:`~liquidgen.inference.decoding.ImageRowLogits`),
and for Liquid-sized vocabularies the rows a step reads are a small part of the total.

The matrix product is ``torch._weight_int8pack_mm`` (PyTorch's weight-only int8 kernel, the
one gpt-fast uses on CPU). On CPU its bfloat16 path is the fast one (measured here: a
4864x896 product 3x faster than the dense bfloat16 one, while its float32 path was slower
than dense float32), so float32 activations are rounded to bfloat16 for the product and the
result cast back; the rest of a float32 model (norms, attention, softmax, the head) stays
float32. Where the kernel is missing or refuses the shapes the module dequantizes the weight
(correct, not fast). torchao was not used: the project keeps its dependency set, and this is
all it would do here (docs/inference.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liquidgen.errors import ConfigError

QUANTIZE_CHOICES = ("int8",)
_INT8_MAX = 127


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``weight (O, I)`` -> ``(q (O, I) int8, scale (O,)
    float32)`` with ``weight ~= scale[:, None] * q``; an all-zero row gets scale 1."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)  # (O,)
    scale = torch.where(amax > 0, amax / _INT8_MAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp(-_INT8_MAX, _INT8_MAX).to(torch.int8)
    return q, scale


def _kernel_works(weight: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether ``torch._weight_int8pack_mm`` takes this weight on its device (checked once,
    on one row of zeros, so the forward has no try/except for ``torch.compile`` to trace)."""
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return False
    dtype = torch.bfloat16 if weight.device.type == "cpu" else torch.float16
    x = torch.zeros(1, weight.shape[1], dtype=dtype, device=weight.device)
    try:
        torch._weight_int8pack_mm(x, weight, scale.to(dtype))
    except (RuntimeError, NotImplementedError):
        return False
    return True


@torch.library.custom_op("liquidgen::int8_mm", mutates_args=())
def int8_mm(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x (N, I) @ (weight (O, I) int8 * scale (O,)).T`` by ``torch._weight_int8pack_mm``.

    Wrapped as an opaque custom op so that ``torch.compile`` calls the kernel as it is: traced
    directly, inductor's lowering of ``_weight_int8pack_mm`` fails on torch 2.13
    (``LoweringException``), and the compiled int8 decode step fell back to eager."""
    return torch._weight_int8pack_mm(x, weight, scale)


@int8_mm.register_fake
def _int8_mm_shape(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return torch.bfloat16  # the kernel's fast path on CPU (see the module docstring)
    return x.dtype


class Int8Linear(nn.Module):
    """A linear layer with an int8 weight and a float scale per output channel."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        q, scale = quantize_per_channel(linear.weight)
        self.register_buffer("weight_int8", q.to(linear.weight.device))
        self.register_buffer("scale", scale.to(linear.weight.device))  # float32
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self._fast = _kernel_works(self.weight_int8, self.scale)

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight ``(O, I)`` the layer computes with, in ``dtype``."""
        return (self.weight_int8.float() * self.scale.float()[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        dtype = _compute_dtype(x)
        x2 = x.reshape(-1, self.in_features).to(dtype)
        if self._fast:
            y = int8_mm(x2, self.weight_int8, self.scale.to(dtype))
        else:
            y = F.linear(x2, self.weight_int8.to(dtype)) * self.scale.to(dtype)
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` of ``model``'s decoder layers by an :class:`Int8Linear`
    in place (embedding and LM head untouched); returns how many were replaced."""
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else model
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    targets = [
        (name, module)
        for name, module in decoder.named_modules()
        if isinstance(module, nn.Linear) and module is not head
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = decoder.get_submodule(parent_name) if parent_name else decoder
        setattr(parent, child, Int8Linear(module))
    from liquidgen.inference.static import clear_engines

    clear_engines(model)
    return len(targets)


def apply_quantization(model: nn.Module, quantize: str | None) -> nn.Module:
    """``quantize`` (``None`` or one of :data:`QUANTIZE_CHOICES`) applied to ``model``."""
    if quantize is None:
        return model
    if quantize not in QUANTIZE_CHOICES:
        raise ConfigError(
            f"unknown quantization {quantize!r} (known: {', '.join(QUANTIZE_CHOICES)})"
        )
    if quantize_int8(model) == 0:
        raise ConfigError(f"{type(model).__name__}: no linear layer to quantize")
    return model
