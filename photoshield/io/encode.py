"""Encoders: integer pixel arrays (+ alpha, ICC, EXIF) -> file bytes in memory, one branch per format.

Pillow encodes JPEG, PNG, WebP, TIFF, BMP and AVIF; imagecodecs encodes JPEG XL (EXIF in a container
box), 16-bit PNG (iCCP and eXIf chunks inserted after IHDR), 16-bit TIFF (ICC, no EXIF) and AVIF where
Pillow lacks it. Encoding never touches the file system, so a failure leaves no partial file.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import imagecodecs
import numpy as np
from PIL import Image

from . import sniff
from .metadata import has_sub_ifds


ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "AVIF", "JXL"}
SIXTEEN_BIT_FORMATS = {"PNG", "TIFF", "JXL"}
_DEFAULT_QUALITY = {"JPEG": 95, "WEBP": 95, "AVIF": 90, "JXL": 95}


def _alpha_as(alpha: np.ndarray, sixteen: bool) -> np.ndarray:
    """The alpha plane at the output depth: unchanged when the depth matches."""
    if sixteen and alpha.dtype == np.uint8:
        return alpha.astype(np.uint16) * 257
    if not sixteen and alpha.dtype == np.uint16:
        return np.round(alpha / 257.0).astype(np.uint8)
    return alpha


def encode_pixels(fmt: str, pixels: np.ndarray, alpha: np.ndarray | None, sixteen: bool, quality: int | None,
                  icc: bytes | None, exif: bytes | None) -> bytes:
    """Encode integer pixels to bytes in memory (so a failure never touches the file system)."""
    if alpha is not None:
        pixels = np.dstack([pixels, _alpha_as(alpha, sixteen)])
    q = _DEFAULT_QUALITY.get(fmt) if quality is None else quality
    if fmt == "JXL":
        return _encode_jxl(pixels, q, exif)
    if sixteen:
        return _encode_png16(pixels, icc, exif) if fmt == "PNG" else _encode_tiff16(pixels, icc)
    if fmt == "AVIF" and not sniff.PIL_AVIF:
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
    elif fmt == "TIFF" and not (exif and has_sub_ifds(exif)):
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


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload and the CRC of type + payload."""
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
