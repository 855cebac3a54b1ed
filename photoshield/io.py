"""Read and write image files safely: format by content, EXIF orientation, alpha, ICC, limits, atomic writes.

``read_photo`` returns a :class:`Photo`: the upright RGB pixels as a (1, 3, H, W) float32 tensor in
[0, 1] plus what must survive a round trip untouched (alpha plane, ICC profile, EXIF, bit depth).
``write_image`` writes pixels back with that metadata, stripping the GPS location unless asked not to,
through a temporary file that replaces the target only once it is complete.

Codecs: Pillow for JPEG, PNG, WebP, TIFF, BMP, GIF and AVIF (Pillow >= 11.2), imagecodecs for JPEG XL,
for 16-bit PNG/TIFF pixels (Pillow reduces 16-bit colour to 8 bits) and for AVIF where Pillow lacks it.

Only EXIF and the ICC profile are carried from input to output; XMP, IPTC, comments and the EXIF
thumbnail (a small copy of the unprotected original) are dropped. Format limits on output: JPEG and
BMP have no alpha (the alpha plane is dropped), BMP carries no metadata, JPEG XL carries EXIF but not
the ICC profile, 16-bit TIFF carries the ICC profile but not EXIF, and an 8-bit TIFF with EXIF
sub-IFDs is written uncompressed. JPEG XL inputs report no ICC profile (imagecodecs does not expose it).

Reading is strict: a file that is truncated or whose pixel data does not match its header raises
:class:`~photoshield.errors.ImageError` instead of decoding to gray or black rows. PNG files are
checked chunk by chunk (CRCs, IEND) and their decompressed IDAT length against the IHDR size; JPEG
files are checked marker by marker (end-of-image marker, a scan for every component, complete
progressive scans) and decoded a second time with filler bytes after every scan: a scan that ran
short of data reads the filler and the two decodes differ. Arithmetic-coded JPEGs skip that second
decode (their encoders legitimately rely on the decoder's zero fill).

Decompression bombs are refused from the header, before any pixel is decoded: above ``max_pixels``
(``DEFAULT_MAX_PIXELS``), and when an image larger than ``PLAUSIBLE_PIXELS_ANY_SIZE`` declares more
than ``max_pixels_per_byte`` (``DEFAULT_MAX_PIXELS_PER_BYTE``, 64) pixels per byte of file. Real
photos stay far below that ratio (camera JPEGs: 2-10 pixels per byte); a flat graphic can exceed it
and is read with ``max_pixels_per_byte=None`` (or ``PHOTOSHIELD_MAX_PIXELS_PER_BYTE=0`` in the
environment, for the command line).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import stat
import struct
import tempfile
import threading
import warnings
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import imagecodecs
import numpy as np
import torch
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageFile, JpegImagePlugin, UnidentifiedImageError, features

from photoshield.errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_PIXELS_PER_BYTE",
    "PLAUSIBLE_PIXELS_ANY_SIZE",
    "Photo",
    "SUPPORTED_READ_EXTENSIONS",
    "SUPPORTED_READ_FORMATS",
    "SUPPORTED_WRITE_EXTENSIONS",
    "detect_format",
    "list_images",
    "read_image",
    "read_photo",
    "write_image",
]

# A truncated file must raise, never decode to a gray bottom half.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Largest image (width x height) read by default: a guard against decompression bombs.
DEFAULT_MAX_PIXELS = 100_000_000


def _ratio_from_environment(default: float) -> float | None:
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
DEFAULT_MAX_PIXELS_PER_BYTE: float | None = _ratio_from_environment(64.0)
#: Images up to this many pixels (16.7 Mpx, e.g. 5312x2988) are never refused for their pixels per byte.
PLAUSIBLE_PIXELS_ANY_SIZE = 1 << 24
# Files larger than this many bytes per allowed pixel cannot be one image of that size (16-bit RGBA is 8).
_MAX_FILE_BYTES_PER_PIXEL = 8
_FILE_SLACK_BYTES = 64 << 20

_PIL_AVIF = features.check("avif")
_HAVE_AVIF = _PIL_AVIF or imagecodecs.AVIF.available
_HAVE_JXL = imagecodecs.JPEGXL.available

_READ_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp",),
    "GIF": (".gif",),
    "AVIF": (".avif",),
    "JXL": (".jxl",),
}
_AVAILABLE = {"AVIF": _HAVE_AVIF, "JXL": _HAVE_JXL}

#: Formats ``read_photo`` can decode in this install (detected by content, not by extension).
SUPPORTED_READ_FORMATS: tuple[str, ...] = tuple(f for f in _READ_EXTENSIONS if _AVAILABLE.get(f, True))
#: File extensions ``list_images`` picks up (lower case, with the dot).
SUPPORTED_READ_EXTENSIONS: frozenset[str] = frozenset(
    ext for fmt in SUPPORTED_READ_FORMATS for ext in _READ_EXTENSIONS[fmt]
)
#: Output extension -> format written by ``write_image`` (GIF is read-only: 256 colours would ruin a photo).
SUPPORTED_WRITE_EXTENSIONS: dict[str, str] = {
    ext: fmt for fmt in SUPPORTED_READ_FORMATS if fmt != "GIF" for ext in _READ_EXTENSIONS[fmt]
}

_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "AVIF", "JXL"}
_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF", "JXL"}
_DEFAULT_QUALITY = {"JPEG": 95, "WEBP": 95, "AVIF": 90, "JXL": 95}

_ORIENTATION = ExifTags.Base.Orientation
_EXIF_IFD = ExifTags.IFD.Exif
_GPS_IFD = ExifTags.IFD.GPSInfo
_INTEROP_IFD = ExifTags.IFD.Interop
_XMP_TAG = 700
# Tags that can hold a copy of the original picture (Photoshop layers, Photoshop resources with a thumbnail).
_PICTURE_COPY_TAGS = frozenset({34377, 37724})
# TIFF layout tags that describe the container, not the photo: never copied into an EXIF block.
_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323,
     324, 325, 338, 339, 340, 341, 513, 514, 530, 34665, 34853, 40965, 34675, 330}
)


@dataclasses.dataclass(eq=False)
class Photo:
    """An upright RGB image plus the parts of its file that must come back out untouched on write."""

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


@dataclasses.dataclass
class _Decoded:
    """What a decoder hands back before orientation is applied."""

    rgb: np.ndarray  # (H, W) or (H, W, 3), uint8 or uint16
    alpha: np.ndarray | None = None
    maxval: int = 255
    bit_depth: int = 8
    icc: bytes | None = None
    exif: Image.Exif | None = None
    exif_is_tiff_ifd: bool = False  # TIFF inputs: the image's own IFD, not a separate EXIF block


# ----------------------------------------------------------------------------- format detection


def detect_format(data: bytes) -> str | None:
    """Name the image format from its first bytes ("JPEG", "PNG", ...), or None if unrecognised."""
    head = bytes(data[:64])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JXL"
    brands = _ftyp_brands(head)
    if brands & {b"avif", b"avis"}:
        return "AVIF"
    if brands & {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}:
        return "HEIF"
    return None


def _ftyp_brands(head: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF ``ftyp`` box at the start of ``head``."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return set()
    size = min(struct.unpack(">I", head[:4])[0], len(head))
    return {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}


# ----------------------------------------------------------------------------- reading


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int = 8,
    max_pixels_per_byte: float | None = DEFAULT_MAX_PIXELS_PER_BYTE,
) -> torch.Tensor:
    """Read an image file as an upright (1, 3, H, W) float32 RGB tensor in [0, 1] (see ``read_photo``)."""
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
        raise ImageError(path, f"corrupt image data: the decoder gave up ({_reason(e)})") from e
    except Exception as e:  # noqa: BLE001 - a decoder failure we did not foresee is still a bad file
        raise ImageError(path, f"corrupt or unsupported image data ({_reason(e)})") from e


def _read_photo(path: Path, max_pixels: int | None, min_size: int, max_pixels_per_byte: float | None) -> Photo:
    """``read_photo`` without the last-resort conversion of unforeseen decoder errors into ImageError."""
    size_limit = None
    if max_pixels is not None:
        size_limit = max_pixels * _MAX_FILE_BYTES_PER_PIXEL + _FILE_SLACK_BYTES
    data = _read_bytes(path, size_limit)
    fmt = detect_format(data)
    if fmt is None:
        raise ImageError(path, f"not a recognised image format (supported: {', '.join(SUPPORTED_READ_FORMATS)})")
    if fmt == "HEIF":
        raise ImageError(path, "HEIC/HEIF images are not supported; convert the photo to JPEG or PNG first")
    if fmt not in SUPPORTED_READ_FORMATS:
        raise ImageError(path, f"{fmt} images cannot be decoded in this install (imagecodecs lacks the codec)")

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
                and pixels > max_pixels_per_byte * len(data)):
            raise ImageError(
                path, f"image declares {width}x{height} = {pixels:,} pixels in a file of only {len(data):,} bytes"
                f" ({pixels / len(data):,.0f} pixels per byte, above the plausible {max_pixels_per_byte:g} for an"
                f" image over {PLAUSIBLE_PIXELS_ANY_SIZE:,} pixels): a likely decompression bomb. If it is a genuine"
                " (very flat) image, pass max_pixels_per_byte=None or set PHOTOSHIELD_MAX_PIXELS_PER_BYTE=0"
            )

    if fmt == "JXL":
        decoded = _decode_jxl(data, path, check_size)
    elif fmt == "AVIF" and not _PIL_AVIF:
        decoded = _decode_avif_imagecodecs(data, path, check_size)
    else:
        decoded = _decode_pil(data, path, fmt, check_size)

    orientation = 1
    exif_bytes = None
    if decoded.exif is not None:
        with suppress(Exception):
            orientation = int(decoded.exif.get(_ORIENTATION, 1))
        exif_bytes = _export_exif(decoded.exif, path, keep_gps=True, tiff_ifd=decoded.exif_is_tiff_ifd)
    rgb = _orient(decoded.rgb, orientation)
    alpha = None if decoded.alpha is None else np.ascontiguousarray(_orient(decoded.alpha, orientation))
    icc = decoded.icc if isinstance(decoded.icc, bytes) and _is_rgb_profile(decoded.icc) else None
    return Photo(
        pixels=_pixels_to_tensor(rgb, decoded.maxval),
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


def _decode_pil(data: bytes, path: Path, fmt: str, check_size: Callable[[int, int], None]) -> _Decoded:
    """Decode with Pillow after the format's structure checks; broken PNG metadata chunks are dropped."""
    jpeg = None
    if fmt == "PNG":
        _check_png(data, path, check_size)
    elif fmt == "JPEG":
        jpeg = _jpeg_layout(data, path)
        check_size(jpeg.width, jpeg.height)
    try:
        return _decode_pil_once(data, path, fmt, check_size, jpeg)
    except ImageError as error:
        if fmt != "PNG":
            raise
        stripped, dropped = _png_without_metadata(data)
        if not dropped:
            raise
        try:
            decoded = _decode_pil_once(stripped, path, fmt, check_size, None)
        except ImageError:
            raise error from error.__cause__
        warnings.warn(f"{path}: corrupt metadata ({', '.join(dropped)} chunks) was dropped", stacklevel=4)
        return decoded


def _decode_pil_once(
    data: bytes, path: Path, fmt: str, check_size: Callable[[int, int], None], jpeg: _JpegLayout | None
) -> _Decoded:
    """Decode with Pillow; 16-bit PNG/TIFF pixels come from imagecodecs (Pillow keeps only 8 bits of colour)."""
    try:
        im = _pil_open(data, fmt)
    except Exception as e:  # noqa: BLE001 - any parser failure is a bad file
        if fmt == "TIFF":
            problem = _tiff_sample_problem(_tiff_first_ifd(data))
            if problem:
                raise ImageError(path, problem) from e
        raise ImageError(path, f"corrupt {fmt} data: the header cannot be parsed ({_reason(e)})") from e
    with im:
        check_size(*im.size)
        if fmt == "TIFF":
            tags = im.tag_v2
            if 50706 in tags or int(_first(tags.get(254, 0)) or 0) & 1:
                # DNG and most raw formats are TIFF files whose first image is a small preview.
                raise ImageError(path, "looks like a camera raw file (DNG, NEF, CR2...) whose first image is a "
                                       "reduced-size preview; raw files are not supported, convert to TIFF/PNG/JPEG")
            problem = _tiff_sample_problem({tag: tags.get(tag) for tag in (258, 339) if tag in tags})
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
            raise ImageError(path, f"truncated or corrupt {fmt} data ({_reason(e)})") from e
        if jpeg is not None:
            _check_jpeg_scans_complete(data, jpeg, im, path)
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


def _reason(error: BaseException) -> str:
    """A decoder error as one short line (without Pillow's '<_io.BytesIO object at 0x...>')."""
    if isinstance(error, UnidentifiedImageError):
        return "Pillow cannot identify the content"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _bits_per_sample(im: Image.Image, data: bytes, fmt: str) -> int:
    """Bits per sample stored in the file (the IHDR of a PNG, tag 258 of a TIFF), else from the mode."""
    if fmt == "PNG" and len(data) > 24:
        return data[24]
    if fmt == "TIFF":
        bits = im.tag_v2.get(258, 8)
        return int(max(bits) if isinstance(bits, tuple) else bits)
    return {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}.get(im.mode, 8)


def _pil_pixels(im: Image.Image, path: Path) -> _Decoded:
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
        return _Decoded(np.asarray(im))
    if mode in ("LA", "RGBA"):
        array = np.asarray(im)
        return _Decoded(array[..., :-1].squeeze(-1) if mode == "LA" else array[..., :3], alpha=array[..., -1].copy())
    if mode.startswith("I;16"):
        return _Decoded(np.asarray(im).astype(np.uint16), maxval=65535, bit_depth=16)
    if mode == "I":
        array = np.asarray(im)
        if array.size and array.min() >= 0 and array.max() <= 65535:
            return _Decoded(array.astype(np.uint16), maxval=65535, bit_depth=16)
    raise ImageError(path, f"unsupported pixel mode {im.mode!r} (e.g. floating point or 32-bit samples)")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> sRGB through the embedded profile when there is one, else Pillow's plain formula."""
    icc = im.info.get("icc_profile")
    if icc:
        with suppress(Exception):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return im.convert("RGB")


def _decode_16bit(data: bytes, path: Path, fmt: str, im: Image.Image) -> _Decoded:
    """Full-precision pixels of a 16-bit PNG or TIFF (already validated by Pillow's decode)."""
    try:
        array = imagecodecs.png_decode(data) if fmt == "PNG" else imagecodecs.tiff_decode(data)
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"corrupt 16-bit {fmt} data ({_reason(e)})") from e
    width, height = im.size
    if array.ndim == 3 and array.shape[:2] != (height, width) and array.shape[1:] == (height, width):
        array = np.moveaxis(array, 0, -1)  # planar TIFF
    if array.dtype != np.uint16 or array.shape[:2] != (height, width):
        raise ImageError(path, f"unsupported 16-bit {fmt} layout {array.dtype} {array.shape}")
    if fmt == "TIFF" and im.tag_v2.get(262) == 0:  # WhiteIsZero
        array = 65535 - array
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels == 1:
        return _Decoded(array.reshape(height, width), maxval=65535, bit_depth=16)
    if channels == 2:
        return _Decoded(array[..., 0], alpha=array[..., 1].copy(), maxval=65535, bit_depth=16)
    if channels == 3:
        return _Decoded(array, maxval=65535, bit_depth=16)
    if channels == 4 and im.mode != "CMYK":
        return _Decoded(array[..., :3], alpha=array[..., 3].copy(), maxval=65535, bit_depth=16)
    raise ImageError(path, f"unsupported 16-bit {fmt} with {channels} channels (mode {im.mode})")


def _decode_jxl(data: bytes, path: Path, check_size) -> _Decoded:
    """JPEG XL through imagecodecs (libjxl applies the codestream orientation); EXIF from the container."""
    boxes = dict(_jxl_parts(data)) if data.startswith(b"\x00\x00\x00\x0cJXL ") else {"codestream": data}
    size = _jxl_size(boxes.get("codestream", b""))
    if size is None:
        raise ImageError(path, "corrupt JPEG XL data: the image size cannot be read from the header")
    check_size(*size)
    try:
        array = imagecodecs.jpegxl_decode(data)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"truncated or corrupt JPEG XL data ({_reason(e)})") from e
    decoded = _split_channels(array, path, "JPEG XL")
    if "exif" in boxes:
        exif = Image.Exif()
        with suppress(Exception):
            exif.load(boxes["exif"])
            exif[_ORIENTATION] = 1  # libjxl already applied the (authoritative) codestream orientation
            decoded.exif = exif
    return decoded


def _split_channels(array: np.ndarray, path: Path, name: str, maxval: int | None = None) -> _Decoded:
    """Gray / gray+alpha / RGB / RGBA array from imagecodecs -> _Decoded."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(path, f"unsupported {name} sample type {array.dtype}")
    top = maxval or (255 if array.dtype == np.uint8 else 65535)
    depth = top.bit_length()
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if array.ndim == 3 and channels == 1:
        array = array[..., 0]
    if channels in (1, 3):
        return _Decoded(array, maxval=top, bit_depth=depth)
    if channels in (2, 4):
        return _Decoded(array[..., :-1].squeeze(-1) if channels == 2 else array[..., :3],
                        alpha=array[..., -1].copy(), maxval=top, bit_depth=depth)
    raise ImageError(path, f"unsupported {name} image with {channels} channels")


def _decode_avif_imagecodecs(data: bytes, path: Path, check_size) -> _Decoded:
    """AVIF without Pillow support: size and bit depth from the ISO-BMFF header, pixels from imagecodecs.

    This fallback does not read the ICC profile, EXIF or the irot/imir orientation boxes.
    """
    size, depth = _avif_header(data)
    if size is None:
        raise ImageError(path, "corrupt AVIF data: the image size cannot be read from the header")
    check_size(*size)
    try:
        array = imagecodecs.avif_decode(data)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"truncated or corrupt AVIF data ({_reason(e)})") from e
    return _split_channels(array, path, "AVIF", maxval=(1 << depth) - 1 if array.dtype == np.uint16 else None)


# ----------------------------------------------------------------------------- structure checks (PNG, JPEG, TIFF)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Adam7 passes as (first column, column step, first row, row step).
_ADAM7 = ((0, 8, 0, 8), (4, 8, 0, 8), (0, 4, 4, 8), (2, 4, 0, 4), (0, 2, 2, 4), (1, 2, 0, 2), (0, 1, 1, 2))
# Deflate cannot expand data more than ~1032:1 (a 258-byte match in two bits); 1040 leaves room for headers.
_DEFLATE_MAX_RATIO = 1040
# Ancillary PNG chunks that only carry metadata: dropped (with a warning) when they make Pillow fail.
_PNG_METADATA_CHUNKS = (b"iCCP", b"eXIf", b"tEXt", b"zTXt", b"iTXt")
_INFLATE_STEP = 1 << 20


def _cut_short(path: Path, problem: str, detail: str) -> ImageError:
    """An ImageError for a file that ends early, chained to an EOFError that gives the byte offsets."""
    error = ImageError(path, problem)
    error.__cause__ = EOFError(detail)
    error.__suppress_context__ = True
    return error


def _png_chunks(data: bytes, path: Path) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, payload end) of each chunk up to IEND, checking lengths and CRCs."""
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise _cut_short(path, f"truncated PNG data: the file ends at byte {len(data):,} before the IEND chunk",
                             f"{len(data) - pos} bytes after the last complete chunk, 12 needed for a chunk")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if not kind.isalpha() or not kind.isascii():
            raise ImageError(path, f"corrupt PNG data: invalid chunk type {kind!r} at byte {pos + 4:,}")
        if length > 0x7FFFFFFF:
            raise ImageError(path, f"corrupt PNG data: {kind.decode()} chunk length {length:,} is out of range")
        end = pos + 8 + length
        if end + 4 > len(data):
            raise _cut_short(path, f"truncated PNG data: the {kind.decode()} chunk at byte {pos:,} is cut short "
                                   f"({length:,} bytes declared, the file ends at byte {len(data):,})",
                             f"chunk needs bytes {pos:,}-{end + 4:,}, file has {len(data):,}")
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(view[pos + 4 : end]) != crc:
            raise ImageError(path, f"corrupt PNG data: CRC mismatch in the {kind.decode()} chunk at byte {pos:,}")
        yield kind, pos + 8, end
        if kind == b"IEND":
            return
        pos = end + 4


def _png_raw_size(width: int, height: int, depth: int, channels: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (a filter byte per row) that IHDR's size, depth and layout imply."""
    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * channels * depth + 7) // 8)

    if not interlaced:
        return rows(width, height)
    return sum(rows(max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
               for x0, dx, y0, dy in _ADAM7)


def _check_png(data: bytes, path: Path, check_size: Callable[[int, int], None]) -> None:
    """Refuse a PNG whose chunk structure is broken or whose IDAT does not hold the image IHDR declares.

    The size limits run on IHDR before anything is decompressed; the IDAT stream is then inflated in
    1 MiB steps (never held in memory) and must give exactly the scanline bytes that the width, height,
    bit depth, colour type and interlace method imply: fewer is a truncated or forged image, more a
    forged header.
    """
    chunks = _png_chunks(data, path)
    kind, start, end = next(chunks)
    if kind != b"IHDR" or end - start != 13:
        raise ImageError(path, "corrupt PNG data: the file does not start with a 13-byte IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[start:end])
    if colour not in _PNG_CHANNELS or depth not in _PNG_DEPTHS[colour]:
        raise ImageError(path, f"corrupt PNG data: invalid bit depth {depth} for colour type {colour}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise ImageError(path, "corrupt PNG data: unknown compression, filter or interlace method in IHDR")
    if width == 0 or height == 0 or width > 0x7FFFFFFF or height > 0x7FFFFFFF:
        raise ImageError(path, f"corrupt PNG data: invalid image size {width}x{height}")
    check_size(width, height)

    idat: list[memoryview] = []
    idat_closed = has_palette = False
    animation_frames = frame_controls = 0
    view = memoryview(data)
    for kind, start, end in chunks:
        if kind == b"IDAT":
            if idat_closed:
                raise ImageError(path, "corrupt PNG data: the IDAT chunks are not consecutive")
            idat.append(view[start:end])
        elif idat:
            idat_closed = True
        if kind == b"PLTE":
            has_palette = True
        elif kind == b"acTL" and end - start >= 4:
            (animation_frames,) = struct.unpack(">I", data[start : start + 4])
        elif kind == b"fcTL":
            frame_controls += 1
    if not idat:
        raise ImageError(path, "corrupt PNG data: no IDAT chunk (the file holds no pixels)")
    if colour == 3 and not has_palette:
        raise ImageError(path, "corrupt PNG data: a palette image without a PLTE chunk")
    if frame_controls < animation_frames:
        raise ImageError(path, f"truncated PNG data: the animation declares {animation_frames} frames but the "
                               f"file holds {frame_controls} (it was cut short)")

    expected = _png_raw_size(width, height, depth, _PNG_CHANNELS[colour], interlace == 1)
    compressed = sum(len(part) for part in idat)
    row_bytes = 1 + (width * _PNG_CHANNELS[colour] * depth + 7) // 8

    def short(got: int) -> ImageError:
        what = (f"{got // row_bytes:,} of the {height:,} rows" if interlace == 0
                else f"{got:,} of the {expected:,} bytes of interlaced pixel data")
        return ImageError(path, f"truncated or corrupt PNG data: the IDAT data holds {what} that IHDR declares "
                                f"({width}x{height}); the file was cut short or its header altered")

    if expected > compressed * _DEFLATE_MAX_RATIO + 1024:
        raise short(0) if compressed < 8 else ImageError(
            path, f"truncated or corrupt PNG data: {compressed:,} bytes of IDAT cannot hold the {expected:,} bytes "
                  f"of pixel data that IHDR declares ({width}x{height}); the file was cut short or its header altered")
    inflater = zlib.decompressobj()
    total = 0
    try:
        for part in idat:
            pending: bytes | memoryview = part
            while True:
                out = inflater.decompress(pending, _INFLATE_STEP)
                total += len(out)
                if total > expected:
                    raise ImageError(path, f"corrupt PNG data: the IDAT data holds more than the {expected:,} bytes of "
                                           f"pixel data that IHDR declares ({width}x{height}): the header was altered")
                pending = inflater.unconsumed_tail
                if inflater.eof or (not pending and len(out) < _INFLATE_STEP):
                    break
            if inflater.eof:
                break
    except zlib.error as e:
        raise ImageError(path, f"corrupt PNG data: the IDAT data is not a valid zlib stream ({e})") from e
    if total < expected:
        raise short(total)


def _png_without_metadata(data: bytes) -> tuple[bytes, list[str]]:
    """The PNG without its metadata chunks (ICC, EXIF, text), and the names of the chunks dropped."""
    if not data.startswith(_PNG_SIGNATURE):
        return data, []
    parts, dropped = [data[: len(_PNG_SIGNATURE)]], []
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if kind in _PNG_METADATA_CHUNKS:
            dropped.append(kind.decode("latin-1"))
        else:
            parts.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(parts), sorted(set(dropped))


_SOF_MARKERS = frozenset((*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)))
_PROGRESSIVE_SOF = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
_HUFFMAN_SOF = frozenset((0xC0, 0xC1, 0xC2))
# The first marker after a scan's entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a
# restart marker or another fill byte.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
# Bytes put after every scan for the second decode: never 0xFF, so they can only be read as scan data.
_JPEG_FILLER = bytes(np.random.default_rng(0x5EED).integers(0, 0xFF, 512, dtype=np.uint8))


@dataclasses.dataclass
class _JpegLayout:
    """The marker structure of a JPEG's first image."""

    sof: int
    width: int
    height: int
    components: dict[int, tuple[int, int]]  # component id -> (horizontal, vertical) sampling factor
    scans: list[tuple[tuple[int, ...], int, int, int, int]]  # (component ids, Ss, Se, Ah, Al)
    scan_ends: list[int]  # offset where each scan's entropy-coded data ends
    eoi: int  # offset of the end-of-image marker


def _jpeg_scan_mcus(width: int, height: int, components: dict[int, tuple[int, int]], ids: tuple[int, ...]) -> int:
    """Number of MCUs in a scan of ``ids``: interleaved MCUs, or the blocks of its single component."""
    def ceil_div(a: int, b: int) -> int:
        return -(-a // b)

    h_max = max(h for h, _ in components.values())
    v_max = max(v for _, v in components.values())
    if len(ids) > 1:
        return ceil_div(width, 8 * h_max) * ceil_div(height, 8 * v_max)
    h, v = components[ids[0]]
    return ceil_div(ceil_div(width * h, h_max), 8) * ceil_div(ceil_div(height * v, v_max), 8)


def _jpeg_layout(data: bytes, path: Path) -> _JpegLayout:
    """Walk the markers of a JPEG's first image up to its EOI; refuse a file that ends before it.

    Also refuses a frame without scans, a sequential image without a scan for every component, a
    progressive image whose scans leave coefficient bits uncoded (a file cut at a scan boundary) and a
    scan with fewer restart markers than its restart interval and the frame size imply (data missing).
    """
    def cut(where: str) -> ImageError:
        return _cut_short(path, f"truncated JPEG data: the file ends {where}, before the end-of-image marker",
                          f"no EOI marker (FF D9) in {len(data):,} bytes")

    size = len(data)
    pos = 2
    sof: tuple[int, int, int, dict[int, tuple[int, int]]] | None = None
    scans: list[tuple[tuple[int, ...], int, int, int, int]] = []
    scan_ends: list[int] = []
    restart_interval = 0
    while True:
        if pos < size and data[pos] != 0xFF:  # stray bytes between segments: skipped, like libjpeg does
            pos = data.find(b"\xff", pos)
            if pos < 0:
                raise cut("inside stray data")
        while pos < size and data[pos] == 0xFF:
            pos += 1
        if pos >= size:
            raise cut("inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            eoi = pos - 2
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if marker == 0xD8:
            raise ImageError(path, "corrupt JPEG data: a second start-of-image marker inside the image")
        if pos + 2 > size:
            raise cut(f"inside the header of marker 0x{marker:02X}")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise ImageError(path, f"corrupt JPEG data: marker 0x{marker:02X} has an invalid length {length}")
        if pos + length > size:
            raise cut(f"inside the segment of marker 0x{marker:02X}")
        segment = data[pos + 2 : pos + length]
        if marker in _SOF_MARKERS and sof is None:
            if len(segment) < 6 or len(segment) < 6 + 3 * segment[5] or segment[5] == 0:
                raise ImageError(path, "corrupt JPEG data: the frame header (SOF) is too short")
            height, width = struct.unpack(">HH", segment[1:5])
            components = {segment[6 + 3 * i]: (max(1, segment[7 + 3 * i] >> 4), max(1, segment[7 + 3 * i] & 15))
                          for i in range(segment[5])}
            sof = (marker, width, height, components)
        elif marker == 0xDD and len(segment) >= 2:
            restart_interval = (segment[0] << 8) | segment[1]
        elif marker == 0xDA:
            if sof is None:
                raise ImageError(path, "corrupt JPEG data: image data (SOS) before the frame header (SOF)")
            count = segment[0] if segment else 0
            if count == 0 or len(segment) < 4 + 2 * count:
                raise ImageError(path, "corrupt JPEG data: the scan header (SOS) is too short")
            ids = tuple(segment[1 + 2 * i] for i in range(count))
            if not set(ids) <= set(sof[3]):
                raise ImageError(path, "corrupt JPEG data: a scan refers to a colour component the frame lacks")
            ss, se, approx = segment[1 + 2 * count : 4 + 2 * count]
            scans.append((ids, ss, se, approx >> 4, approx & 15))
            found = _JPEG_SCAN_END.search(data, pos + length)
            if found is None:
                raise cut("inside the image data")
            end = found.start()
            while end > pos + length and data[end - 1] == 0xFF:
                end -= 1
            scan_ends.append(end)
            if restart_interval and sof[1] and sof[2]:
                expected = -(-_jpeg_scan_mcus(sof[1], sof[2], sof[3], ids) // restart_interval) - 1
                markers = len(_JPEG_RESTART.findall(data, pos + length, end))
                if markers < expected:
                    raise ImageError(path, f"truncated or corrupt JPEG data: a scan holds {markers + 1} restart "
                                           f"intervals where the {sof[1]}x{sof[2]} frame needs {expected + 1} "
                                           "(the file was cut short or its size field altered)")
            pos = found.start()
            continue
        pos += length
    if sof is None:
        raise ImageError(path, "corrupt JPEG data: no frame header (SOF marker)")
    marker, width, height, components = sof
    if not scans:
        raise ImageError(path, "truncated or corrupt JPEG data: the image has no scan (no pixel data)")
    layout = _JpegLayout(marker, width, height, components, scans, scan_ends, eoi)
    if marker in _PROGRESSIVE_SOF:
        final_bit: dict[int, list[int | None]] = {cid: [None] * 64 for cid in components}
        for ids, ss, se, _, al in scans:
            band = range(ss, min(se, 63) + 1)
            for cid in ids:
                final_bit[cid][band.start : band.stop] = [al] * len(band)
        missing = sum(bit != 0 for bits in final_bit.values() for bit in bits)
        if missing:
            raise ImageError(path, f"truncated JPEG data: the progressive scans leave {missing} of the "
                                   f"{64 * len(components)} coefficient bit planes uncoded (the file was cut short)")
    else:
        scanned = {cid for ids, *_ in scans for cid in ids}
        if not set(components) <= scanned:
            raise ImageError(path, "truncated JPEG data: some colour components have no scan (the file was cut short)")
    return layout


def _check_jpeg_scans_complete(data: bytes, layout: _JpegLayout, im: Image.Image, path: Path) -> None:
    """Refuse a JPEG with a scan that ran out of data (cut short and closed with EOI, or a raised SOF size).

    libjpeg fills a scan that ends early with zeros and only warns; Pillow hides the warning. So the
    image is decoded a second time with filler bytes after every scan. A complete scan never reads
    them (they are skipped as extraneous bytes before the next marker) and both decodes are equal; a
    scan that ends early decodes the filler instead of zeros and the decodes differ.
    """
    if layout.sof not in _HUFFMAN_SOF:
        return  # arithmetic coding: encoders drop trailing zero bytes and rely on the decoder's zero fill
    pieces, last = [], 0
    for end in layout.scan_ends:
        pieces += [data[last:end], _JPEG_FILLER]
        last = end
    pieces.append(data[last : layout.eoi + 2])
    problem = None
    try:
        with JpegImagePlugin.JpegImageFile(io.BytesIO(b"".join(pieces))) as probe:
            probe.load()
            if probe.mode != im.mode or probe.size != im.size or ImageChops.difference(probe, im).getbbox():
                problem = "the image data is shorter than the header declares"
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - a decoder that trips on the filler was reading past the data
        problem = f"the image data is shorter than the header declares ({_reason(e)})"
    if problem:
        raise ImageError(path, f"truncated or corrupt JPEG data: {problem}; the file was cut short or its "
                               f"size field altered ({layout.width}x{layout.height} declared)")


_TIFF_TYPE_SIZES = {1: 1, 3: 2, 4: 4, 16: 8}  # BYTE, SHORT, LONG, LONG8
_TIFF_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point", 4: "undefined",
                        5: "complex integer", 6: "complex floating-point"}


def _tiff_first_ifd(data: bytes, tags: tuple[int, ...] = (258, 277, 339)) -> dict[int, tuple[int, ...]]:
    """Integer values of ``tags`` in a TIFF's first IFD (classic or BigTIFF); {} when unreadable."""
    found: dict[int, tuple[int, ...]] = {}
    try:
        order = {b"II": "<", b"MM": ">"}[data[:2]]
        magic = struct.unpack(order + "H", data[2:4])[0]
        if magic == 42:
            offset = struct.unpack(order + "I", data[4:8])[0]
            count = struct.unpack(order + "H", data[offset : offset + 2])[0]
            entry_size, head, count_fmt, inline = 12, 2, "I", 4
        elif magic == 43:
            offset = struct.unpack(order + "Q", data[8:16])[0]
            count = struct.unpack(order + "Q", data[offset : offset + 8])[0]
            entry_size, head, count_fmt, inline = 20, 8, "Q", 8
        else:
            return found
        for i in range(min(count, 4096)):
            entry = offset + head + i * entry_size
            tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
            if tag not in tags or kind not in _TIFF_TYPE_SIZES:
                continue
            size = _TIFF_TYPE_SIZES[kind]
            values = min(struct.unpack(order + count_fmt, data[entry + 4 : entry + 4 + inline])[0], 64)
            start = entry + 4 + inline
            if values * size > inline:
                start = struct.unpack(order + count_fmt, data[start : start + inline])[0]
            fmt = order + {1: "B", 2: "H", 4: "I", 8: "Q"}[size] * values
            found[tag] = struct.unpack(fmt, data[start : start + values * size])
    except (KeyError, struct.error, IndexError):
        pass
    return found


def _tiff_sample_problem(tags: dict[int, Any]) -> str | None:
    """Why a TIFF's samples (BitsPerSample 258, SampleFormat 339) cannot be read, or None if they can."""
    def values(tag: int) -> tuple[int, ...]:
        value = tags.get(tag)
        if value is None:
            return ()
        return tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))

    formats = set(values(339)) or {1}
    bits = set(values(258)) or {1}
    if formats <= {1} and bits <= {1, 2, 4, 8, 16}:
        return None
    kind = " / ".join(_TIFF_SAMPLE_FORMATS.get(f, f"unknown ({f})") for f in sorted(formats))
    depth = " / ".join(str(b) for b in sorted(bits))
    return (f"unsupported pixel mode: the TIFF has {depth}-bit {kind} samples (sample format "
            f"{', '.join(str(f) for f in sorted(formats))}); photoshield reads 1- to 16-bit unsigned integer "
            "images, so convert it to an 8- or 16-bit TIFF or PNG first")


# ----------------------------------------------------------------------------- container headers


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """Yield (type, payload_start, payload_end) for the ISO-BMFF boxes in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _avif_header(data: bytes) -> tuple[tuple[int, int] | None, int]:
    """((width, height) of the largest ``ispe`` property, bits per channel from ``pixi``) of an AVIF file."""
    best, depth = None, 8
    for kind, start, end in _boxes(data):
        if kind != b"meta":
            continue
        for kind2, start2, end2 in _boxes(data, start + 4, end):  # meta is a FullBox
            if kind2 != b"iprp":
                continue
            for kind3, start3, end3 in _boxes(data, start2, end2):
                if kind3 != b"ipco":
                    continue
                for prop, pstart, pend in _boxes(data, start3, end3):
                    if prop == b"ispe" and pend - pstart >= 12:
                        width, height = struct.unpack(">II", data[pstart + 4 : pstart + 12])
                        if best is None or width * height > best[0] * best[1]:
                            best = (width, height)
                    elif prop == b"pixi" and pend - pstart >= 6:
                        depth = max(depth, data[pstart + 5])
    return best, depth


def _jxl_parts(data: bytes):
    """Yield ("codestream", bytes) and ("exif", TIFF bytes) from a JPEG XL container."""
    codestream = b""
    for kind, start, end in _boxes(data):
        payload = data[start:end]
        if kind == b"brob" and len(payload) > 4:  # Brotli-compressed box: 4-byte inner type, then data
            kind = payload[:4]
            try:
                payload = imagecodecs.brotli_decode(payload[4:])
            except Exception:  # noqa: BLE001
                continue
        if kind == b"jxlc":
            codestream = payload
        elif kind == b"jxlp" and not codestream:
            codestream = payload[4:]  # first partial codestream box holds the header
        elif kind == b"Exif" and len(payload) > 4:
            offset = struct.unpack(">I", payload[:4])[0]
            yield "exif", payload[4 + offset :]
    yield "codestream", codestream


def _jxl_size(codestream: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG XL codestream's SizeHeader (LSB-first bit fields after FF 0A)."""
    if not codestream.startswith(b"\xff\x0a") or len(codestream) < 12:
        return None
    bits = int.from_bytes(codestream[2:12], "little")
    pos = 0

    def read(count: int) -> int:
        nonlocal pos
        value = (bits >> pos) & ((1 << count) - 1)
        pos += count
        return value

    def u32() -> int:
        return 1 + read((9, 13, 18, 30)[read(2)])

    small = read(1)
    height = (read(5) + 1) * 8 if small else u32()
    ratio = read(3)
    if ratio:
        num, den = ((1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))[ratio - 1]
        width = height * num // den
    else:
        width = (read(5) + 1) * 8 if small else u32()
    return width, height


# ----------------------------------------------------------------------------- orientation, tensors, metadata


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Make an (H, W[, C]) array upright for an EXIF orientation 1-8 (other values are ignored)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _pixels_to_tensor(array: np.ndarray, maxval: int) -> torch.Tensor:
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


def _is_rgb_profile(icc: bytes | None) -> bool:
    """True for an ICC profile whose colour space (header bytes 16-20) is RGB."""
    return bool(icc) and len(icc) >= 128 and icc[16:20] == b"RGB "


def _export_exif(
    exif: Image.Exif | bytes, path: Path | None, *, keep_gps: bool, tiff_ifd: bool = False
) -> bytes | None:
    """A fresh EXIF block: IFD0 (minus layout tags), Exif and Interop IFDs, GPS only if ``keep_gps``.

    The orientation is reset to 1 (pixels are stored upright) and the IFD1 thumbnail, a copy of the
    original picture, is left out. XMP embedded in EXIF goes with the GPS data (it often repeats it).
    """
    try:
        if isinstance(exif, (bytes, bytearray)):
            exif = _load_exif(bytes(exif))
        out = Image.Exif()
        for tag, value in exif.items():
            if tag in _STRUCTURE_TAGS or tag in _PICTURE_COPY_TAGS or tag in (_EXIF_IFD, _GPS_IFD):
                continue
            if tag == _XMP_TAG and not keep_gps:
                continue
            if tiff_ifd and tag in (282, 283, 296):  # resolution belongs to the TIFF file, not the photo
                continue
            out[tag] = value
        if _ORIENTATION in out:
            out[_ORIENTATION] = 1
        sub = dict(exif.get_ifd(_EXIF_IFD))
        if sub:
            if _INTEROP_IFD in sub:
                interop = exif.get_ifd(_INTEROP_IFD)
                if interop:
                    sub[_INTEROP_IFD] = dict(interop)
                else:
                    del sub[_INTEROP_IFD]
            out[_EXIF_IFD] = sub
        if keep_gps:
            gps = dict(exif.get_ifd(_GPS_IFD))
            if gps:
                out[_GPS_IFD] = gps
        if not len(out):
            return None
        return out.tobytes()
    except Exception:  # noqa: BLE001 - broken metadata must not lose the photo
        warnings.warn(f"{path}: EXIF data could not be parsed and was dropped", stacklevel=3)
        return None


def _load_exif(blob: bytes | None) -> Image.Exif | None:
    if not blob:
        return None
    exif = Image.Exif()
    exif.load(blob)
    return exif


# ----------------------------------------------------------------------------- writing


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
            if _same_file(Path(source), path):
                raise ImageError(path, "refusing to overwrite the input file; write to another path "
                                       "(or pass overwrite_input=True)")

    sixteen = fmt in _SIXTEEN_BIT_FORMATS and metadata is not None and metadata.bit_depth > 8
    rgb, alpha = _output_pixels(image, path, sixteen)
    if metadata is not None and metadata.alpha is not None:
        if metadata.alpha.shape == rgb.shape[:2]:
            alpha = metadata.alpha
        else:
            warnings.warn(f"{path}: alpha plane {metadata.alpha.shape} does not match the image "
                          f"{rgb.shape[:2]}; writing without alpha", stacklevel=2)
    if fmt not in _ALPHA_FORMATS:
        alpha = None
    icc = metadata.icc_profile if metadata is not None and _is_rgb_profile(metadata.icc_profile) else None
    exif = None
    if metadata is not None and metadata.exif:
        exif = _export_exif(metadata.exif, path, keep_gps=keep_all_metadata)

    try:
        data = _encode(fmt, rgb, alpha, sixteen, quality, icc, exif)
    except ImageError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(path, f"cannot encode as {fmt} ({_reason(e)})") from e
    _atomic_write(path, data)
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


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


def _alpha_as(alpha: np.ndarray, sixteen: bool) -> np.ndarray:
    """The alpha plane at the output depth: unchanged when the depth matches."""
    if sixteen and alpha.dtype == np.uint8:
        return alpha.astype(np.uint16) * 257
    if not sixteen and alpha.dtype == np.uint16:
        return np.round(alpha / 257.0).astype(np.uint8)
    return alpha


def _encode(fmt: str, pixels: np.ndarray, alpha: np.ndarray | None, sixteen: bool, quality: int | None,
            icc: bytes | None, exif: bytes | None) -> bytes:
    """Encode integer pixels to bytes in memory (so a failure never touches the file system)."""
    if alpha is not None:
        pixels = np.dstack([pixels, _alpha_as(alpha, sixteen)])
    q = _DEFAULT_QUALITY.get(fmt) if quality is None else quality
    if fmt == "JXL":
        return _encode_jxl(pixels, q, exif)
    if sixteen:
        return _encode_png16(pixels, icc, exif) if fmt == "PNG" else _encode_tiff16(pixels, icc)
    if fmt == "AVIF" and not _PIL_AVIF:
        return bytes(imagecodecs.avif_encode(pixels, q))
    im = Image.fromarray(pixels, "RGBA" if alpha is not None else "RGB")
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=q, subsampling=0 if q >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        options.update(quality=q, method=4, lossless=q == 100)
    elif fmt == "AVIF":
        options.update(quality=q, subsampling="4:4:4" if q >= 90 else "4:2:0")
        if alpha is not None:
            # Keep the alpha plane lossless (aom options; other AV1 encoders get the default).
            options["advanced"] = [("alpha:end-usage", "q"), ("alpha:cq-level", "0")]
    elif fmt == "TIFF" and not (exif and _has_sub_ifds(exif)):
        # Deflate goes through libtiff, which cannot write EXIF sub-IFDs; those files stay uncompressed.
        options.update(compression="tiff_adobe_deflate")
    buffer = io.BytesIO()
    try:
        im.save(buffer, fmt, **options)
    except Exception:  # noqa: BLE001
        if "advanced" not in options:
            raise
        del options["advanced"]
        buffer = io.BytesIO()
        im.save(buffer, fmt, **options)
    return buffer.getvalue()


def _has_sub_ifds(exif: bytes) -> bool:
    loaded = _load_exif(exif)
    return loaded is not None and (_EXIF_IFD in loaded or _GPS_IFD in loaded)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png16(pixels: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    """16-bit PNG via imagecodecs, with iCCP and eXIf chunks inserted after IHDR."""
    data = bytes(imagecodecs.png_encode(pixels))
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + extra + data[ihdr_end:]


def _encode_tiff16(pixels: np.ndarray, icc: bytes | None) -> bytes:
    """16-bit TIFF via imagecodecs (deflate), with the ICC profile; EXIF is not carried in this case."""
    options: dict[str, Any] = {"compression": imagecodecs.TIFF.COMPRESSION.ADOBE_DEFLATE, "iccprofile": icc or None}
    if pixels.shape[-1] == 4:
        options["extrasample"] = "unassalpha"
    return bytes(imagecodecs.tiff_encode(pixels, photometric="rgb", **options))


def _encode_jxl(pixels: np.ndarray, quality: int, exif: bytes | None) -> bytes:
    """JPEG XL via imagecodecs; with EXIF, the codestream is wrapped in a container with an Exif box."""
    if quality == 100:
        codestream = bytes(imagecodecs.jpegxl_encode(pixels, lossless=True))
    else:
        codestream = bytes(imagecodecs.jpegxl_encode(pixels, level=quality))
    if not exif or not codestream.startswith(b"\xff\x0a"):
        return codestream
    tiff = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    return (
        box(b"JXL ", b"\r\n\x87\n")
        + box(b"ftyp", b"jxl \x00\x00\x00\x00jxl ")
        + box(b"Exif", b"\x00\x00\x00\x00" + tiff)
        + box(b"jxlc", codestream)
    )


def _file_mode(path: Path) -> int:
    """Permissions for the new file: those of the file it replaces, else 0o666 minus the umask."""
    with suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it: never a partial file."""
    if path.is_dir():
        raise ImageError(path, "is a directory; give a file name for the output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ImageError(path, f"cannot create the output file ({e.strerror or e})") from e
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException as e:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ImageError(path, f"cannot write the file ({e.strerror or e})") from e
        raise
    with suppress(OSError, AttributeError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ----------------------------------------------------------------------------- folders


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` with a recognised extension, sorted; hidden files and folders are skipped."""
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
