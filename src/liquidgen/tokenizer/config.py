"""Configuration of the VQGAN image tokenizer (taming-transformers ``VQModel`` hyper-parameters).

Field names follow the authors' ``vqgan.yaml`` (``model.params.ddconfig``, ``n_embed``,
``embed_dim``) so that a config converts both ways without renaming.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from liquidgen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class VQGANConfig:
    """Hyper-parameters of the encoder, quantiser and decoder.

    The defaults are Chameleon's / Liquid's tokenizer: 8192 codes of dimension 256,
    16x downsampling (five ``ch_mult`` levels), 68.7M parameters.
    """

    ch: int = 128  # base channel width
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # width multiplier per level; len-1 downsamplings
    num_res_blocks: int = 2  # res blocks per encoder level (decoder uses one more)
    attn_resolutions: tuple[
        int, ...
    ] = ()  # feature-map sizes with level attention (none in Liquid)
    z_channels: int = 256  # encoder output / decoder input channels
    resolution: int = 512  # nominal training resolution (only used to place level attention)
    in_channels: int = 3
    out_ch: int = 3
    dropout: float = 0.0
    double_z: bool = False  # taming's VAE option; must be False for a VQ model
    n_embed: int = 8192  # codebook size
    embed_dim: int = 256  # code dimension
    beta: float = 0.25  # commitment-loss weight

    def __post_init__(self) -> None:
        if self.double_z:
            raise ConfigError("double_z=True is a VAE setting; a VQGAN needs double_z=False")
        if self.ch % 32 or any(self.ch * m % 32 for m in self.ch_mult):
            raise ConfigError(
                f"channel widths must be multiples of 32 (GroupNorm(32)); ch={self.ch}"
            )
        if self.z_channels % 32 and len(self.ch_mult) == 0:
            raise ConfigError("ch_mult must not be empty")
        for name in (
            "ch",
            "num_res_blocks",
            "z_channels",
            "n_embed",
            "embed_dim",
            "in_channels",
            "out_ch",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.ch_mult:
            raise ConfigError("ch_mult must have at least one level")

    @property
    def downsample(self) -> int:
        """Pixels per code along each axis: 2 ** (levels - 1)."""
        return 2 ** (len(self.ch_mult) - 1)

    def ddconfig(self) -> dict[str, Any]:
        """The ``ddconfig`` dict as the authors' yaml spells it."""
        return {
            "double_z": self.double_z,
            "z_channels": self.z_channels,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "out_ch": self.out_ch,
            "ch": self.ch,
            "ch_mult": list(self.ch_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_resolutions": list(self.attn_resolutions),
            "dropout": self.dropout,
        }

    def to_dict(self) -> dict[str, Any]:
        """liquidgen's ``config.json``: the authors' structure plus ``beta``."""
        return {
            "ddconfig": self.ddconfig(),
            "n_embed": self.n_embed,
            "embed_dim": self.embed_dim,
            "beta": self.beta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VQGANConfig:
        """Build from ``{"ddconfig": {...}, "n_embed": .., "embed_dim": .., ["beta": ..]}``."""
        try:
            dd = dict(data["ddconfig"])
            n_embed, embed_dim = int(data["n_embed"]), int(data["embed_dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"VQGAN config needs ddconfig, n_embed and embed_dim ({e!r})") from e
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(dd) - known
        if unknown:
            raise ConfigError(f"unknown ddconfig field(s): {sorted(unknown)}")
        for key in ("ch_mult", "attn_resolutions"):
            if key in dd:
                dd[key] = tuple(int(v) for v in dd[key])
        return cls(**dd, n_embed=n_embed, embed_dim=embed_dim, beta=float(data.get("beta", 0.25)))
