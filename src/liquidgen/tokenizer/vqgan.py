"""The VQGAN image tokenizer: pixels <-> a grid of discrete codes.

Same architecture and state-dict keys as Chameleon's taming-transformers ``VQModel``,
which Liquid uses, so the released ``vqgan.ckpt`` loads into :class:`VQGAN` unchanged.

Two folder formats load with :meth:`VQGAN.from_pretrained`:

- liquidgen's: ``config.json`` (:class:`VQGANConfig`) + ``model.safetensors``;
- the authors': ``vqgan.yaml`` (``model.params.{ddconfig, n_embed, embed_dim}``) +
  ``vqgan.ckpt`` (a Lightning checkpoint; its ``loss.*`` discriminator/perceptual keys
  are dropped). It is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from liquidgen.errors import CheckpointError, CodeRangeError, ShapeError
from liquidgen.tokenizer.config import VQGANConfig
from liquidgen.tokenizer.modules import Decoder, Encoder
from liquidgen.tokenizer.quantizer import VectorQuantizer
from liquidgen.utils.io import atomic_dir

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
AUTHORS_CONFIG = "vqgan.yaml"
AUTHORS_WEIGHTS = "vqgan.ckpt"
_DROPPED_PREFIXES = ("loss.",)  # training-only modules stored in the authors' checkpoint


class VQGAN(nn.Module):
    """Encoder -> ``quant_conv`` -> nearest code; code -> ``post_quant_conv`` -> decoder."""

    def __init__(self, config: VQGANConfig | None = None) -> None:
        super().__init__()
        self.config = config or VQGANConfig()
        cfg = self.config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, cfg.beta)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    # ------------------------------------------------------------------ properties
    @property
    def downsample(self) -> int:
        """Pixels per code along each axis (16 for Liquid)."""
        return self.config.downsample

    @property
    def codebook_size(self) -> int:
        return self.config.n_embed

    # ------------------------------------------------------------------ encode / decode
    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 4 or pixels.shape[1] != self.config.in_channels:
            raise ShapeError(
                f"pixels must be (B, {self.config.in_channels}, H, W), got {tuple(pixels.shape)}"
            )
        f = self.downsample
        h, w = pixels.shape[-2:]
        if h % f or w % f or h == 0 or w == 0:
            raise ShapeError(f"image size {w}x{h} is not divisible by the tokenizer's factor {f}")

    @contextlib.contextmanager
    def _latent_positions(self, h: int, w: int, what: str) -> Iterator[None]:
        """Turn the refusal of a GroupNorm of one channel per group to normalise a latent of
        one position (``ValueError: Expected more than 1 value per channel``) into a
        :class:`ShapeError`: a size this network cannot take, not a bug."""
        try:
            yield
        except ValueError as e:
            if h * w != 1:
                raise
            raise ShapeError(
                f"cannot {what} with this tokenizer: a latent of one position ({h}x{w}) is too "
                f"small for its normalisation ({str(e).splitlines()[0]})"
            ) from None

    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Continuous latents before quantisation: (B, 3, H, W) in [-1, 1] -> (B, embed_dim, H/f, W/f)."""
        self._check_pixels(pixels)
        h, w = (side // self.downsample for side in pixels.shape[-2:])
        with self._latent_positions(
            h, w, f"encode a {w * self.downsample}x{h * self.downsample} image"
        ):
            return self.quant_conv(self.encoder(pixels))

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Codes in raster order: (B, 3, H, W) in [-1, 1] -> int64 (B, H/f, W/f)."""
        return self.quantize.nearest(self.encode_latents(pixels))

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, embed_dim, h, w) -> pixels (B, 3, h*f, w*f), not clamped."""
        return self.decoder(self.post_quant_conv(z_q))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) (or (h, w)) -> pixels (B, 3, h*f, w*f) as float, not clamped."""
        if codes.ndim == 2:
            codes = codes[None]
        if codes.ndim != 3:
            raise ShapeError(f"codes must be (B, h, w), got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise CodeRangeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise CodeRangeError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        weight = self.quantize.embedding.weight
        h, w = codes.shape[-2:]
        with self._latent_positions(h, w, f"decode a {h}x{w} code grid"):
            return self.decode_latents(self.quantize.lookup(codes.to(weight.device).long()))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: returns ``(reconstruction, codes, vq_loss)``."""
        z_q, codes, vq_loss = self.quantize(self.encode_latents(pixels))
        return self.decode_latents(z_q), codes, vq_loss

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write liquidgen's format (``config.json`` + ``model.safetensors``) atomically."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            (tmp / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> VQGAN:
        """Load a tokenizer folder in liquidgen's or the authors' format (strict on every key)."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: tokenizer folder not found")
        # A released Liquid folder also holds the LLM's config.json: only a config.json
        # describing a VQGAN (with ``n_embed``) selects liquidgen's format.
        ours = (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()
        config_data = _read_json(path / CONFIG_FILE) if ours else {}
        if ours and "n_embed" in config_data:
            config = VQGANConfig.from_dict(config_data)
            try:
                state = load_file(str(path / WEIGHTS_FILE))
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f"{path / WEIGHTS_FILE}: unreadable safetensors ({e})") from e
        elif (path / AUTHORS_CONFIG).is_file() and (path / AUTHORS_WEIGHTS).is_file():
            config = read_authors_config(path / AUTHORS_CONFIG)
            state = read_authors_state_dict(path / AUTHORS_WEIGHTS)
        else:
            raise CheckpointError(
                f"{path}: expected {CONFIG_FILE} + {WEIGHTS_FILE} (liquidgen) "
                f"or {AUTHORS_CONFIG} + {AUTHORS_WEIGHTS} (authors' format)"
            )
        with torch.device("meta"):
            model = cls(config)
        load_state_dict_strict(model, state, source=str(path))
        return model.to(device=device, dtype=dtype).eval()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(data, dict):  # valid JSON, but e.g. null or a number
        kind = "null" if data is None else type(data).__name__
        raise CheckpointError(f"{path}: expected a JSON object, got {kind}")
    return data


def read_authors_config(path: str | os.PathLike[str]) -> VQGANConfig:
    """Parse the authors' ``vqgan.yaml`` (``model.params.{ddconfig, n_embed, embed_dim}``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        params = data["model"]["params"]
    except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a VQGAN yaml with model.params ({e!r})") from e
    return VQGANConfig.from_dict(params)


def read_authors_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a Lightning ``vqgan.ckpt`` without the ``loss.*`` training modules.

    Uses ``weights_only=True``: the file is never unpickled into arbitrary objects.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch parsing untrusted bytes: UnpicklingError, KeyError, ...
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot read checkpoint safely ({reason})") from e
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state_dict in checkpoint")
    return {k: v for k, v in state.items() if not k.startswith(_DROPPED_PREFIXES)}


def load_state_dict_strict(
    module: nn.Module, state: dict[str, torch.Tensor], *, source: str
) -> None:
    """Load ``state`` into ``module`` (possibly on the meta device), naming the first bad key.

    Raises :class:`CheckpointError` for a missing key, an unexpected key or a shape mismatch.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing key '{missing[0]}'{more}")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}'{more}")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: key '{key}' has shape {tuple(state[key].shape)}, model expects {tuple(ref.shape)}"
            )
    module.load_state_dict(state, strict=True, assign=True)
