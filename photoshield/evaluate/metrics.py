"""Compatibility alias: the image-difference metrics live in :mod:`photoshield.metrics` (the lowest layer)."""

from ..metrics import __all__, l2, linf, mse, psnr, region_psnr, region_ssim, rmse255, ssim, summary  # noqa: F401
