"""Write photos: pixels (tensor, PIL image or ``Photo``) + metadata -> a file in the format of its extension.

``write_image`` validates the pixels, carries the alpha plane, ICC profile and EXIF (GPS removed
unless asked) from the source ``Photo``, encodes in memory and writes atomically; writing over the
input file is refused unless ``overwrite_input``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from ..errors import ImageError

from .atomic import atomic_write, same_file
from .encode import ALPHA_FORMATS, SIXTEEN_BIT_FORMATS, encode_pixels
from .metadata import export_exif, is_rgb_profile
from .photo import Photo
from .problems import reason
from .sniff import SUPPORTED_WRITE_EXTENSIONS


ImageInput = Union[torch.Tensor, Image.Image, Photo]


def write_image(
    image: ImageInput,
    path: str | os.PathLike,
    *,
    quality: int | None = None,
    metadata: Photo | None = None,
    keep_all_metadata: bool = False,
    overwrite_input: bool = False,
) -> Path:
    """Write an image atomically in the format named by the extension of ``path``; return the path.

    ``image`` is a (1, 3, H, W) / (3, H, W) tensor in [0, 1], a PIL image or a Photo (then it is also
    the metadata unless ``metadata`` is given). From ``metadata`` come the ICC profile, the EXIF
    (GPS location removed unless ``keep_all_metadata``), the alpha plane (dropped for JPEG and BMP)
    and 16-bit output for PNG/TIFF/JPEG XL when the source had 16 bits. ``quality`` (1-100) sets
    lossy formats (defaults: JPEG/WebP/JPEG XL 95, AVIF 90); 100 means lossless for WebP and JPEG XL.
    An alpha plane whose size no longer matches the pixels (after a crop or resize) is dropped with a
    warning. Writing onto ``metadata.path`` (the input file) is refused unless ``overwrite_input``.

    Args:
        image: the pixels: a tensor, a PIL image (its alpha plane is kept) or a :class:`Photo`.
        path: the output file; its extension picks the format (``SUPPORTED_WRITE_EXTENSIONS``).
        quality: 1-100 for the lossy formats; None for the defaults above.
        metadata: the :class:`Photo` read from the source file, whose metadata is carried over.
        keep_all_metadata: keep the EXIF GPS location too.
        overwrite_input: allow writing over the file ``metadata`` was read from.

    Shapes:
        - image: (1, 3, H, W) or (3, H, W) float in [0, 1]

    Returns:
        ``path``, written completely or not at all (a temporary file replaces it at the end).

    Raises:
        ImageError: an unknown extension, a bad ``quality``, a batch of more than one image, NaN
            values, a write over the input, or an encoder failure.

    Examples:
        >>> import shutil, tempfile, torch
        >>> from pathlib import Path
        >>> from photoshield.io import read_image, read_photo, write_image
        >>> folder = Path(tempfile.mkdtemp())
        >>> pixels = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
        >>> write_image(pixels, folder / "noise.png").name
        'noise.png'
        >>> bool((read_image(folder / "noise.png") - pixels).abs().max() <= 0.5 / 255)  # 8-bit PNG
        True
        >>> photo = read_photo(folder / "noise.png")
        >>> write_image(photo.pixels, folder / "noise.webp", quality=90, metadata=photo).name
        'noise.webp'
        >>> shutil.rmtree(folder)
    """
    path = Path(path)
    fmt = SUPPORTED_WRITE_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUPPORTED_WRITE_EXTENSIONS))
        raise ImageError(path, f"unknown output extension {path.suffix!r}; use one of {known}")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100):
        raise ImageError(path, f"quality must be an integer from 1 to 100, got {quality!r}")
    if isinstance(image, Photo) and metadata is None:
        metadata = image
    sources = {p for p in (getattr(image, "path", None), getattr(metadata, "path", None)) if p is not None}
    if not overwrite_input:
        for source in sources:
            if same_file(Path(source), path):
                raise ImageError(path, "refusing to overwrite the input file; write to another path "
                                       "(or pass overwrite_input=True)")

    sixteen = fmt in SIXTEEN_BIT_FORMATS and metadata is not None and metadata.bit_depth > 8
    rgb, alpha = _output_pixels(image, path, sixteen)
    if metadata is not None and metadata.alpha is not None:
        if metadata.alpha.shape == rgb.shape[:2]:
            alpha = metadata.alpha
        else:
            warnings.warn(f"{path}: alpha plane {metadata.alpha.shape} does not match the image "
                          f"{rgb.shape[:2]}; writing without alpha", stacklevel=2)
    if fmt not in ALPHA_FORMATS:
        alpha = None
    icc = metadata.icc_profile if metadata is not None and is_rgb_profile(metadata.icc_profile) else None
    exif = None
    if metadata is not None and metadata.exif:
        exif = export_exif(metadata.exif, path, keep_gps=keep_all_metadata)

    try:
        data = encode_pixels(fmt, rgb, alpha, sixteen, quality, icc, exif)
    except ImageError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"cannot encode as {fmt} ({reason(e)})") from e
    atomic_write(path, data)
    return path


def _output_pixels(image: ImageInput, path: Path, sixteen: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 (or uint16 when ``sixteen``) RGB, and an alpha plane if a PIL image has one."""
    alpha = None
    if isinstance(image, Photo):
        image = image.pixels
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            alpha = np.asarray(image.convert("RGBA"))[..., 3].copy()
        rgb = np.asarray(image.convert("RGB"))
        return (rgb.astype(np.uint16) * 257 if sixteen else rgb), alpha
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"write_image expects a tensor, PIL image or Photo, got {type(image).__name__}")
    tensor = image.detach()
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ImageError(path, f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ImageError(path, f"expected an image tensor of shape (1, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    if not tensor.is_floating_point():
        raise ImageError(path, f"expected a floating point tensor in [0, 1], got {tensor.dtype}")
    if not bool(torch.isfinite(tensor).all()):
        raise ImageError(path, "image tensor contains NaN or infinite values")
    top = 65535 if sixteen else 255
    levels = tensor.to("cpu", torch.float32).clamp(0, 1).mul(top).round_().to(torch.int32)
    array = levels.permute(1, 2, 0).numpy().astype(np.uint16 if sixteen else np.uint8)
    return np.ascontiguousarray(array), alpha
