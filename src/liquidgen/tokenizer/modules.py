"""Encoder and decoder of the taming-transformers VQGAN, with the checkpoint's module names.

Attribute names (``conv_in``, ``down.{i}.block.{j}``, ``mid.block_1``, ``mid.attn_1``,
``up.{i}.upsample``, ``norm_out``...) are chosen so that ``state_dict()`` keys equal those
of Chameleon's released ``vqgan.ckpt``; do not rename them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from liquidgen.tokenizer.config import VQGANConfig


class PixelNorm(nn.Module):
    """LayerNorm over the channels at each position: local, unlike GroupNorm, which pools
    each group over the whole image (so one object changes every code's features)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        # F.layer_norm is one fused kernel (forward and backward) and runs in float32 under
        # autocast; a hand-written var_mean version trained ~3x slower on CPU
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def _norm(channels: int, kind: str = "group") -> nn.Module:
    """The normalisation layer named by ``VQGANConfig.norm`` (``group`` is taming's)."""
    if kind == "group":
        return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)
    if kind == "pixel":
        return PixelNorm(channels)
    return nn.Identity()


class ResnetBlock(nn.Module):
    """Norm -> swish -> conv, twice, plus a 1x1 ``nin_shortcut`` when widths differ
    (taming: GroupNorm and 3x3 convolutions)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout: float,
        *,
        norm: str = "group",
        kernel: int = 3,
    ) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, norm)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.norm2 = _norm(out_channels, norm)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel, padding=kernel // 2)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections (q, k, v, proj_out)."""

    def __init__(self, channels: int, norm: str = "group") -> None:
        super().__init__()
        self.norm = _norm(channels, norm)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        y = self.norm(x)
        q, k, v = (rearrange(p(y), "b c h w -> b 1 (h w) c") for p in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, hw, C), scale C^-0.5 as taming
        out = rearrange(out, "b 1 (h w) c -> b c h w", h=h, w=w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after asymmetric zero padding (right and bottom), as taming does."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (res blocks), ``attn`` and an optional resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(
        self, channels: int, dropout: float, *, norm: str, kernel: int, attn: bool
    ) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, norm=norm, kernel=kernel)
        self.attn_1 = AttnBlock(channels, norm) if attn else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, dropout, norm=norm, kernel=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Pixels (B, in_channels, H, W) -> features (B, z_channels, H/f, W/f)."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        k = cfg.encoder_kernel
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1, *cfg.ch_mult)
        res = cfg.resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            level = _Level()
            block_in, block_out = cfg.ch * in_mult[i], cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                level.block.append(
                    ResnetBlock(block_in, block_out, cfg.dropout, norm=cfg.norm, kernel=k)
                )
                block_in = block_out
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(block_in, cfg.norm))
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(block_in, cfg.dropout, norm=cfg.norm, kernel=k, attn=cfg.mid_attn)
        self.norm_out = _norm(block_in, cfg.norm)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features (B, z_channels, h, w) -> pixels (B, out_ch, h*f, w*f), unclamped."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        n_levels = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (n_levels - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, cfg.dropout, norm=cfg.norm, kernel=3, attn=cfg.mid_attn)
        levels: list[_Level] = []
        for i in reversed(range(n_levels)):
            level = _Level()
            block_out = cfg.ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, cfg.dropout, norm=cfg.norm))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(block_in, cfg.norm))
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, level)  # up[i] is level i, so keys match the checkpoint
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in, cfg.norm)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
