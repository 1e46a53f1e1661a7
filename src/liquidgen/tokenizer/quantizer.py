"""Nearest-neighbour vector quantiser (taming-transformers ``VectorQuantizer2``).

Codes are chosen by plain Euclidean distance to an un-normalised codebook, as in
Chameleon's and Liquid's tokenizer. The straight-through estimator passes gradients from
the quantised output to the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class VectorQuantizer(nn.Module):
    """Codebook of ``n_embed`` vectors of size ``embed_dim``; the state-dict key is ``embedding.weight``."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.n_embed = n_embed
        self.embed_dim = embed_dim
        self.beta = beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes. ``z``: (B, C, h, w) -> (B, h, w) int64."""
        b, _, h, w = z.shape
        flat = rearrange(z, "b c h w -> (b h w) c")  # (N, C)
        codebook = self.embedding.weight  # (K, C)
        # ||z - e||^2 = ||z||^2 + ||e||^2 - 2 z.e ; argmin is unaffected by ||z||^2 but we
        # keep it so that the distances are the true ones (useful for debugging margins).
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            + codebook.pow(2).sum(1)[None, :]
            - 2.0 * flat @ codebook.t()
        )  # (N, K)
        return dist.argmin(dim=1).view(b, h, w)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook rows for ``codes`` (B, h, w) -> (B, C, h, w)."""
        return rearrange(self.embedding(codes), "b h w c -> b c h w")

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise ``z`` (B, C, h, w).

        Returns ``(z_q, codes, loss)``: ``z_q`` with straight-through gradients, the codes
        (B, h, w), and the codebook loss + ``beta`` * commitment loss (the VQ-VAE form;
        taming's ``legacy=True`` swaps the two weights, a known slip we do not reproduce).
        """
        codes = self.nearest(z.detach())
        z_q = self.lookup(codes)
        loss = F.mse_loss(z_q, z.detach()) + self.beta * F.mse_loss(z, z_q.detach())
        z_q = z + (z_q - z).detach()
        return z_q, codes, loss
