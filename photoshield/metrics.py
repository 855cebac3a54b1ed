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
    """Mean squared difference per image, in the inputs' units (float64 for exact small values).

    Args:
        a: the reference images.
        b: the images compared with them, the same shape.

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W)
        - output: (B,) float64

    Returns:
        The mean of ``(a - b)**2`` over each image's pixels and channels.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> metrics.mse(torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5))
        tensor([0.2500, 0.2500], dtype=torch.float64)
    """
    a, b = _pair(a, b)
    return (a.double() - b.double()).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range^2 / MSE).

    Identical images give ``+inf`` (MSE 0), so callers can tell "untouched" from "nearly".

    Args:
        a: the reference images.
        b: the images compared with them, the same shape.
        data_range: the span of pixel values (1 for [0, 1] images).

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, data_range]
        - output: (B,) float32

    Returns:
        PSNR in dB per image (``inf`` for identical images).

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> clean = torch.zeros(2, 3, 8, 8)
        >>> metrics.psnr(clean, clean + 0.1)
        tensor([20., 20.])
        >>> metrics.psnr(clean, clean)
        tensor([inf, inf])
    """
    error = mse(a, b)
    with torch.no_grad():
        value = 10.0 * torch.log10(data_range**2 / error)
    return value.float()


def ssim(a: torch.Tensor, b: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Structural similarity per image (kornia, Gaussian window 11, sigma 1.5), mean over pixels and channels.

    The mean is over the 'valid' region (windows fully inside the image, as in Wang et al.)
    when the image is at least ``window_size`` on each side, else over the zero-padded map.

    Args:
        a: the reference images in [0, 1].
        b: the images compared with them, the same shape.
        window_size: side of the Gaussian window in pixels (odd).

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, 1]
        - output: (B,) float32

    Returns:
        SSIM per image, 1 for identical images.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> photo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> metrics.ssim(photo, photo)
        tensor([1.])
        >>> float(metrics.ssim(photo, (photo + 0.05).clamp(0, 1))) < 1
        True
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
    """PSNR in dB per image over the pixels where ``mask`` is above 0.5, e.g. the face boxes.

    A perturbation confined to a face reads 10 dB better over the whole photo than where the eye looks
    (``region_psnr(photo, protected, face_boxes_mask(photo, boxes))`` measures where it looks).

    Args:
        a: the reference images.
        b: the images compared with them, the same shape.
        mask: where to measure (values above 0.5); at least one pixel per image.
        data_range: the span of pixel values (1 for [0, 1] images).

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, data_range]
        - mask: (B, 1, H, W) or (1, 1, H, W)
        - output: (B,) float32

    Returns:
        PSNR in dB per image over the masked pixels.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> clean = torch.zeros(1, 3, 16, 16)
        >>> changed = clean.clone()
        >>> changed[..., :8, :] = 0.1  # the top half only
        >>> top = torch.zeros(1, 1, 16, 16)
        >>> top[..., :8, :] = 1
        >>> metrics.region_psnr(clean, changed, top), metrics.psnr(clean, changed)
        (tensor([20.]), tensor([23.0103]))
    """
    a, b = _pair(a, b)
    region = _region(mask, a)
    error = ((a.double() - b.double()).pow(2) * region).flatten(1).sum(1) / (region.flatten(1).sum(1) * a.shape[1])
    return (10.0 * torch.log10(data_range**2 / error)).float()


def region_ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """SSIM per image averaged over the pixels where ``mask`` is above 0.5 (the same-size SSIM map).

    Args:
        a: the reference images in [0, 1].
        b: the images compared with them, the same shape.
        mask: where to measure (values above 0.5); at least one pixel per image.
        window_size: side of the Gaussian window in pixels (odd).

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, 1]
        - mask: (B, 1, H, W) or (1, 1, H, W)
        - output: (B,) float32

    Returns:
        Mean SSIM per image over the masked pixels.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> photo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> changed = photo.clone()
        >>> changed[..., 16:, :] = 0.5  # the bottom half only
        >>> top = torch.zeros(1, 1, 32, 32)
        >>> top[..., :8, :] = 1
        >>> metrics.region_ssim(photo, changed, top)
        tensor([1.])
    """
    a, b = _pair(a, b)
    region = _region(mask, a)
    value = kornia.metrics.ssim(a.float(), b.float(), window_size, max_val=1.0, padding="same").double()
    return ((value * region).flatten(1).sum(1) / (region.flatten(1).sum(1) * a.shape[1])).float()


def linf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest absolute pixel difference per image, in 0-255 units (an L-inf budget of 8/255 reads 8).

    Args:
        a: the reference images in [0, 1].
        b: the images compared with them, the same shape.

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, 1]
        - output: (B,) float32

    Returns:
        ``max |a - b| * 255`` per image.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> clean = torch.zeros(1, 3, 8, 8)
        >>> metrics.linf(clean, clean + 8 / 255)
        tensor([8.])
    """
    a, b = _pair(a, b)
    return (a.double() - b.double()).abs().flatten(1).amax(1).mul(255.0).float()


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of the difference per image over all pixels and channels, in 0-255 units.

    It grows with image size (sqrt of the number of values); use ``rmse255`` to compare sizes.

    Args:
        a: the reference images in [0, 1].
        b: the images compared with them, the same shape.

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, 1]
        - output: (B,) float32

    Returns:
        ``||(a - b) * 255||_2`` per image.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> clean = torch.zeros(1, 3, 4, 4)  # 48 values
        >>> metrics.l2(clean, clean + 1 / 255)
        tensor([6.9282])
    """
    a, b = _pair(a, b)
    return (a.double() - b.double()).mul(255.0).flatten(1).norm(dim=1).float()


def rmse255(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root mean squared difference per image in 0-255 units (size-independent L2).

    Args:
        a: the reference images in [0, 1].
        b: the images compared with them, the same shape.

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, 1]
        - output: (B,) float32

    Returns:
        ``sqrt(mean((a - b)**2)) * 255`` per image.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> clean = torch.zeros(1, 3, 4, 4)
        >>> metrics.rmse255(clean, clean + 2 / 255)
        tensor([2.])
    """
    return mse(a, b).sqrt().mul(255.0).float()


def summary(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """All metrics above as a dict of (B,) tensors: psnr, ssim, linf, l2, rmse255.

    Args:
        a: the reference images in [0, 1].
        b: the images compared with them, the same shape.

    Shapes:
        - a, b: (B, C, H, W) or (C, H, W) in [0, 1]
        - every value: (B,)

    Returns:
        ``{"psnr": ..., "ssim": ..., "linf": ..., "l2": ..., "rmse255": ...}``.

    Examples:
        >>> import torch
        >>> from photoshield import metrics
        >>> clean = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> report = metrics.summary(clean, (clean + 4 / 255).clamp(0, 1))
        >>> sorted(report), report["linf"]
        (['l2', 'linf', 'psnr', 'rmse255', 'ssim'], tensor([4., 4.]))
    """
    return {"psnr": psnr(a, b), "ssim": ssim(a, b), "linf": linf(a, b), "l2": l2(a, b), "rmse255": rmse255(a, b)}
