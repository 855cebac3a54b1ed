"""Protect a photo file in one call: read it, protect it, write ``NAME.protected.png`` next to it.

    import photoshield as ps
    result = ps.protect("me.jpg")            # -> me.protected.png (me.protected-1.png if that exists)
    result.path, print(result.summary())

``photoshield.protect(...)`` called on a path is :func:`protect_file`; on a tensor or PIL image it is
:func:`photoshield.protect.protect` (nothing is written).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import PhotoshieldError
from .api import ProtectionResult, protect

__all__ = ["default_output", "protect_file"]

_MAX_NUMBERED = 1000


def default_output(source: str | os.PathLike, suffix: str = ".png") -> Path:
    """``me.protected.png`` next to ``source``, or the first free ``me.protected-N.png`` (N = 1, 2, ...)."""
    source = Path(source)
    for number in range(_MAX_NUMBERED):
        name = f"{source.stem}.protected{'' if number == 0 else f'-{number}'}{suffix}"
        if not (source.parent / name).exists():
            return source.parent / name
    raise PhotoshieldError(f"{source}: {source.stem}.protected-1 to -{_MAX_NUMBERED - 1}{suffix} all exist; "
                           "pass output= to choose a name")


def _reserve(target: Path) -> bool:
    """Create ``target`` empty if it does not exist (atomically); False when something is already there."""
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return False
    return True


def protect_file(source: str | os.PathLike, output: str | os.PathLike | None = None, *, overwrite: bool = False,
                 **options: Any) -> ProtectionResult:
    """Protect the photo at ``source`` and write it; the result's ``path`` says where.

    ``output`` defaults to ``NAME.protected.png`` next to ``source`` and never replaces a file: when that name
    is taken, the first free ``NAME.protected-N.png`` is used. An ``output`` that exists is refused unless
    ``overwrite=True``; the input itself is never written. ``options`` go to :func:`photoshield.protect.protect`
    (``method``, ``epsilon``, ``preset``, ``steps``, ...). The ICC profile and EXIF (without GPS) are kept.
    A photo interrupted with Ctrl-C is not written (KeyboardInterrupt is raised again).

    Args:
        source: the photo file.
        output: where to write; None for ``NAME.protected.png`` next to ``source``.
        overwrite: allow replacing an existing ``output``.
        **options: the options of :func:`photoshield.protect.protect`.

    Returns:
        The result, a :class:`ProtectionResult`, with ``path`` set to the file written.

    Raises:
        PhotoshieldError: ``source`` is missing, ``output`` is the input or exists, or no free name is left.
        ImageError: the photo cannot be read or written.

    Examples:
        >>> import shutil, tempfile
        >>> from pathlib import Path
        >>> from photoshield import data
        >>> from photoshield.io import write_image
        >>> from photoshield.image import resize_to
        >>> from photoshield.protect import protect_file
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = write_image(resize_to(data.sample("obama")[..., :256, 100:356], (112, 112)), folder / "me.jpg")
        >>> options = dict(models=["dlib-resnet"], judges=(), steps=1, device="cpu", progress=False)
        >>> protect_file(folder / "me.jpg", **options).path.name
        'me.protected.png'
        >>> protect_file(folder / "me.jpg", **options).path.name  # never replaces a file
        'me.protected-1.png'
        >>> shutil.rmtree(folder)
    """
    from ..io import read_photo, write_image

    source = Path(source)
    if not source.is_file():
        raise PhotoshieldError(f"{source}: file not found")
    if output is not None:
        target = Path(output)
        if target.exists() and target.resolve() == source.resolve():
            raise PhotoshieldError(f"{target}: is the input photo; write the protected photo to another path")
        if target.exists() and not overwrite:
            raise PhotoshieldError(f"{target}: already exists; pass overwrite=True or another output")
    photo = read_photo(source)
    result = protect(photo.pixels, **options)
    if result.report.get("interrupted"):  # only part of the optimisation ran: keep nothing
        raise KeyboardInterrupt
    if output is None:  # pick a free name and claim it, so that a file made meanwhile is never replaced
        for _ in range(_MAX_NUMBERED):
            target = default_output(source)
            if _reserve(target):
                break
        else:
            raise PhotoshieldError(f"{source}: no free name for the protected photo; pass output=")
    try:
        write_image(result.image, target, metadata=photo)
    except BaseException:
        if output is None:
            target.unlink(missing_ok=True)  # our empty placeholder
        raise
    result.path = target
    return result
