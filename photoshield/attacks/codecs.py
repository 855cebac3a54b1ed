"""Lossy codecs: real encode/decode round trips (imagecodecs) and a differentiable JPEG (kornia).

The real codecs round each image to 8 bits, encode, decode and return a float tensor, exactly
what happens when a photo is saved and re-read. They are not differentiable; set
``straight_through=True`` to pass gradients through unchanged (for training noise layers).
"""

from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np
import torch
from kornia.enhance import jpeg_codec_differentiable

from .base import Attack, register

__all__ = ["AVIF", "DiffJPEG", "JPEG", "JPEGXL", "WebP"]


class _Codec(Attack):
    """Shared round trip: float batch -> uint8 HWC images -> bytes -> uint8 -> float batch."""

    defaults: dict[str, Any] = {"quality": 75, "straight_through": False}
    strength_range = {"quality": (90, 10)}
    bounds = {"quality": (1, 100)}

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return bool(self.params["straight_through"])

    def roundtrip(self, image: np.ndarray) -> np.ndarray:
        """Encode and decode one (H, W, 3) uint8 image."""
        raise NotImplementedError

    def encoded_size(self, images: torch.Tensor) -> list[int]:
        """Bytes of each encoded image at these settings (for rate/robustness reports)."""
        return [len(self.encode(array)) for array in _to_uint8(images)]

    def encode(self, image: np.ndarray) -> bytes:
        raise NotImplementedError

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        decoded = np.stack([self.roundtrip(array) for array in _to_uint8(images)])
        out = torch.from_numpy(decoded).permute(0, 3, 1, 2).to(device=images.device, dtype=images.dtype) / 255.0
        if self.params["straight_through"]:
            out = images + (out - images).detach()
        return out


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) contiguous uint8, rounded like a saved file."""
    array = images.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return np.ascontiguousarray(array.permute(0, 2, 3, 1).cpu().numpy())


@register("jpeg")
class JPEG(_Codec):
    """Baseline JPEG (libjpeg) round trip, as when a photo is saved as JPEG and read back.

    Keyword Args:
        quality (int): 1-100 (default 75); ``strength`` s maps it linearly 90 -> 10.
        subsampling (str): chroma subsampling: "420" (default, what cameras and most web tools write),
            "422" or "444".
        straight_through (bool): pass gradients through unchanged (default false; BPDA).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1] (on the 8-bit grid)

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> jpeg = attacks.JPEG(quality=50)
        >>> jpeg.describe(), jpeg(torch.rand(2, 3, 32, 32)).shape
        ('jpeg:quality=50', torch.Size([2, 3, 32, 32]))
        >>> attacks.JPEG(strength=0.5).params["quality"]
        50
    """

    defaults = {"quality": 75, "subsampling": "420", "straight_through": False}
    choices = {"subsampling": ("444", "422", "420")}

    def encode(self, image: np.ndarray) -> bytes:
        return imagecodecs.jpeg8_encode(image, level=self.params["quality"], subsampling=self.params["subsampling"])

    def roundtrip(self, image: np.ndarray) -> np.ndarray:
        return imagecodecs.jpeg8_decode(self.encode(image))


@register("webp")
class WebP(_Codec):
    """Lossy WebP (libwebp) round trip.

    Keyword Args:
        quality (int): 1-100 (default 75); ``strength`` maps it 90 -> 10.
        straight_through (bool): pass gradients through unchanged (default false; BPDA).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1] (on the 8-bit grid)

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> webp = attacks.WebP(strength=1.0)
        >>> webp.describe(), webp(torch.rand(1, 3, 32, 32)).shape
        ('webp:quality=10', torch.Size([1, 3, 32, 32]))
    """

    def encode(self, image: np.ndarray) -> bytes:
        return imagecodecs.webp_encode(image, level=self.params["quality"], lossless=False)

    def roundtrip(self, image: np.ndarray) -> np.ndarray:
        return imagecodecs.webp_decode(self.encode(image))[..., :3]


@register("avif")
class AVIF(_Codec):
    """AVIF (libavif/AV1) round trip.

    Keyword Args:
        quality (int): 1-100 (default 75); ``strength`` maps it 90 -> 10.
        speed (int): 0-10 (default 8): AV1 encoder effort; the library default (slowest) can take tens
            of seconds per 512 px image and barely changes the pixels at the same quality.
        straight_through (bool): pass gradients through unchanged (default false; BPDA).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1] (on the 8-bit grid)

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> avif = attacks.AVIF(quality=40)
        >>> avif.describe(), avif(torch.rand(1, 3, 32, 32)).shape
        ('avif:quality=40', torch.Size([1, 3, 32, 32]))
    """

    defaults = {"quality": 75, "speed": 8, "straight_through": False}
    bounds = {"quality": (1, 100), "speed": (0, 10)}

    def encode(self, image: np.ndarray) -> bytes:
        return imagecodecs.avif_encode(image, level=self.params["quality"], speed=self.params["speed"])

    def roundtrip(self, image: np.ndarray) -> np.ndarray:
        return imagecodecs.avif_decode(self.encode(image))[..., :3]


@register("jpegxl", "jxl")
class JPEGXL(_Codec):
    """JPEG XL (libjxl) round trip. Registered as ``jpegxl`` (alias ``jxl``).

    Keyword Args:
        quality (int): 1-100 (default 75; 90 is libjxl distance 1.0); ``strength`` maps it 90 -> 10.
        straight_through (bool): pass gradients through unchanged (default false; BPDA).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1] (on the 8-bit grid)

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> jxl = attacks.get("jxl", quality=60)
        >>> jxl.describe(), jxl(torch.rand(1, 3, 32, 32)).shape
        ('jpegxl:quality=60', torch.Size([1, 3, 32, 32]))
    """

    def encode(self, image: np.ndarray) -> bytes:
        return imagecodecs.jpegxl_encode(image, level=self.params["quality"])

    def roundtrip(self, image: np.ndarray) -> np.ndarray:
        return imagecodecs.jpegxl_decode(self.encode(image))[..., :3]


@register("jpeg-diff", "diffjpeg")
class DiffJPEG(Attack):
    """Differentiable JPEG (kornia ``jpeg_codec_differentiable``, Reich et al. 2024), 4:2:0 chroma.

    Any image size (kornia pads to multiples of 16 and crops back). It models the real codec closely
    but not exactly; use ``jpeg`` to measure, this one to optimise through. Registered as
    ``jpeg-diff`` (alias ``diffjpeg``).

    Keyword Args:
        quality (float): 1-100 (default 75); ``strength`` maps it 90 -> 10.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]; gradients reach ``images``

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.rand(1, 3, 24, 40, requires_grad=True)
        >>> attacks.DiffJPEG(quality=50)(images).mean().backward()
        >>> images.grad.shape
        torch.Size([1, 3, 24, 40])
    """

    defaults = {"quality": 75.0}
    strength_range = {"quality": (90.0, 10.0)}
    bounds = {"quality": (1.0, 100.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        quality = torch.full((1,), float(self.params["quality"]), device=images.device, dtype=images.dtype)
        return jpeg_codec_differentiable(images, quality)
