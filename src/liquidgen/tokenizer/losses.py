"""Training losses of the VQGAN tokenizer beyond the quantiser's own codebook/commitment term.

- :func:`reconstruction_losses`: L1 and L2 between the reconstruction and the input, optionally
  weighted per pixel (:func:`foreground_weights` up-weights non-background pixels).
- :class:`PatchDiscriminator` with :func:`hinge_d_loss` / :func:`hinge_g_loss`: a
  PatchGAN (pix2pix ``NLayerDiscriminator`` layout: stride-2 4x4 convs, BatchNorm,
  LeakyReLU 0.2) that scores overlapping patches as real or reconstructed.
- :func:`adaptive_gan_weight`: the VQGAN paper's balance between the reconstruction and
  adversarial gradients at the decoder's last layer.
- :class:`PerceptualLoss`: an LPIPS-style distance (VGG16 features, channel-normalised,
  weighted by learned 1x1 "lin" layers). It has no weights of its own: they are read from
  local files (torchvision's ``vgg16`` state dict and LPIPS' ``vgg.pth`` lin layers), since
  nothing can be downloaded here; without them the perceptual loss is simply not used.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from liquidgen.errors import CheckpointError

LEAKY_SLOPE = 0.2  # LeakyReLU slope of the PatchGAN
DISC_INIT_STD = 0.02  # N(0, 0.02) conv init (N(1, 0.02) for norm scales), as in pix2pix/taming
ADAPTIVE_EPS = 1e-4  # keeps the adaptive weight finite when the GAN gradient vanishes
ADAPTIVE_MAX = 1e4  # upper clamp of the adaptive weight


def foreground_weights(target: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, H, W): ``1 + weight`` where a pixel is not background.

    Background is each image's per-channel median colour; a pixel is foreground when any
    channel differs from it by more than ``threshold`` (pixels in [-1, 1]). On sparse images
    (a few objects on a plain ground, like the procedural world) an unweighted loss is
    dominated by the background, and the tokenizer can then trade an object's colour for a
    cheaper background; weighting the objects makes their colour and outline cost what they
    are worth. ``weight == 0`` gives all-ones weights.
    """
    flat = target.float().flatten(2)  # (B, 3, H*W)
    ground = flat.median(dim=2).values[:, :, None, None]  # (B, 3, 1, 1)
    fg = ((target.float() - ground).abs() > threshold).any(dim=1, keepdim=True)  # (B, 1, H, W)
    return 1.0 + weight * fg.float()


def reconstruction_losses(
    recon: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute and mean squared error between ``recon`` and ``target`` (B, 3, H, W).

    With ``weights`` (B, 1, H, W) both are weighted means over pixels (normalised by the
    weights' sum, so a uniform weight changes nothing).
    """
    diff = recon.float() - target.float()
    if weights is None:
        return diff.abs().mean(), diff.pow(2).mean()
    norm = weights.sum() * diff.shape[1]
    return (diff.abs() * weights).sum() / norm, (diff.pow(2) * weights).sum() / norm


# ---------------------------------------------------------------------------------- PatchGAN
class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, C, H, W) -> logits (B, 1, h, w), one per overlapping image patch.

    ``n_layers`` stride-2 convolutions (the first without normalisation) followed by two
    stride-1 ones; widths ``ndf * 2**i`` capped at ``8 * ndf``. With the defaults
    (``ndf=64, n_layers=3``) each logit sees a 70x70 receptive field.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if ndf <= 0 or n_layers <= 0:
            raise ValueError(f"ndf and n_layers must be > 0, got {ndf}, {n_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        width = ndf
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            out = ndf * min(2**i, 8)
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, DISC_INIT_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, DISC_INIT_STD)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, h, w)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: push real logits above +1 and fake ones below -1."""
    return 0.5 * (
        F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean()
    )


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: raise the discriminator's logits on reconstructions."""
    return -logits_fake.float().mean()


def adaptive_gan_weight(
    rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor
) -> torch.Tensor:
    """``||d rec / d W|| / ||d g / d W||`` at the decoder's last weight ``W`` (VQGAN, Esser et al.).

    Scales the adversarial term so that its gradient at the output layer is as large as the
    reconstruction gradient, whatever their raw magnitudes. Returned detached.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + ADAPTIVE_EPS)
    return weight.clamp(0.0, ADAPTIVE_MAX).detach()


# ---------------------------------------------------------------------------------- LPIPS-style
# VGG16 "features" layout (torchvision indices): conv widths, "M" = 2x2 max-pool.
_VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS' input normalisation for pixels in [-1, 1] (ImageNet statistics mapped to that range).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_FEATURE_EPS = 1e-10


def _read_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a plain ``torch.save`` state dict (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: perceptual-loss weights not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        SafetensorError,
        pickle.UnpicklingError,
        RuntimeError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
    ) as e:
        raise CheckpointError(f"{path}: cannot read weights ({str(e).splitlines()[0]})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat state dict of tensors")
    return state


class PerceptualLoss(nn.Module):
    """LPIPS-style distance between images in [-1, 1]: (B, 3, H, W) x2 -> (B,).

    Architecture: VGG16 convolutional trunk (keys ``features.{i}.weight/bias`` as in
    torchvision's ``vgg16``), activations at the five ``relu*_*`` taps normalised to unit
    length along channels, squared differences weighted per channel by the ``lin{k}``
    1x1 convolutions of LPIPS (keys ``lin{k}.model.1.weight``), averaged over space and
    summed over taps. All weights are frozen. Numerical parity with the ``lpips`` package is
    not verified here (its weights are not available offline).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU()]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, c, 1, 1)) for c in _LPIPS_CHANNELS]
        )
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(
        cls, vgg_path: str | os.PathLike[str], lin_path: str | os.PathLike[str]
    ) -> PerceptualLoss:
        """Load the VGG16 trunk (torchvision state dict; ``classifier.*`` is ignored) and the
        LPIPS lin layers. Strict: a missing, unexpected or misshapen key raises CheckpointError."""
        model = cls()
        vgg = {k: v for k, v in _read_state(vgg_path).items() if not k.startswith("classifier.")}
        expected = {f"features.{k}": v for k, v in model.features.state_dict().items()}
        _check_keys(vgg, expected, str(vgg_path))
        model.features.load_state_dict({k.removeprefix("features."): v for k, v in vgg.items()})
        lin = _read_state(lin_path)
        lin_expected = {f"lin{k}.model.1.weight": p for k, p in enumerate(model.lins)}
        _check_keys(lin, lin_expected, str(lin_path))
        for k, p in enumerate(model.lins):
            p.data.copy_(lin[f"lin{k}.model.1.weight"])
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, y]).sub(self.shift).div(self.scale)  # (2B, 3, H, W)
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == _LPIPS_TAPS[tap]:
                f = h.float()
                f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + _FEATURE_EPS)
                fx, fy = f.chunk(2)
                d = (fx - fy).pow(2)  # (B, C, h, w)
                total = total + (d * self.lins[tap]).sum(1).mean(dim=(1, 2))
                tap += 1
                if tap == len(_LPIPS_TAPS):
                    break
        return total


def _check_keys(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str
) -> None:
    for key, ref in expected.items():
        if key not in state:
            raise CheckpointError(f"{source}: missing key '{key}'")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: key '{key}' has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}'")
