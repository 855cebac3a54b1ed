"""Perturbation shaping: make each PGD step less visible and more robust to compression.

Shapers are callables ``shaper(update, images) -> update`` that the engine applies to
every step before projection (FaceShield blurs each step around strong edges and
low-passes it in 8x8 DCT blocks, which both hides it and helps it survive JPEG). The
JND mask is a per-pixel budget map for the engine's ``mask`` argument.
"""

from __future__ import annotations

import math
from functools import lru_cache

import kornia
import torch
import torch.nn.functional as F

from ._renamed import renamed_getattr

BLOCK = 8


def luma(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of (B, 3, H, W) images, shape (B, 1, H, W)."""
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def edge_mask(images: torch.Tensor, quantile: float = 0.8, dilation: int = 5) -> torch.Tensor:
    """1 on and around strong edges (Sobel magnitude above a per-image quantile, dilated), else 0."""
    magnitude = kornia.filters.sobel(luma(images))
    flat = magnitude.flatten(1)
    threshold = torch.quantile(flat, quantile, dim=1).view(-1, 1, 1, 1)
    strong = (magnitude > threshold).float()
    if dilation > 1:
        strong = kornia.morphology.dilation(strong, torch.ones(dilation, dilation, device=images.device))
    return strong


class EdgeBlur:
    """Gaussian-blur the step inside (``region="edges"``) or outside (``"smooth"``) the dilated edge mask."""

    def __init__(self, kernel_size: int = 9, sigma: float = 5.0, quantile: float = 0.8, dilation: int = 5, region: str = "edges"):
        if region not in ("edges", "smooth"):
            raise ValueError(f"region must be 'edges' or 'smooth', got {region!r}")
        self.kernel_size, self.sigma = kernel_size, sigma
        self.quantile, self.dilation, self.region = quantile, dilation, region
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _mask(self, images: torch.Tensor) -> torch.Tensor:
        if self._cache is not None and self._cache[0] is images:
            return self._cache[1]
        mask = edge_mask(images, self.quantile, self.dilation)
        mask = mask if self.region == "edges" else 1.0 - mask
        self._cache = (images, mask)
        return mask

    def __call__(self, update: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        blurred = kornia.filters.gaussian_blur2d(update, (self.kernel_size, self.kernel_size), (self.sigma, self.sigma))
        mask = self._mask(images)
        return mask * blurred + (1.0 - mask) * update


@lru_cache(maxsize=8)
def _dct_basis(device: str, dtype: torch.dtype) -> torch.Tensor:
    """Orthonormal 8x8 DCT-II matrix D, so that a block's coefficients are D @ X @ D.T."""
    n = torch.arange(BLOCK, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * BLOCK))
    basis[0] *= 1 / math.sqrt(2)
    return (basis * math.sqrt(2 / BLOCK)).to(device=device, dtype=dtype)


def zigzag_keep_mask(keep: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """8x8 mask of the ``keep`` lowest-frequency DCT coefficients in JPEG zig-zag order."""
    if not 1 <= keep <= BLOCK * BLOCK:
        raise ValueError(f"keep must be in [1, 64], got {keep}")
    order = sorted(((u, v) for u in range(BLOCK) for v in range(BLOCK)), key=lambda uv: (uv[0] + uv[1], uv[0] if (uv[0] + uv[1]) % 2 else uv[1]))
    mask = torch.zeros(BLOCK, BLOCK, device=device)
    for u, v in order[:keep]:
        mask[u, v] = 1.0
    return mask


def dct_lowpass(x: torch.Tensor, keep: int = 25) -> torch.Tensor:
    """Keep the ``keep`` of 64 lowest-frequency coefficients of each 8x8 block (differentiable)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % BLOCK, (-width) % BLOCK
    padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
    b, c, h, w = padded.shape
    blocks = padded.view(b, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(3, 4)
    basis = _dct_basis(str(x.device), x.dtype)
    coefficients = basis @ blocks @ basis.T
    coefficients = coefficients * zigzag_keep_mask(keep, x.device).to(x.dtype)
    restored = (basis.T @ coefficients @ basis).transpose(3, 4).reshape(b, c, h, w)
    return restored[..., :height, :width]


class DCTLowPass:
    """Shaper form of :func:`dct_lowpass` (FaceShield keeps 25 of 64 coefficients)."""

    def __init__(self, keep: int = 25):
        zigzag_keep_mask(keep)
        self.keep = keep

    def __call__(self, update: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return dct_lowpass(update, self.keep)


class ComposeShapers:
    """Apply several update shapers in order: ``ComposeShapers(EdgeBlur(), DCTLowPass())(update, images)``."""

    def __init__(self, *shapers):
        self.shapers = [s for s in shapers if s is not None]

    def __call__(self, update: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        for shaper in self.shapers:
            update = shaper(update, images)
        return update


def jnd_mask(images: torch.Tensor, floor: float = 0.35, window: int = 7) -> torch.Tensor:
    """Per-pixel budget map in [floor, 1]: more where the eye sees changes less.

    Combines luminance adaptation (changes are less visible in dark and bright areas
    than at mid-grey, after Chou and Li's JND model) with texture masking (local
    standard deviation of luma), normalised so the most masked pixel gets 1.
    """
    y = luma(images) * 255.0
    background = kornia.filters.box_blur(y, (5, 5))
    dark = 17.0 * (1.0 - torch.sqrt(background.clamp_min(0) / 127.0)) + 3.0
    bright = 3.0 / 128.0 * (background - 127.0) + 3.0
    luminance = torch.where(background <= 127.0, dark, bright)
    mean = kornia.filters.box_blur(y, (window, window))
    texture = (kornia.filters.box_blur(y * y, (window, window)) - mean * mean).clamp_min(0).sqrt()
    visibility = luminance + 0.5 * texture
    peak = visibility.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (visibility / peak).clamp(min=floor, max=1.0)


def high_frequency_ratio(x: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Share of a signal's spectral energy above ``cutoff`` of the Nyquist radius, per image."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.float() - x.float().mean((-2, -1), keepdim=True)), dim=(-2, -1))
    energy = spectrum.abs().pow(2).sum(1)
    height, width = energy.shape[-2:]
    fy = torch.linspace(-1, 1, height, device=x.device).view(-1, 1)
    fx = torch.linspace(-1, 1, width, device=x.device).view(1, -1)
    high = (fy.pow(2) + fx.pow(2)).sqrt() > cutoff
    return (energy * high).flatten(1).sum(1) / energy.flatten(1).sum(1).clamp_min(1e-20)


def faceshield_shaper(kernel_size: int = 9, sigma: float = 5.0, keep: int = 25) -> ComposeShapers:
    """FaceShield's shaping: edge-region Gaussian blur of each step, then 8x8 DCT low-pass."""
    return ComposeShapers(EdgeBlur(kernel_size, sigma), DCTLowPass(keep))


__getattr__ = renamed_getattr(__name__, globals(), ("Compose",))  # the old name, deprecated
