"""Image-difference metrics, batched: one value per image pair, shape (B,).

Inputs are (B, 3, H, W) (or (3, H, W)) tensors in [0, 1]. ``linf``, ``l2`` and ``rmse255``
report in 0-255 units, the units perturbation budgets are quoted in (``--epsilon 8``).
"""

from __future__ import annotations

import kornia
import torch

__all__ = ["l2", "linf", "mse", "psnr", "region_psnr", "region_ssim", "rmse255", "ssim", "summary"]


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.ndim == 3:
        a = a[None]
    if b.ndim == 3:
        b = b[None]
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"metrics need two (B, C, H, W) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a.detach(), b.detach()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per image, in the inputs' units (float64 for exact small values)."""
    a, b = _pair(a, b)
    return (a.double() - b.double()).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range^2 / MSE).

    Identical images give ``+inf`` (MSE 0), so callers can tell "untouched" from "nearly".
    """
    error = mse(a, b)
    with torch.no_grad():
        value = 10.0 * torch.log10(data_range**2 / error)
    return value.float()


def ssim(a: torch.Tensor, b: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Structural similarity per image (kornia, Gaussian window 11, sigma 1.5), mean over pixels and channels.

    The mean is over the 'valid' region (windows fully inside the image, as in Wang et al.)
    when the image is at least ``window_size`` on each side, else over the zero-padded map.
    """
    a, b = _pair(a, b)
    padding = "valid" if min(a.shape[-2:]) >= window_size else "same"
    value = kornia.metrics.ssim(a.float(), b.float(), window_size, max_val=1.0, padding=padding)
    return value.flatten(1).mean(1)


def _region(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, 1, H, W) 0/1 float64 mask (values above 0.5 count) that selects at least one pixel per image."""
    mask = mask[None] if mask.ndim == 3 else mask
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"a region mask is (B, 1, H, W) at the image size {tuple(like.shape[-2:])}, got {tuple(mask.shape)}")
    region = (mask.detach() > 0.5).double().expand(like.shape[0], 1, *like.shape[-2:])
    if bool((region.flatten(1).sum(1) == 0).any()):
        raise ValueError("the region mask is empty for at least one image")
    return region


def region_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image over the pixels where ``mask`` (B or 1, 1, H, W) is above 0.5, e.g. the face boxes.

    A perturbation confined to a face reads 10 dB better over the whole photo than where the eye looks::

        region_psnr(photo, protected, face_boxes_mask(photo, boxes))
    """
    a, b = _pair(a, b)
    region = _region(mask, a)
    error = ((a.double() - b.double()).pow(2) * region).flatten(1).sum(1) / (region.flatten(1).sum(1) * a.shape[1])
    return (10.0 * torch.log10(data_range**2 / error)).float()


def region_ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """SSIM per image averaged over the pixels where ``mask`` is above 0.5 (the same-size SSIM map)."""
    a, b = _pair(a, b)
    region = _region(mask, a)
    value = kornia.metrics.ssim(a.float(), b.float(), window_size, max_val=1.0, padding="same").double()
    return ((value * region).flatten(1).sum(1) / (region.flatten(1).sum(1) * a.shape[1])).float()


def linf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest absolute pixel difference per image, in 0-255 units (an L-inf budget of 8/255 reads 8)."""
    a, b = _pair(a, b)
    return (a.double() - b.double()).abs().flatten(1).amax(1).mul(255.0).float()


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of the difference per image over all pixels and channels, in 0-255 units.

    It grows with image size (sqrt of the number of values); use ``rmse255`` to compare sizes.
    """
    a, b = _pair(a, b)
    return (a.double() - b.double()).mul(255.0).flatten(1).norm(dim=1).float()


def rmse255(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root mean squared difference per image in 0-255 units (size-independent L2)."""
    return mse(a, b).sqrt().mul(255.0).float()


def summary(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """All metrics above as a dict of (B,) tensors: psnr, ssim, linf, l2, rmse255."""
    return {"psnr": psnr(a, b), "ssim": ssim(a, b), "linf": linf(a, b), "l2": l2(a, b), "rmse255": rmse255(a, b)}
