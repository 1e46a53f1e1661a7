"""Configuration of the VQGAN image tokenizer (taming-transformers ``VQModel`` hyper-parameters).

Field names follow the authors' ``vqgan.yaml`` (``model.params.ddconfig``, ``n_embed``,
``embed_dim``) so that a config converts both ways without renaming.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from liquidgen.errors import ConfigError

NORMS = ("group", "pixel", "none")
# ddconfig keys beyond the authors' yaml, written only when they differ from the default so
# that an authors'-architecture config round-trips to exactly their keys
_EXTENSIONS = {"norm": "group", "mid_attn": True, "encoder_kernel": 3}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


# what a ddconfig value of each field type must be (VQGANConfig.from_dict): check, words
_KINDS = {
    int: (_is_int, "an integer"),
    float: (_is_number, "a finite number"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "a string"),
}


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
    # Options beyond the authors' architecture (their values are the defaults, so a config
    # without these keys is exactly Chameleon's / Liquid's VQGAN). Locality: GroupNorm
    # normalises each group over the whole image and the mid-block attention is global, so
    # a code depends on every pixel; ``norm="pixel"`` (LayerNorm over channels at each
    # position) or ``"none"``, ``mid_attn=False`` and ``encoder_kernel=1`` (1x1 convolutions
    # in the encoder's res blocks, mid block and output, so each code sees only a
    # ``downsample * 2 + 1`` pixel window) make codes local and canonical.
    norm: str = "group"  # "group" (GroupNorm(32), the authors') | "pixel" | "none"
    mid_attn: bool = True  # the mid-block self-attention of encoder and decoder
    encoder_kernel: int = 3  # kernel of the encoder's res-block / mid / conv_out convolutions

    def __post_init__(self) -> None:
        if self.double_z:
            raise ConfigError("double_z=True is a VAE setting; a VQGAN needs double_z=False")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.encoder_kernel not in (1, 3):
            raise ConfigError(f"encoder_kernel must be 1 or 3, got {self.encoder_kernel}")
        if self.norm == "group" and (self.ch % 32 or any(self.ch * m % 32 for m in self.ch_mult)):
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
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")

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
            **{k: getattr(self, k) for k, d in _EXTENSIONS.items() if getattr(self, k) != d},
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
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"VQGAN config needs ddconfig, n_embed and embed_dim ({e!r})") from e
        known = {f.name for f in dataclasses.fields(cls)} - {"n_embed", "embed_dim", "beta"}
        unknown = set(dd) - known
        if unknown:
            raise ConfigError(f"unknown ddconfig field(s): {sorted(unknown)}")
        # A damaged or hand-edited file may hold anything here ("dropout:" left empty by a
        # truncated yaml, ch_mult: [1, Z], mid_attn: "false"): every value must have its
        # field's type, nothing is coerced (bool("false") is True, int(2.5) is 2).
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, value in dd.items():
            kind = type(defaults[key])
            if kind is tuple:
                if not isinstance(value, list | tuple) or not all(map(_is_int, value)):
                    raise ConfigError(
                        f"VQGAN config: {key} must be a list of integers, got {value!r}"
                    )
                dd[key] = tuple(value)
            elif not _KINDS[kind][0](value):
                raise ConfigError(f"VQGAN config: {key} must be {_KINDS[kind][1]}, got {value!r}")
        beta = data.get("beta", 0.25)
        if not _is_number(beta):
            raise ConfigError(f"VQGAN config: beta must be a finite number, got {beta!r}")
        return cls(**dd, n_embed=n_embed, embed_dim=embed_dim, beta=float(beta))
