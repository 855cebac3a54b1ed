"""PhotoGuard's encoder attack: pull the VAE-encoder latent of the photo toward a target latent.

Latent-diffusion editors (SD img2img, inpainting, InstructPix2Pix) start from the
VAE encoding of the photo; if that encoding is a grey or foreign image, the edit is
built on it instead. The perturbation stays at the photo's full resolution; the
encoder sees a differentiable resize to at most ``max_side`` pixels.
"""

from __future__ import annotations

from typing import Union

import torch

from ..image import resize_to, working_size
from ._renamed import renamed_getattr
from .optim import LossFn

Target = Union[str, torch.Tensor]


def vae_latent_mean(vae, images: torch.Tensor) -> torch.Tensor:
    """Mean of the VAE posterior for [0, 1] images (the encoder's deterministic output)."""
    encoded = vae.encode(images * 2.0 - 1.0)
    distribution = encoded.latent_dist if hasattr(encoded, "latent_dist") else encoded[0]
    return distribution.mean


class EncoderProtection:
    """Builds the PhotoGuard encoder objective for a diffusers ``AutoencoderKL``.

    ``target`` is ``"zero"`` (the all-zero latent), ``"gray"`` (the latent of a mid-grey
    image, PhotoGuard's usual choice) or an image tensor whose latent is the target.

    Args:
        vae (AutoencoderKL): the editor's autoencoder (frozen here).
        target: ``"gray"``, ``"zero"`` or an image tensor (resized to each photo).
        max_side: the encoder's working size (longest side); None for the full size.

    Shapes:
        - objective(images): images (B, 3, H, W) in [0, 1]; the returned loss_fn maps (B, 3, H, W) -> (B,)
        - target: (1, 3, h, w) in [0, 1] when an image

    Examples:
        >>> import torch
        >>> from photoshield import models
        >>> from photoshield.protect import EncoderProtection
        >>> vae = models.load("autoencoder-small", device="cpu")
        >>> photo = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> loss_fn = EncoderProtection(vae, target="gray").objective(photo)
        >>> losses = loss_fn(photo)
        >>> losses.shape, bool((losses > 0).all()), bool(loss_fn(torch.full_like(photo, 0.5)).max() < 1e-6)
        (torch.Size([2]), True, True)
    """

    def __init__(self, vae, target: Target = "gray", max_side: int | None = 512):
        self.vae = vae.eval().requires_grad_(False)
        self.target = target
        self.max_side = max_side
        self.multiple = 2 ** (len(getattr(vae.config, "block_out_channels", [0])) - 1)

    def _size(self, images: torch.Tensor) -> tuple[int, int]:
        return working_size(*images.shape[-2:], self.max_side, self.multiple)

    def _dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latent mean of ``images`` at the working size (differentiable)."""
        return vae_latent_mean(self.vae, resize_to(images, self._size(images)).to(self._dtype())).float()

    @torch.no_grad()
    def target_latent(self, images: torch.Tensor) -> torch.Tensor:
        """The latent the protected photo is pulled toward, shaped like ``encode(images)``."""
        if isinstance(self.target, torch.Tensor):
            target = resize_to(self.target.to(images), tuple(images.shape[-2:]))
            return self.encode(target.expand_as(images))
        if self.target == "zero":
            return torch.zeros_like(self.encode(images))
        if self.target == "gray":
            return self.encode(torch.full_like(images, 0.5))
        raise ValueError(f"target must be 'zero', 'gray' or an image tensor, got {self.target!r}")

    def objective(self, images: torch.Tensor) -> LossFn:
        """``loss_fn(x_adv)``: mean squared distance of each image's latent to its target latent."""
        target = self.target_latent(images)

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            return (self.encode(x_adv) - target).pow(2).flatten(1).mean(1)

        return loss_fn


__getattr__ = renamed_getattr(__name__, globals(), ("EncoderAttack",))  # the old name, deprecated
