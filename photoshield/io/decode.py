"""Decoders: file bytes of a known format -> integer pixel arrays, alpha, ICC and EXIF (``Decoded``).

Pillow decodes JPEG, PNG, WebP, TIFF, BMP, GIF and AVIF after the structural checks of
:mod:`photoshield.io.structure`; imagecodecs decodes JPEG XL, AVIF where Pillow lacks it, and the
full 16 bits of 16-bit PNG/TIFF pixels (Pillow keeps 8 bits of colour). Every decoder runs the
caller's pixel-limit check on the header size before decoding pixels. ``pixels_to_tensor`` turns the
arrays into the library's (1, 3, H, W) float32 tensor in [0, 1].
"""

from __future__ import annotations

import dataclasses
import io
import threading
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable

import imagecodecs
import numpy as np
import torch
from PIL import Image, ImageCms, ImageFile

from ..errors import ImageError

from .containers import avif_header, jxl_parts, jxl_size
from .metadata import ORIENTATION
from .problems import reason
from .structure import (
    JpegLayout,
    check_jpeg_scans_complete,
    check_png,
    jpeg_layout,
    png_without_metadata,
    tiff_first_ifd,
    tiff_sample_problem,
)


# A truncated file must raise, never decode to a gray bottom half.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclasses.dataclass
class Decoded:
    """What a decoder hands back before orientation is applied."""

    rgb: np.ndarray  # (H, W) or (H, W, 3), uint8 or uint16
    alpha: np.ndarray | None = None
    maxval: int = 255
    bit_depth: int = 8
    icc: bytes | None = None
    exif: Image.Exif | None = None
    exif_is_tiff_ifd: bool = False  # TIFF inputs: the image's own IFD, not a separate EXIF block


_PIL_LIMIT_LOCK = threading.Lock()


def _pil_open(data: bytes, fmt: str) -> Image.Image:
    """Open (parse the header only) with our own pixel limit in charge instead of Pillow's global one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=[fmt])
        except Image.DecompressionBombError:
            pass
        # Pillow refuses above 2 x MAX_IMAGE_PIXELS; re-open its header with that check off, then ours decides.
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(io.BytesIO(data), formats=[fmt])
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def decode_pil(data: bytes, path: Path, fmt: str, check_size: Callable[[int, int], None]) -> Decoded:
    """Decode with Pillow after the format's structure checks; broken PNG metadata chunks are dropped."""
    jpeg = None
    if fmt == "PNG":
        check_png(data, path, check_size)
    elif fmt == "JPEG":
        jpeg = jpeg_layout(data, path)
        check_size(jpeg.width, jpeg.height)
    try:
        return _decode_pil_once(data, path, fmt, check_size, jpeg)
    except ImageError as error:
        if fmt != "PNG":
            raise
        stripped, dropped = png_without_metadata(data)
        if not dropped:
            raise
        try:
            decoded = _decode_pil_once(stripped, path, fmt, check_size, None)
        except ImageError:
            raise error from error.__cause__
        warnings.warn(f"{path}: corrupt metadata ({', '.join(dropped)} chunks) was dropped", stacklevel=4)
        return decoded


def _decode_pil_once(
    data: bytes, path: Path, fmt: str, check_size: Callable[[int, int], None], jpeg: JpegLayout | None
) -> Decoded:
    """Decode with Pillow; 16-bit PNG/TIFF pixels come from imagecodecs (Pillow keeps only 8 bits of colour)."""
    try:
        im = _pil_open(data, fmt)
    except Exception as e:  # noqa: BLE001 - any parser failure is a bad file
        if fmt == "TIFF":
            problem = tiff_sample_problem(tiff_first_ifd(data))
            if problem:
                raise ImageError(path, problem) from e
        raise ImageError(path, f"corrupt {fmt} data: the header cannot be parsed ({reason(e)})") from e
    with im:
        check_size(*im.size)
        if fmt == "TIFF":
            tags = im.tag_v2
            if 50706 in tags or int(_first(tags.get(254, 0)) or 0) & 1:
                # DNG and most raw formats are TIFF files whose first image is a small preview.
                raise ImageError(path, "looks like a camera raw file (DNG, NEF, CR2...) whose first image is a "
                                       "reduced-size preview; raw files are not supported, convert to TIFF/PNG/JPEG")
            problem = tiff_sample_problem({tag: tags.get(tag) for tag in (258, 339) if tag in tags})
            if problem:
                raise ImageError(path, problem)
        frames = 1
        with suppress(Exception):  # counting pages must not fail a readable first image
            frames = int(getattr(im, "n_frames", 1))
        if frames > 1 and fmt != "JPEG":  # JPEG: MPO side images (depth, gain maps), not pages
            warnings.warn(f"{path}: has {frames} frames; only the first is used", stacklevel=5)
        try:
            im.load()
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ImageError(path, f"truncated or corrupt {fmt} data ({reason(e)})") from e
        if jpeg is not None:
            check_jpeg_scans_complete(data, jpeg, im, path)
        bits = _bits_per_sample(im, data, fmt)
        if bits == 16 and fmt in ("PNG", "TIFF"):
            decoded = _decode_16bit(data, path, fmt, im)
        else:
            decoded = _pil_pixels(im, path)
        icc = im.info.get("icc_profile")
        decoded.icc = bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None
        try:
            decoded.exif = im.getexif()
        except Exception:  # noqa: BLE001 - broken metadata must not make a good photo unreadable
            warnings.warn(f"{path}: EXIF data is corrupt and was dropped", stacklevel=5)
            decoded.exif = None
        decoded.exif_is_tiff_ifd = fmt == "TIFF"
        if decoded.icc is not None and im.mode == "CMYK":
            decoded.icc = None  # converted to sRGB in _pil_pixels; a CMYK profile no longer applies
    return decoded


def _first(value: Any) -> Any:
    """The first element of a tuple tag value, or the value itself."""
    return value[0] if isinstance(value, tuple) and value else value


def _bits_per_sample(im: Image.Image, data: bytes, fmt: str) -> int:
    """Bits per sample stored in the file (the IHDR of a PNG, tag 258 of a TIFF), else from the mode."""
    if fmt == "PNG" and len(data) > 24:
        return data[24]
    if fmt == "TIFF":
        bits = im.tag_v2.get(258, 8)
        return int(max(bits) if isinstance(bits, tuple) else bits)
    return {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}.get(im.mode, 8)


def _pil_pixels(im: Image.Image, path: Path) -> Decoded:
    """Turn a loaded Pillow image of any common mode into RGB (or gray) + alpha arrays."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("1", "RGBX", "YCbCr"):
        im = im.convert("L" if mode == "1" else "RGB")
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im)
    mode = im.mode
    if mode in ("L", "RGB"):
        return Decoded(np.asarray(im))
    if mode in ("LA", "RGBA"):
        array = np.asarray(im)
        return Decoded(array[..., :-1].squeeze(-1) if mode == "LA" else array[..., :3], alpha=array[..., -1].copy())
    if mode.startswith("I;16"):
        return Decoded(np.asarray(im).astype(np.uint16), maxval=65535, bit_depth=16)
    if mode == "I":
        array = np.asarray(im)
        if array.size and array.min() >= 0 and array.max() <= 65535:
            return Decoded(array.astype(np.uint16), maxval=65535, bit_depth=16)
    raise ImageError(path, f"unsupported pixel mode {im.mode!r} (e.g. floating point or 32-bit samples)")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> sRGB through the embedded profile when there is one, else Pillow's plain formula."""
    icc = im.info.get("icc_profile")
    if icc:
        with suppress(Exception):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return im.convert("RGB")


def _decode_16bit(data: bytes, path: Path, fmt: str, im: Image.Image) -> Decoded:
    """Full-precision pixels of a 16-bit PNG or TIFF (already validated by Pillow's decode)."""
    try:
        array = imagecodecs.png_decode(data) if fmt == "PNG" else imagecodecs.tiff_decode(data)
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"corrupt 16-bit {fmt} data ({reason(e)})") from e
    width, height = im.size
    if array.ndim == 3 and array.shape[:2] != (height, width) and array.shape[1:] == (height, width):
        array = np.moveaxis(array, 0, -1)  # planar TIFF
    if array.dtype != np.uint16 or array.shape[:2] != (height, width):
        raise ImageError(path, f"unsupported 16-bit {fmt} layout {array.dtype} {array.shape}")
    if fmt == "TIFF" and im.tag_v2.get(262) == 0:  # WhiteIsZero
        array = 65535 - array
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels == 1:
        return Decoded(array.reshape(height, width), maxval=65535, bit_depth=16)
    if channels == 2:
        return Decoded(array[..., 0], alpha=array[..., 1].copy(), maxval=65535, bit_depth=16)
    if channels == 3:
        return Decoded(array, maxval=65535, bit_depth=16)
    if channels == 4 and im.mode != "CMYK":
        return Decoded(array[..., :3], alpha=array[..., 3].copy(), maxval=65535, bit_depth=16)
    raise ImageError(path, f"unsupported 16-bit {fmt} with {channels} channels (mode {im.mode})")


def decode_jxl(data: bytes, path: Path, check_size) -> Decoded:
    """JPEG XL through imagecodecs (libjxl applies the codestream orientation); EXIF from the container."""
    boxes = dict(jxl_parts(data)) if data.startswith(b"\x00\x00\x00\x0cJXL ") else {"codestream": data}
    size = jxl_size(boxes.get("codestream", b""))
    if size is None:
        raise ImageError(path, "corrupt JPEG XL data: the image size cannot be read from the header")
    check_size(*size)
    try:
        array = imagecodecs.jpegxl_decode(data)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"truncated or corrupt JPEG XL data ({reason(e)})") from e
    decoded = _split_channels(array, path, "JPEG XL")
    if "exif" in boxes:
        exif = Image.Exif()
        with suppress(Exception):
            exif.load(boxes["exif"])
            exif[ORIENTATION] = 1  # libjxl already applied the (authoritative) codestream orientation
            decoded.exif = exif
    return decoded


def _split_channels(array: np.ndarray, path: Path, name: str, maxval: int | None = None) -> Decoded:
    """Gray / gray+alpha / RGB / RGBA array from imagecodecs -> Decoded."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(path, f"unsupported {name} sample type {array.dtype}")
    top = maxval or (255 if array.dtype == np.uint8 else 65535)
    depth = top.bit_length()
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if array.ndim == 3 and channels == 1:
        array = array[..., 0]
    if channels in (1, 3):
        return Decoded(array, maxval=top, bit_depth=depth)
    if channels in (2, 4):
        return Decoded(array[..., :-1].squeeze(-1) if channels == 2 else array[..., :3],
                        alpha=array[..., -1].copy(), maxval=top, bit_depth=depth)
    raise ImageError(path, f"unsupported {name} image with {channels} channels")


def decode_avif_imagecodecs(data: bytes, path: Path, check_size) -> Decoded:
    """AVIF without Pillow support: size and bit depth from the ISO-BMFF header, pixels from imagecodecs.

    This fallback does not read the ICC profile, EXIF or the irot/imir orientation boxes.
    """
    size, depth = avif_header(data)
    if size is None:
        raise ImageError(path, "corrupt AVIF data: the image size cannot be read from the header")
    check_size(*size)
    try:
        array = imagecodecs.avif_decode(data)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"truncated or corrupt AVIF data ({reason(e)})") from e
    return _split_channels(array, path, "AVIF", maxval=(1 << depth) - 1 if array.dtype == np.uint16 else None)


def pixels_to_tensor(array: np.ndarray, maxval: int) -> torch.Tensor:
    """(H, W) or (H, W, 3) integer array -> (1, 3, H, W) float32 tensor in [0, 1].

    Converted plane by plane into the result (no full-size temporaries), in numpy: single-threaded
    and quick for small images on a busy machine.
    """
    height, width = array.shape[:2]
    out = np.empty((3, height, width), dtype=np.float32)
    scale = np.float32(maxval)
    for channel in range(3):
        if array.ndim == 2:
            if channel == 0:
                np.divide(array, scale, out=out[0])
            else:
                out[channel] = out[0]
            continue
        np.divide(array[..., channel], scale, out=out[channel])
    np.clip(out, 0.0, 1.0, out=out)
    return torch.from_numpy(out)[None]
