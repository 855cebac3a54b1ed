"""Read photos: a path -> ``Photo`` (upright pixels, alpha, ICC, EXIF), and the image files of a folder.

``read_photo`` opens the file safely (no FIFOs or devices, no files too large for the pixel limit),
finds the format from the content, checks the pixel limits on the header, decodes, and applies the
EXIF orientation. Anything unreadable raises :class:`~photoshield.errors.ImageError` naming the file.
``list_images`` lists the files a folder holds with a readable extension.
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch

from ..errors import ImageError

from . import sniff
from .decode import decode_avif_imagecodecs, decode_jxl, decode_pil, pixels_to_tensor
from .limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS_PER_BYTE, file_size_limit, pixel_check
from .metadata import ORIENTATION, export_exif, is_rgb_profile, orient
from .photo import Photo
from .problems import reason
from .sniff import SUPPORTED_READ_EXTENSIONS, SUPPORTED_READ_FORMATS, detect_format


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int = 8,
    max_pixels_per_byte: float | None = DEFAULT_MAX_PIXELS_PER_BYTE,
) -> torch.Tensor:
    """Read an image file as an upright (1, 3, H, W) float32 RGB tensor in [0, 1] (see ``read_photo``).

    Args:
        path: the image file; its format is told from its content, not its extension.
        max_pixels: refuse images with more pixels (width x height); None for no limit.
        min_size: refuse images narrower or shorter than this many pixels.
        max_pixels_per_byte: refuse large images that declare more pixels per byte of file (a
            decompression bomb); None for no limit.

    Shapes:
        - output: (1, 3, H, W) float32 in [0, 1], upright (EXIF orientation applied)

    Returns:
        The pixels only; :func:`read_photo` also gives the alpha plane, ICC profile and EXIF.

    Raises:
        ImageError: the file cannot be read as an image; the message names it and the problem.

    Examples:
        >>> from photoshield.data import sample_path
        >>> from photoshield.io import read_image
        >>> read_image(sample_path("chelsea")).shape
        torch.Size([1, 3, 300, 451])
    """
    return read_photo(path, max_pixels=max_pixels, min_size=min_size, max_pixels_per_byte=max_pixels_per_byte).pixels


def read_photo(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int = 8,
    max_pixels_per_byte: float | None = DEFAULT_MAX_PIXELS_PER_BYTE,
) -> Photo:
    """Read an image file with its alpha, ICC profile and EXIF; the format is found from the content.

    Raises ImageError naming the file for anything unreadable: a path that cannot be opened (missing,
    not a regular file, a NUL byte in the name...), empty, truncated, corrupt, pixel data that does not
    match the header, unknown format, larger than ``max_pixels``, more than ``max_pixels_per_byte``
    pixels per byte of file for an image above ``PLAUSIBLE_PIXELS_ANY_SIZE`` (both checked on the
    header, before decoding; None lifts a limit) or smaller than ``min_size`` on either side. Broken
    EXIF or ICC metadata is dropped with a warning, never an error.

    Args:
        path: the image file (JPEG, PNG, WebP, TIFF, BMP, GIF, AVIF, JPEG XL as this install supports).
        max_pixels: refuse images with more pixels (width x height); None for no limit.
        min_size: refuse images narrower or shorter than this many pixels.
        max_pixels_per_byte: refuse images above ``PLAUSIBLE_PIXELS_ANY_SIZE`` pixels that declare more
            pixels per byte of file; None for no limit.

    Shapes:
        - output.pixels: (1, 3, H, W) float32 in [0, 1], upright
        - output.alpha: (H, W) uint8 or uint16, or None

    Returns:
        The photo, a :class:`Photo`: the pixels and what a write must carry over (alpha, ICC profile, EXIF with
        the orientation reset to 1, format, bit depth, the path).

    Raises:
        ImageError: the file cannot be read as an image; the message names it and the problem.

    Examples:
        >>> from photoshield.data import sample_path
        >>> from photoshield.io import read_photo
        >>> photo = read_photo(sample_path("grace_hopper"))
        >>> photo.format, photo.bit_depth, photo.size, photo.pixels.shape
        ('JPEG', 8, (512, 437), torch.Size([1, 3, 512, 437]))
    """
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(bytes(path))
    path = Path(path)
    try:
        return _read_photo(path, max_pixels, min_size, max_pixels_per_byte)
    except ImageError:
        raise
    except MemoryError as e:
        raise ImageError(path, "not enough memory to decode this image") from e
    except RecursionError as e:
        raise ImageError(path, f"corrupt image data: the decoder gave up ({reason(e)})") from e
    except Exception as e:  # noqa: BLE001 - a decoder failure we did not foresee is still a bad file
        raise ImageError(path, f"corrupt or unsupported image data ({reason(e)})") from e


def _read_photo(path: Path, max_pixels: int | None, min_size: int, max_pixels_per_byte: float | None) -> Photo:
    """``read_photo`` without the last-resort conversion of unforeseen decoder errors into ImageError."""
    data = _read_bytes(path, file_size_limit(max_pixels))
    fmt = detect_format(data)
    if fmt is None:
        raise ImageError(path, f"not a recognised image format (supported: {', '.join(SUPPORTED_READ_FORMATS)})")
    if fmt == "HEIF":
        raise ImageError(path, "HEIC/HEIF images are not supported; convert the photo to JPEG or PNG first")
    if fmt not in SUPPORTED_READ_FORMATS:
        raise ImageError(path, f"{fmt} images cannot be decoded in this install (imagecodecs lacks the codec)")

    check_size = pixel_check(path, len(data), max_pixels, min_size, max_pixels_per_byte)

    if fmt == "JXL":
        decoded = decode_jxl(data, path, check_size)
    elif fmt == "AVIF" and not sniff.PIL_AVIF:
        decoded = decode_avif_imagecodecs(data, path, check_size)
    else:
        decoded = decode_pil(data, path, fmt, check_size)

    orientation = 1
    exif_bytes = None
    if decoded.exif is not None:
        with suppress(Exception):
            orientation = int(decoded.exif.get(ORIENTATION, 1))
        exif_bytes = export_exif(decoded.exif, path, keep_gps=True, tiff_ifd=decoded.exif_is_tiff_ifd)
    rgb = orient(decoded.rgb, orientation)
    alpha = None if decoded.alpha is None else np.ascontiguousarray(orient(decoded.alpha, orientation))
    icc = decoded.icc if isinstance(decoded.icc, bytes) and is_rgb_profile(decoded.icc) else None
    return Photo(
        pixels=pixels_to_tensor(rgb, decoded.maxval),
        alpha=alpha,
        icc_profile=icc,
        exif=exif_bytes,
        format=fmt,
        bit_depth=decoded.bit_depth,
        path=path,
    )


def _read_bytes(path: Path, size_limit: int | None = None) -> bytes:
    """The whole file, with a clear error for anything that is not a readable, non-empty regular file.

    The file is opened without blocking and checked on the open descriptor, so a FIFO or device that
    takes the place of a file is refused instead of hanging the read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        problem = "file not found" if not path.is_symlink() else "file not found (a symbolic link to a missing file)"
        raise ImageError(path, problem) from e
    except IsADirectoryError as e:
        raise ImageError(path, "is a directory, not an image file") from e
    except OSError as e:
        raise ImageError(path, f"cannot open the file ({e.strerror or e})") from e
    except ValueError as e:  # embedded NUL byte
        raise ImageError(path, f"invalid file name ({e})") from e
    try:
        try:
            info = os.fstat(fd)
        except OSError as e:
            raise ImageError(path, f"cannot access the file ({e.strerror or e})") from e
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(path, "is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(path, "is not a regular file (a FIFO, socket or device)")
        if info.st_size == 0:
            raise ImageError(path, "file is empty (0 bytes)")
        if size_limit is not None and info.st_size > size_limit:
            raise ImageError(path, f"file is {info.st_size:,} bytes, more than any image within the pixel limit"
                                   " can take; pass max_pixels=None to read it anyway")
        with suppress(OSError, AttributeError):  # back to blocking reads for a regular file
            os.set_blocking(fd, True)
        try:
            with os.fdopen(fd, "rb", closefd=True) as handle:
                fd = -1
                data = handle.read()
        except OSError as e:
            raise ImageError(path, f"cannot read the file ({e.strerror or e})") from e
    finally:
        if fd >= 0:
            os.close(fd)
    if not data:
        raise ImageError(path, "file is empty (0 bytes)")
    return data


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` with a recognised extension, sorted; hidden files and folders are skipped.

    Args:
        folder: the folder to list.
        recursive: also list the files of its subfolders.

    Returns:
        The paths, sorted by their path inside ``folder``; the extensions are those of
        ``SUPPORTED_READ_EXTENSIONS`` (in any case), and the content is not opened.

    Raises:
        ImageError: ``folder`` does not exist or is not a folder.

    Examples:
        >>> from photoshield.data import SAMPLES_DIR
        >>> from photoshield.io import list_images
        >>> [path.name for path in list_images(SAMPLES_DIR)][:3]
        ['aitzgorri.jpg', 'astronaut.png', 'barbara.jpg']
    """
    folder = Path(folder)
    if not folder.exists():
        raise ImageError(folder, "folder not found")
    if not folder.is_dir():
        raise ImageError(folder, "is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for candidate in candidates:
        relative = candidate.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if candidate.suffix.lower() in SUPPORTED_READ_EXTENSIONS and candidate.is_file():
            found.append(candidate)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
