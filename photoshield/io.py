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
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import tempfile
import threading
import warnings
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Any, Union

import imagecodecs
import numpy as np
import torch
from PIL import ExifTags, Image, ImageCms, ImageFile, features

from photoshield.errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
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
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, min_size: int = 8
) -> torch.Tensor:
    """Read an image file as an upright (1, 3, H, W) float32 RGB tensor in [0, 1]."""
    return read_photo(path, max_pixels=max_pixels, min_size=min_size).pixels


def read_photo(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, min_size: int = 8) -> Photo:
    """Read an image file with its alpha, ICC profile and EXIF; the format is found from the content.

    Raises ImageError naming the file for anything unreadable: missing, empty, truncated, corrupt,
    unknown format, larger than ``max_pixels`` (checked on the header, before decoding) or smaller
    than ``min_size`` on either side.
    """
    path = Path(path)
    data = _read_bytes(path)
    fmt = detect_format(data)
    if fmt is None:
        raise ImageError(path, f"not a recognised image format (supported: {', '.join(SUPPORTED_READ_FORMATS)})")
    if fmt == "HEIF":
        raise ImageError(path, "HEIC/HEIF images are not supported; convert the photo to JPEG or PNG first")
    if fmt not in SUPPORTED_READ_FORMATS:
        raise ImageError(path, f"{fmt} images cannot be decoded in this install (imagecodecs lacks the codec)")

    def check_size(width: int, height: int) -> None:
        if max_pixels is not None and width * height > max_pixels:
            raise ImageError(
                path, f"image is {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,}"
                " (a possible decompression bomb; pass a larger max_pixels to read it anyway)"
            )
        if width < min_size or height < min_size:
            raise ImageError(path, f"image is {width}x{height}, smaller than the minimum of {min_size}x{min_size}")

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
    return Photo(
        pixels=_pixels_to_tensor(rgb, decoded.maxval),
        alpha=alpha,
        icc_profile=decoded.icc if _is_rgb_profile(decoded.icc) else None,
        exif=exif_bytes,
        format=fmt,
        bit_depth=decoded.bit_depth,
        path=path,
    )


def _read_bytes(path: Path) -> bytes:
    """The whole file, with a clear error for anything that is not a readable, non-empty regular file."""
    try:
        info = path.stat()
    except FileNotFoundError as e:
        raise ImageError(path, "file not found") from e
    except OSError as e:
        raise ImageError(path, f"cannot access the file ({e.strerror or e})") from e
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(path, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(path, "is not a regular file")
    if info.st_size == 0:
        raise ImageError(path, "file is empty (0 bytes)")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageError(path, f"cannot read the file ({e.strerror or e})") from e


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


def _decode_pil(data: bytes, path: Path, fmt: str, check_size) -> _Decoded:
    """Decode with Pillow; 16-bit PNG/TIFF pixels come from imagecodecs (Pillow keeps only 8 bits of colour)."""
    try:
        im = _pil_open(data, fmt)
    except Exception as e:  # noqa: BLE001 - any parser failure is a bad file
        raise ImageError(path, f"corrupt {fmt} data: the header cannot be parsed ({_reason(e)})") from e
    with im:
        check_size(*im.size)
        if fmt == "TIFF" and (50706 in im.tag_v2 or int(im.tag_v2.get(254, 0)) & 1):
            # DNG and most raw formats are TIFF files whose first image is a small preview.
            raise ImageError(path, "looks like a camera raw file (DNG, NEF, CR2...) whose first image is a "
                                   "reduced-size preview; raw files are not supported, convert to TIFF/PNG/JPEG")
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and fmt != "JPEG":  # JPEG: MPO side images (depth, gain maps), not pages
            warnings.warn(f"{path}: has {frames} frames; only the first is used", stacklevel=3)
        try:
            im.load()
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ImageError(path, f"truncated or corrupt {fmt} data ({_reason(e)})") from e
        bits = _bits_per_sample(im, data, fmt)
        if bits == 16 and fmt in ("PNG", "TIFF"):
            decoded = _decode_16bit(data, path, fmt, im)
        else:
            decoded = _pil_pixels(im, path)
        decoded.icc = im.info.get("icc_profile") or None
        try:
            decoded.exif = im.getexif()
        except Exception:  # noqa: BLE001 - broken metadata must not make a good photo unreadable
            warnings.warn(f"{path}: EXIF data is corrupt and was dropped", stacklevel=3)
            decoded.exif = None
        decoded.exif_is_tiff_ifd = fmt == "TIFF"
        if decoded.icc is not None and im.mode == "CMYK":
            decoded.icc = None  # converted to sRGB in _pil_pixels; a CMYK profile no longer applies
    return decoded


def _reason(error: BaseException) -> str:
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
    """(H, W) or (H, W, 3) integer array -> (1, 3, H, W) float32 tensor in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(array).astype(np.float32)) / float(maxval)
    if tensor.ndim == 2:
        tensor = tensor[..., None].expand(-1, -1, 3)
    return tensor.permute(2, 0, 1)[None].contiguous().clamp_(0.0, 1.0)


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
