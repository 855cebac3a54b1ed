"""Typed errors that the CLI turns into one clear line."""

from __future__ import annotations

import os


class PhotoshieldError(Exception):
    """Base class of every error photoshield raises on purpose.

    Its message is one line meant for the user (the command line prints it without a traceback), so
    ``except PhotoshieldError`` catches every foreseen problem and lets programming errors through.

    Examples:
        >>> import photoshield
        >>> from photoshield import attacks
        >>> try:
        ...     attacks.get("jpeg", quality=500)
        ... except photoshield.PhotoshieldError as error:
        ...     print(error)
        jpeg: quality must be in [1, 100], got 500
    """


class ImageError(PhotoshieldError, ValueError):
    """An image file cannot be read or written; the message names the file and the problem.

    Also a ``ValueError``, so code that guards image decoding with ``except ValueError`` keeps working.

    Args:
        path: the file (None when there is none, e.g. bytes in memory).
        problem: what is wrong, in words (kept as ``error.problem``).

    Examples:
        >>> import photoshield
        >>> from photoshield.io import read_image
        >>> try:
        ...     read_image("no-such-photo.jpg")
        ... except photoshield.ImageError as error:
        ...     print(error.path, "|", error.problem)
        no-such-photo.jpg | file not found
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ModelNotFoundError(PhotoshieldError, FileNotFoundError):
    """A named checkpoint is not available; the message says how to get it.

    Also a ``FileNotFoundError``. Raised for an unknown name (the message lists the known ones) and for a
    known checkpoint whose file is in none of the places looked in.

    Examples:
        >>> import photoshield
        >>> from photoshield.models import registry
        >>> try:
        ...     registry.get_checkpoint("no-such-model")
        ... except photoshield.ModelNotFoundError as error:
        ...     print(error)
        unknown model 'no-such-model'; known models: autoencoder-small, ...
    """


class ChecksumError(PhotoshieldError):
    """A checkpoint file does not match the sha256 recorded in the registry."""
