"""Limits against decompression bombs, checked on the header before any pixel is decoded.

``DEFAULT_MAX_PIXELS`` caps width x height; ``DEFAULT_MAX_PIXELS_PER_BYTE`` caps how many pixels an
image above ``PLAUSIBLE_PIXELS_ANY_SIZE`` may declare per byte of its file (a setting read from the
environment variable PHOTOSHIELD_MAX_PIXELS_PER_BYTE). ``file_size_limit`` refuses a file too large to
be any image within the pixel limit before it is read, and ``pixel_check`` builds the check that each
decoder runs on the size its header declares.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

from ..errors import ImageError


#: Largest image (width x height) read by default: a guard against decompression bombs.
DEFAULT_MAX_PIXELS = 100_000_000


def ratio_from_environment(default: float) -> float | None:
    """PHOTOSHIELD_MAX_PIXELS_PER_BYTE: a number, or 0 / "none" for no plausibility limit."""
    text = os.environ.get("PHOTOSHIELD_MAX_PIXELS_PER_BYTE", "").strip().lower()
    if not text:
        return default
    if text in ("0", "none", "off", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        warnings.warn(f"PHOTOSHIELD_MAX_PIXELS_PER_BYTE={text!r} is not a number; using {default:g}", stacklevel=2)
        return default
    return value if value > 0 else None


#: Plausibility limit against decompression bombs: an image above ``PLAUSIBLE_PIXELS_ANY_SIZE`` pixels may
#: declare at most this many pixels per byte of its file. Camera JPEGs hold 2-10 pixels per byte, so 64
#: keeps every real photo; a flat PNG graphic can compress far more (up to ~8,000 pixels per byte) and is
#: read with ``max_pixels_per_byte=None``. The environment variable PHOTOSHIELD_MAX_PIXELS_PER_BYTE
#: (a number, or 0 for no limit) sets the default, e.g. for the command line.
DEFAULT_MAX_PIXELS_PER_BYTE: float | None = ratio_from_environment(64.0)
#: Images up to this many pixels (16.7 Mpx, e.g. 5312x2988) are never refused for their pixels per byte.
PLAUSIBLE_PIXELS_ANY_SIZE = 1 << 24
# Files larger than this many bytes per allowed pixel cannot be one image of that size (16-bit RGBA is 8).
_MAX_FILE_BYTES_PER_PIXEL = 8
_FILE_SLACK_BYTES = 64 << 20


def file_size_limit(max_pixels: int | None) -> int | None:
    """Largest file (bytes) that can hold one image within ``max_pixels``; None when there is no pixel limit."""
    size_limit = None
    if max_pixels is not None:
        size_limit = max_pixels * _MAX_FILE_BYTES_PER_PIXEL + _FILE_SLACK_BYTES
    return size_limit


def pixel_check(
    path: Path, file_bytes: int, max_pixels: int | None, min_size: int, max_pixels_per_byte: float | None
) -> Callable[[int, int], None]:
    """The check a decoder runs on the (width, height) a header declares: raises ImageError naming ``path``.

    Refuses more than ``max_pixels``, less than ``min_size`` on either side, and more than
    ``max_pixels_per_byte`` pixels per byte of a ``file_bytes``-byte file for an image above
    ``PLAUSIBLE_PIXELS_ANY_SIZE`` (None lifts a limit). Example: ``pixel_check(p, 5_000, 10**8, 8, 64.0)(40, 24)``.
    """

    def check_size(width: int, height: int) -> None:
        pixels = width * height
        if max_pixels is not None and pixels > max_pixels:
            raise ImageError(
                path, f"image is {width}x{height} = {pixels:,} pixels, above the limit of {max_pixels:,}"
                " (a possible decompression bomb; pass a larger max_pixels to read it anyway)"
            )
        if width < min_size or height < min_size:
            raise ImageError(path, f"image is {width}x{height}, smaller than the minimum of {min_size}x{min_size}")
        if (max_pixels_per_byte is not None and pixels > PLAUSIBLE_PIXELS_ANY_SIZE
                and pixels > max_pixels_per_byte * file_bytes):
            raise ImageError(
                path, f"image declares {width}x{height} = {pixels:,} pixels in a file of only {file_bytes:,} bytes"
                f" ({pixels / file_bytes:,.0f} pixels per byte, above the plausible {max_pixels_per_byte:g} for an"
                f" image over {PLAUSIBLE_PIXELS_ANY_SIZE:,} pixels): a likely decompression bomb. If it is a genuine"
                " (very flat) image, pass max_pixels_per_byte=None or set PHOTOSHIELD_MAX_PIXELS_PER_BYTE=0"
            )

    return check_size
