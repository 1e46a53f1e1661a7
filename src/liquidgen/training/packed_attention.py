"""Attention over packed rows, one document at a time.

The trainer packs several examples into each row (``data.packing``) and restarts their
position ids. transformers then builds a dense block-diagonal mask of every row
(``find_packed_sequence_indices``) and hands it to SDPA: the kernel still computes the
whole ``T x T`` product of the row and, with an explicit mask, takes the slow path (on CPU
the flash kernel with a mask measured 32% of a training step of the tiny recipe for 13% of
its FLOPs, benchmarks/README.md ``train_speed.py``).

:func:`packed_attention` is registered with transformers' attention interface as
``"liquidgen_packed"``: it cuts the rows into their documents (a new document wherever a
position id is not the previous one plus one, as transformers decides), groups documents of
similar length into buckets (lengths rounded up to :data:`BUCKET` tokens), and runs SDPA
with ``is_causal=True`` and no mask on each bucket, a ``(documents, heads, length, dim)``
batch (on CPU written out as two batched products, see :func:`_causal_attention`). The
output equals the masked attention (tested); the attention work is the sum of the
documents' squared lengths instead of the rows'.

Measured on the tiny recipe's LM stage (2 threads, bf16, benchmarks/README.md): the
attention kernels' time fell (~730 -> ~400 ms of profiled CPU time over 3 steps), but the
gathers, scatters and casts around them took it back: 0.88-0.90 s per step against
0.87-0.89 with ``sdpa``, equal losses. So it is an option (``model.attn_implementation:
packed``), not the default; on GPUs, where the masked path falls off the fused kernels and
per-document blocks skip most of a long row's work, it is the expected win — not measured
here.

:class:`~liquidgen.training.loss.TargetLM` switches a model to it for its forward passes
(:func:`use_packed_attention`) when asked and :func:`supports_packed_attention` says the
model's attention is plain causal softmax attention: no sliding window, no logit
soft-capping, no chunked attention; other models keep their own implementation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

NAME = "liquidgen_packed"
BUCKET = 32  # document lengths are rounded up to a multiple of this to share one SDPA call
_UNSUPPORTED = ("sliding_window", "attn_logit_softcapping", "attention_chunk_size")


class _Plan:
    """Where each bucket's documents sit in the flattened ``(B*T)`` token axis."""

    def __init__(self, position_ids: torch.Tensor) -> None:
        rows, length = position_ids.shape
        positions = position_ids.detach().cpu()
        previous = torch.cat([positions[:, :1] - 1, positions[:, :-1]], dim=1)
        first = positions != previous + 1
        first[:, 0] = True  # every row starts a document
        starts = first.nonzero().tolist()  # [(row, col)], row-major
        docs: list[tuple[int, int]] = []  # (flat start, length)
        for i, (row, col) in enumerate(starts):
            end = starts[i + 1][1] if i + 1 < len(starts) and starts[i + 1][0] == row else length
            docs.append((row * length + col, end - col))
        buckets: dict[int, list[tuple[int, int]]] = {}
        for start, n in docs:
            buckets.setdefault(-(-n // BUCKET) * BUCKET, []).append((start, n))
        self.total = rows * length
        self.groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for width, members in sorted(buckets.items()):
            offsets = torch.arange(width)
            index = torch.stack([start + offsets for start, _ in members])  # (n, width)
            valid = torch.stack([offsets < n for _, n in members])  # (n, width)
            # padding slots of a short document read the dummy row appended at index total
            index = torch.where(valid, index, torch.full_like(index, self.total))
            self.groups.append((index, valid, index[valid]))
        self.device: torch.device | None = None

    def to(self, device: torch.device) -> _Plan:
        if self.device != device:
            self.groups = [tuple(t.to(device) for t in g) for g in self.groups]  # type: ignore[misc]
            self.device = device
        return self


# The plan of the forward running inside use_packed_attention: made once from that forward's
# position ids and read by every layer. (A cache keyed on the ids tensor's address, shape and
# version reused a freed tensor's plan for a later batch whose ids landed at the same address.)
_active: list[_Plan] = []


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, T, D)
    key: torch.Tensor,  # (B, Hkv, T, D)
    value: torch.Tensor,  # (B, Hkv, T, D)
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each packed document -> ``(B, T, H, D)`` (transformers'
    attention-interface contract)."""
    batch, heads, length, dim = query.shape
    if position_ids is None or key.shape[2] != length:
        raise ValueError(
            "liquidgen_packed attention needs the position ids of a full forward (training)"
        )
    groups = heads // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` queries
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if not _active:
        raise RuntimeError(
            "liquidgen_packed attention runs inside use_packed_attention(config, position_ids)"
        )
    plan = _active[-1].to(query.device)
    if plan.total != batch * length:
        raise ValueError(
            f"liquidgen_packed attention: a ({batch}, {length}) forward inside the plan of "
            f"{plan.total} positions"
        )

    def flat(t: torch.Tensor) -> torch.Tensor:  # (B, H, T, D) -> (B*T + 1, H, D), dummy last
        t = t.transpose(1, 2).reshape(batch * length, heads, dim)
        return torch.cat([t, t.new_zeros(1, heads, dim)])

    q, k, v = flat(query), flat(key), flat(value)
    out: torch.Tensor | None = None  # (B*T, H, D) in SDPA's output dtype (bf16 under autocast)
    for index, valid, targets in plan.groups:
        shape = (*index.shape, heads, dim)  # (n documents, width, H, D)
        qb, kb, vb = (
            t.index_select(0, index.reshape(-1)).view(shape).transpose(1, 2) for t in (q, k, v)
        )
        o = _causal_attention(qb, kb, vb, dropout, scaling)  # (n, H, width, D)
        if out is None:
            out = o.new_zeros(plan.total, heads, dim)
        out = out.index_put((targets,), o.transpose(1, 2)[valid])
    assert out is not None  # every row holds at least one document
    return out.view(batch, length, heads, dim), None


def _causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float, scaling: float | None
) -> torch.Tensor:
    """Causal softmax attention of ``(n, H, L, D)`` blocks. On CPU written out as two batched
    matrix products: for blocks of a few dozen tokens the fused flash kernel's backward costs
    several times its FLOPs (measured, module docstring). On GPUs, SDPA."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=True
        )
    width = q.shape[2]
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (n, H, L, L)
    future = torch.ones(width, width, dtype=torch.bool, device=q.device).triu(1)
    weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1, dtype=torch.float32)
    weights = F.dropout(weights.to(v.dtype), p=dropout, training=dropout > 0)
    return torch.matmul(weights, v)


def supports_packed_attention(config: Any) -> bool:
    """Plain causal softmax attention in every layer (what :func:`packed_attention`
    computes): no sliding window in use, no logit soft-capping, no chunked attention."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None) or []
    if any(kind != "full_attention" for kind in layer_types):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return not any(getattr(config, name, None) for name in _UNSUPPORTED if name != "sliding_window")


@contextlib.contextmanager
def use_packed_attention(
    config: Any,
    position_ids: torch.Tensor,  # (B, T) of the forward run inside the block
    enabled: bool = True,
) -> Iterator[None]:
    """Run the model of ``config`` with :func:`packed_attention` on the documents of
    ``position_ids`` for one forward inside the block."""
    if not enabled:
        yield
        return
    before = config._attn_implementation
    config._attn_implementation = NAME
    _active.append(_Plan(position_ids))
    try:
        yield
    finally:
        _active.pop()
        config._attn_implementation = before


AttentionInterface.register(NAME, packed_attention)
AttentionMaskInterface.register(NAME, flash_attention_mask)  # no dense mask is built
