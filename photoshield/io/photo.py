"""The ``Photo`` record: upright pixels plus the parts of the file that must survive a round trip.

``read_photo`` returns one and ``write_image`` takes one as the metadata of what it writes: the alpha
plane, the RGB ICC profile, the EXIF block (orientation reset to 1), the source format and bit depth,
and the path it came from (so writing over it can be refused).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch


@dataclasses.dataclass(eq=False)
class Photo:
    """An upright RGB image plus the parts of its file that must come back out untouched on write.

    Made by :func:`read_photo`; pass it to :func:`write_image` as ``metadata=`` to keep them.

    Args:
        pixels: the upright RGB pixels.
        alpha: the alpha plane, upright, or None.
        icc_profile: the RGB ICC profile, or None (other colour spaces' profiles are not kept).
        exif: the EXIF block (``b"Exif\\0\\0"`` + TIFF) with the orientation reset to 1, or None.
        format: the format of the source file ("JPEG", "PNG", ...).
        bit_depth: bits per channel of the source (8 or 16).
        path: the file it was read from, or None.

    Shapes:
        - pixels: (1, 3, H, W) float32 in [0, 1]
        - alpha: (H, W) uint8 or uint16

    Examples:
        >>> import torch
        >>> from photoshield.io import Photo
        >>> photo = Photo(pixels=torch.zeros(1, 3, 4, 6))
        >>> photo.size, photo.format, photo.alpha is None
        ((4, 6), 'PNG', True)
    """

    pixels: torch.Tensor = dataclasses.field(repr=False)  # (1, 3, H, W) float32 in [0, 1]
    alpha: np.ndarray | None = dataclasses.field(default=None, repr=False)  # (H, W) uint8/uint16, upright
    icc_profile: bytes | None = dataclasses.field(default=None, repr=False)  # RGB profiles only
    exif: bytes | None = dataclasses.field(default=None, repr=False)  # b"Exif\0\0" + TIFF, orientation 1
    format: str = "PNG"
    bit_depth: int = 8
    path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the upright image."""
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])
