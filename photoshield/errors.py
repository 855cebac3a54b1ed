"""Typed errors that the CLI turns into one clear line."""

from __future__ import annotations

import os


class PhotoshieldError(Exception):
    """Base class of every error photoshield raises on purpose."""


class ImageError(PhotoshieldError, ValueError):
    """An image file cannot be read or written; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ModelNotFoundError(PhotoshieldError, FileNotFoundError):
    """A named checkpoint is not available; the message says how to get it."""


class ChecksumError(PhotoshieldError):
    """A checkpoint file does not match the sha256 recorded in the registry."""
