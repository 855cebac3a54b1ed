"""Problems as one line: a decoder exception as a short reason, a file that ends early as an ImageError.

Every reader in this package reports bad input as :class:`~photoshield.errors.ImageError` naming the
file; this module holds the two helpers they share to phrase it: ``reason`` turns any decoder
exception into one short line, and ``cut_short`` builds the error for a file that ends before its
structure does, chained to an ``EOFError`` that gives the byte offsets.
"""

from __future__ import annotations

from pathlib import Path

from PIL import UnidentifiedImageError

from ..errors import ImageError


def reason(error: BaseException) -> str:
    """A decoder error as one short line (without Pillow's '<_io.BytesIO object at 0x...>')."""
    if isinstance(error, UnidentifiedImageError):
        return "Pillow cannot identify the content"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def cut_short(path: Path, problem: str, detail: str) -> ImageError:
    """An ImageError for a file that ends early, chained to an EOFError that gives the byte offsets."""
    error = ImageError(path, problem)
    error.__cause__ = EOFError(detail)
    error.__suppress_context__ = True
    return error
