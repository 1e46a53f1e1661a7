"""Keeping the codebook in use: dead-code restarts and (optionally) EMA codebook updates.

The trainer counts the codes the encoder picks over a window of ``codebook.window`` steps;
at the end of each window the codes used fewer than ``codebook.min_uses`` times are moved
onto encoder outputs drawn from a pool of recent ones (:func:`restart_dead_codes`).
Optionally (``codebook.ema_decay``) codes follow moving averages of their encoder outputs
instead of the codebook gradient (:class:`CodebookEMA`).
"""

from __future__ import annotations

import torch

from liquidgen.errors import CheckpointError
from liquidgen.tokenizer.quantizer import VectorQuantizer


def restart_dead_codes(
    quantizer: VectorQuantizer,
    counts: torch.Tensor,
    pool: torch.Tensor,
    min_uses: int,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    ema: CodebookEMA | None = None,
    sampling: str = "uniform",
) -> int:
    """Move every code used fewer than ``min_uses`` times onto a distinct recent encoder output.

    ``counts`` (n_embed,) are the uses in the last window, ``pool`` (P, embed_dim) recent
    encoder outputs. Targets are drawn without replacement while the pool allows, uniformly
    or (``sampling="distance"``) in proportion to their squared distance to the nearest
    live code, so that the outputs the codebook serves worst get the new codes. The AdamW
    moments of the moved rows are cleared so stale momentum does not drag them back; with
    ``ema``, the moved rows' running statistics restart from the new vectors.
    Returns the number of restarted codes.
    """
    dead = torch.nonzero(counts < min_uses).flatten()
    if len(dead) == 0 or len(pool) == 0:
        return 0
    weight = quantizer.embedding.weight
    live = torch.nonzero(counts >= min_uses).flatten()
    if sampling == "distance" and len(live) > 0:
        with torch.no_grad():
            d2 = torch.cdist(pool.float(), weight[live].float()).amin(dim=1).square()  # (P,)
        far = int((d2 > 0).sum())
        if far > 0:
            idx = torch.multinomial(d2, min(len(dead), far), replacement=False, generator=generator)
            dead = dead[: len(idx)]  # codes beyond the distinct far targets wait a window
        else:
            return 0
    elif len(pool) >= len(dead):
        idx = torch.randperm(len(pool), generator=generator)[: len(dead)]
    else:
        idx = torch.randint(len(pool), (len(dead),), generator=generator)
    with torch.no_grad():
        weight[dead] = pool[idx].to(weight.dtype)
    state = optimizer.state.get(weight, {}) if optimizer is not None else {}
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dead] = 0.0
    if ema is not None:
        ema.reset(dead, weight[dead])
    return len(dead)


class CodebookEMA:
    """Exponential-moving-average codebook updates (van den Oord et al. 2017, appendix).

    Keeps, per code, a running count ``size`` (n_embed,) and a running sum ``total``
    (n_embed, embed_dim) of the encoder outputs assigned to it; after each step the code
    becomes ``total / size`` (Laplace-smoothed). The quantiser's codebook weight then takes
    no gradient; the commitment loss still trains the encoder.
    """

    EPS = 1e-5  # Laplace smoothing of the counts

    def __init__(self, quantizer: VectorQuantizer, decay: float) -> None:
        self.quantizer = quantizer
        self.decay = decay
        weight = quantizer.embedding.weight
        self.size = torch.ones(weight.shape[0])  # (K,)
        self.total = weight.detach().clone().float()  # (K, D)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Fold a step's encoder outputs ``z`` (B, D, h, w) and their ``codes`` (B, h, w) in."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()  # (N, D)
        idx = codes.flatten()
        k = self.size.shape[0]
        counts = torch.bincount(idx, minlength=k).float()  # (K,)
        sums = torch.zeros_like(self.total).index_add_(0, idx, flat)  # (K, D)
        self.size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.total.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.size.sum()
        smoothed = (self.size + self.EPS) / (n + k * self.EPS) * n  # (K,)
        weight = self.quantizer.embedding.weight
        weight.copy_((self.total / smoothed[:, None]).to(weight.dtype))

    def reset(self, rows: torch.Tensor, vectors: torch.Tensor) -> None:
        """Restart ``rows`` at ``vectors`` (D each) with a count of one."""
        self.size[rows] = 1.0
        self.total[rows] = vectors.detach().float()

    def state(self) -> dict[str, torch.Tensor]:
        return {"ema_size": self.size, "ema_total": self.total}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        if "ema_size" not in tensors or tensors["ema_total"].shape != self.total.shape:
            raise CheckpointError("checkpoint has no matching EMA codebook statistics")
        self.size = tensors["ema_size"].float()
        self.total = tensors["ema_total"].float()
