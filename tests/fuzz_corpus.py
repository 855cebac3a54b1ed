"""A seeded corpus of malformed and odd image files for ``photoshield.io`` (tests/test_io_fuzz.py, benchmarks/fuzz_io.py).

``generate(count, seed)`` returns ``count`` :class:`Case` objects, the same ones for the same arguments:
first one of every fixed case (the issue 21 reproducers, every odd but valid mode, every awkward path),
then random mutations of small photo-like images in every readable format: truncations at random
offsets (also closed again with an end marker), byte flips, random bytes behind each format's magic,
forged header sizes (smaller, larger and decompression bombs), EXIF orientations 0-9 and 255, corrupt
ICC profiles and EXIF blocks. ``materialize(case, folder)`` writes a case to disk (symbolic link loops,
FIFOs, non-UTF-8 and very long names included) and returns the path to read.

Every case says what reading it must give:

* ``DECODE``: a valid file; it must read, at ``Case.size`` (upright height, width) when given.
* ``ERROR``: structurally invalid (PNG/JPEG truncated, short pixel data, header size that does not match
  the data, bad CRC, bomb, unusable path); it must raise ``ImageError``, never decode.
* ``ANY``: damage a format cannot notice (byte flips in formats without checksums, truncations of
  formats without an end marker...); reading may decode or raise ``ImageError``.

In no case may reading raise anything else, hang or use unbounded memory.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import random
import struct
import zlib
from pathlib import Path
from typing import Callable

import imagecodecs
import numpy as np
from PIL import Image, ImageCms, features

DECODE, ERROR, ANY = "decode", "error", "any"

#: Formats whose structure photoshield checks: structural damage must raise, never decode.
STRUCTURE_CHECKED = ("PNG", "JPEG")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAGIC = {
    "JPEG": b"\xff\xd8\xff",
    "PNG": _PNG_SIGNATURE,
    "GIF": b"GIF89a",
    "BMP": b"BM",
    "TIFF": b"II*\x00",
    "WEBP": b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    "JXL": b"\xff\x0a",
    "AVIF": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
}


@dataclasses.dataclass
class Case:
    """One fuzz input: the bytes (or path trick) and what reading it must give."""

    name: str  # unique within a corpus, safe as a file name
    kind: str  # generator family: "truncate", "flip", "bomb", "mode", "path"...
    fmt: str  # base format ("JPEG", "PNG"...) or "PATH"
    expect: str  # DECODE, ERROR or ANY
    data: bytes = b""
    size: tuple[int, int] | None = None  # upright (height, width) a DECODE case must read at
    special: str = ""  # path trick for kind "path"
    suffix: str = ""


# ----------------------------------------------------------------------------- valid source images


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A small photo-like uint8 RGB image: gradients, a bright block and noise."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(width, 1) * 220, y / max(height, 1) * 220, (x + y) / (width + height) * 180 + 30], -1)
    base[: max(1, height // 5), : max(1, width // 4)] = rng.integers(0, 256, 3)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).round().astype(np.uint8)


def _pil(array: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk of a well-formed PNG."""
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG from (type, payload) chunks, with correct lengths and CRCs."""
    return _PNG_SIGNATURE + b"".join(_chunk(kind, payload) for kind, payload in chunks)


def interlaced_png(array: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write one)."""
    height, width = array.shape[:2]
    raw = bytearray()
    for x0, dx, y0, dy in ((0, 8, 0, 8), (4, 8, 0, 8), (0, 4, 4, 8), (2, 4, 0, 4), (0, 2, 2, 4), (1, 2, 0, 2), (0, 1, 1, 2)):
        part = array[y0::dy, x0::dx]
        if part.size:
            for row in part:
                raw += b"\x00" + row.tobytes()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return build_png([(b"IHDR", ihdr), (b"IDAT", zlib.compress(bytes(raw))), (b"IEND", b"")])


def _exif(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "FuzzCam"
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def _srgb() -> bytes:
    """An sRGB ICC profile with a fixed creation date (lcms stamps the current time)."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
    return bytes(profile)


def _animated(array: np.ndarray, fmt: str) -> bytes:
    frames = [Image.fromarray(np.roll(array, 7 * i, axis=1)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


# name -> (format, encoder). Each encoder returns a valid file of the (height, width) photo it is given.
BASES: dict[str, tuple[str, Callable[[np.ndarray], bytes]]] = {
    "jpeg-baseline": ("JPEG", lambda a: _pil(a, "JPEG", quality=90)),
    "jpeg-420": ("JPEG", lambda a: _pil(a, "JPEG", quality=75, subsampling=2)),
    "jpeg-progressive": ("JPEG", lambda a: _pil(a, "JPEG", quality=85, progressive=True)),
    "jpeg-restart": ("JPEG", lambda a: _pil(a, "JPEG", quality=85, restart_marker_blocks=3)),
    "jpeg-gray": ("JPEG", lambda a: _pil(a, "JPEG", "L", quality=90)),
    "jpeg-cmyk": ("JPEG", lambda a: _pil(a, "JPEG", "CMYK", quality=90)),
    "jpeg-progressive-gray": ("JPEG", lambda a: _pil(a, "JPEG", "L", quality=80, progressive=True)),
    "png-rgb": ("PNG", lambda a: _pil(a, "PNG")),
    "png-rgba": ("PNG", lambda a: _pil(np.dstack([a, a[..., 0]]), "PNG")),
    "png-gray": ("PNG", lambda a: _pil(a, "PNG", "L")),
    "png-la": ("PNG", lambda a: _pil(a, "PNG", "LA")),
    "png-palette": ("PNG", lambda a: _pil(a, "PNG", "P")),
    "png-palette-trns": ("PNG", lambda a: _pil(a, "PNG", "P", transparency=0)),
    "png-bilevel": ("PNG", lambda a: _pil(a, "PNG", "1")),
    "png-16-rgb": ("PNG", lambda a: bytes(imagecodecs.png_encode(a.astype(np.uint16) * 257))),
    "png-16-rgba": ("PNG", lambda a: bytes(imagecodecs.png_encode(np.dstack([a, a[..., 1]]).astype(np.uint16) * 257))),
    "png-16-gray": ("PNG", lambda a: bytes(imagecodecs.png_encode(a[..., 0].astype(np.uint16) * 257))),
    "png-interlaced": ("PNG", interlaced_png),
    "png-animated": ("PNG", lambda a: _animated(a, "PNG")),
    "webp-lossy": ("WEBP", lambda a: _pil(a, "WEBP", quality=80)),
    "webp-lossless": ("WEBP", lambda a: _pil(a, "WEBP", lossless=True)),
    "webp-animated": ("WEBP", lambda a: _animated(a, "WEBP")),
    "tiff-deflate": ("TIFF", lambda a: _pil(a, "TIFF", compression="tiff_adobe_deflate")),
    "tiff-raw": ("TIFF", lambda a: _pil(a, "TIFF")),
    "tiff-16": ("TIFF", lambda a: bytes(imagecodecs.tiff_encode(a.astype(np.uint16) * 257, photometric="rgb"))),
    "tiff-cmyk": ("TIFF", lambda a: _pil(a, "TIFF", "CMYK")),
    "tiff-bilevel": ("TIFF", lambda a: _pil(a, "TIFF", "1")),
    "bmp-rgb": ("BMP", lambda a: _pil(a, "BMP")),
    "bmp-palette": ("BMP", lambda a: _pil(a, "BMP", "P")),
    "bmp-bilevel": ("BMP", lambda a: _pil(a, "BMP", "1")),
    "gif": ("GIF", lambda a: _pil(a, "GIF")),
    "gif-animated": ("GIF", lambda a: _animated(a, "GIF")),
    "jxl": ("JXL", lambda a: bytes(imagecodecs.jpegxl_encode(a, level=90))),
}
if features.check("avif"):
    BASES["avif"] = ("AVIF", lambda a: _pil(a, "AVIF", quality=70))
elif imagecodecs.AVIF.available:
    BASES["avif"] = ("AVIF", lambda a: bytes(imagecodecs.avif_encode(a, 70)))

# Valid files in sample formats photoshield refuses with a clear message.
UNSUPPORTED: dict[str, Callable[[np.ndarray], bytes]] = {
    "tiff-float32": lambda a: bytes(imagecodecs.tiff_encode(a.astype(np.float32) / 255, photometric="rgb")),
    "tiff-float32-gray": lambda a: bytes(imagecodecs.tiff_encode(a[..., 0].astype(np.float32) / 255)),
    "tiff-uint32": lambda a: bytes(imagecodecs.tiff_encode(a.astype(np.uint32) * 16843009, photometric="rgb")),
    "tiff-int16": lambda a: bytes(imagecodecs.tiff_encode(a[..., 0].astype(np.int16) - 128)),
}


# ----------------------------------------------------------------------------- mutations


def _jpeg_sof(data: bytes) -> int:
    """Offset of the first SOF marker of a JPEG written by Pillow."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        found = data.find(marker)
        if found > 0:
            return found
    raise ValueError("no SOF marker")


def _jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    sof = _jpeg_sof(data)
    out = bytearray(data)
    out[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def _png_with_ihdr(data: bytes, width: int, height: int) -> bytes:
    chunks = png_chunks(data)
    kind, ihdr = chunks[0]
    chunks[0] = (kind, struct.pack(">II", width, height) + ihdr[8:])
    return build_png(chunks)


def _png_raw_rows(data: bytes) -> tuple[bytes, int]:
    """The decompressed scanlines of a non-interlaced PNG and its row length in bytes."""
    chunks = png_chunks(data)
    width, _, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    return raw, 1 + (width * channels * depth + 7) // 8


def _png_with_raw(data: bytes, raw: bytes) -> bytes:
    chunks = [(kind, payload) for kind, payload in png_chunks(data) if kind != b"IDAT"]
    chunks.insert(len(chunks) - 1, (b"IDAT", zlib.compress(raw)))
    return build_png(chunks)


def flat_png_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A real, complete 16-bit RGBA PNG of one flat colour (~0.8 MB for 10000x10000), built in a second.

    Each row is deflated alone (full flush), so the compressed rows are identical and repeated; the
    Adler-32 of the whole stream is accumulated row by row.
    """
    row = b"\x00" + b"\x7f" * (8 * width)
    compressor = zlib.compressobj(9)
    first = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(height):
        checksum = zlib.adler32(row, checksum)
    stream = first + again * (height - 1) + b"\x03\x00" + struct.pack(">I", checksum)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return build_png([(b"IHDR", ihdr), (b"IDAT", stream), (b"IEND", b"")])


def _bomb(fmt: str, data: bytes, width: int, height: int) -> bytes:
    """``data`` (a small valid file of ``fmt``) with its header claiming width x height."""
    if fmt == "JPEG":
        return _jpeg_with_size(data, width, height)
    if fmt == "PNG":
        return _png_with_ihdr(data, width, height)
    if fmt == "GIF":
        out = bytearray(data)
        out[6:10] = struct.pack("<HH", min(width, 65535), min(height, 65535))
        descriptor = out.find(b"\x2c", 13)
        out[descriptor + 5 : descriptor + 9] = struct.pack("<HH", min(width, 65535), min(height, 65535))
        return bytes(out)
    if fmt == "BMP":
        out = bytearray(data)
        out[18:26] = struct.pack("<ii", width, height)
        return bytes(out)
    if fmt == "TIFF":
        offset = struct.unpack("<I", data[4:8])[0]
        out = bytearray(data)
        count = struct.unpack("<H", data[offset : offset + 2])[0]
        for i in range(count):
            entry = offset + 2 + 12 * i
            tag, kind = struct.unpack("<HH", data[entry : entry + 4])
            if tag in (256, 257):
                value = width if tag == 256 else height
                out[entry + 2 : entry + 4] = struct.pack("<H", 4)
                out[entry + 8 : entry + 12] = struct.pack("<I", value)
        return bytes(out)
    raise ValueError(fmt)


# ----------------------------------------------------------------------------- the corpus


@functools.lru_cache(maxsize=1)
def _fixed_cases() -> tuple[Case, ...]:
    """The issue 21 reproducers, every odd valid mode and every awkward path, once each (always the same)."""
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    image = photo(rng, 48, 64)

    # Every base format, valid, and the valid-but-unsupported sample formats.
    for name, (fmt, encode) in BASES.items():
        cases.append(Case(f"valid-{name}", "mode", fmt, DECODE, encode(image), (48, 64)))
    for name, encode in UNSUPPORTED.items():
        cases.append(Case(f"unsupported-{name}", "mode", "TIFF", ERROR, encode(image)))

    # PNG whose chunks and CRCs are fine but whose IDAT holds 2 of 64 rows (issue 21).
    square = _pil(photo(rng, 64, 64), "PNG")
    raw, row = _png_raw_rows(square)
    cases.append(Case("png-two-of-64-rows", "short-data", "PNG", ERROR, _png_with_raw(square, raw[: 2 * row])))
    cases.append(Case("png-ihdr-taller", "size-mismatch", "PNG", ERROR, _png_with_ihdr(square, 64, 80)))
    cases.append(Case("png-ihdr-shorter", "size-mismatch", "PNG", ERROR, _png_with_ihdr(square, 64, 40)))
    cases.append(Case("png-surplus-rows", "size-mismatch", "PNG", ERROR, _png_with_raw(square, raw + raw[:row])))

    # JPEG cut short and closed with a re-added EOI (baseline, progressive); SOF height 80 -> 160.
    noisy = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    for name in ("jpeg-baseline", "jpeg-progressive", "jpeg-restart"):
        jpeg = BASES[name][1](noisy)
        cases.append(Case(f"{name}-half-plus-eoi", "truncate-close", "JPEG", ERROR, jpeg[: len(jpeg) // 2] + b"\xff\xd9"))
        cases.append(Case(f"{name}-height-160", "size-mismatch", "JPEG", ERROR, _jpeg_with_size(jpeg, 96, 160)))
        cases.append(Case(f"{name}-width-200", "size-mismatch", "JPEG", ERROR, _jpeg_with_size(jpeg, 200, 80)))
    progressive = BASES["jpeg-progressive"][1](noisy)
    scans = [i for i in range(len(progressive) - 1) if progressive[i : i + 2] == b"\xff\xda"]
    cases.append(Case("jpeg-progressive-cut-at-scan", "truncate-close", "JPEG", ERROR,
                      progressive[: scans[len(scans) // 2]] + b"\xff\xd9"))

    # Decompression bombs: a tiny JPEG declaring 10000x10000, a tiny PNG declaring 8x12,000,000,
    # a real flat 16-bit RGBA 10000x10000 PNG (~0.8 MB), and forged sizes in other formats.
    small = photo(rng, 16, 16)
    cases.append(Case("bomb-jpeg-10000x10000", "bomb", "JPEG", ERROR, _bomb("JPEG", _pil(small, "JPEG"), 10_000, 10_000)))
    tall = build_png([(b"IHDR", struct.pack(">IIBBBBB", 8, 12_000_000, 8, 0, 0, 0, 0)),
                      (b"IDAT", zlib.compress(b"\x00" * 9 * 1000)), (b"IEND", b"")])
    cases.append(Case("bomb-png-8x12000000", "bomb", "PNG", ERROR, tall))
    cases.append(Case("bomb-png-16bit-rgba-10000x10000", "bomb", "PNG", ERROR, flat_png_bomb()))
    for fmt in ("GIF", "BMP", "TIFF"):
        cases.append(Case(f"bomb-{fmt.lower()}-20000x20000", "bomb", fmt, ERROR,
                          _bomb(fmt, _pil(small, fmt), 20_000, 20_000)))

    # EXIF orientation 0-9 and 255 (JPEG, PNG, WebP): 5-8 swap the sides, the others leave them.
    for orientation in (*range(10), 255):
        size = (64, 48) if orientation in (5, 6, 7, 8) else (48, 64)
        for fmt in ("JPEG", "PNG", "WEBP"):
            data = _pil(image, fmt, exif=_exif(orientation))
            cases.append(Case(f"orientation-{orientation}-{fmt.lower()}", "orientation", fmt, DECODE, data, size))

    # Corrupt ICC profiles and EXIF blocks never lose a readable photo.
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        cases.append(Case(f"icc-garbage-{fmt.lower()}", "icc", fmt, DECODE,
                          _pil(image, fmt, icc_profile=bytes(rng.integers(0, 256, 300, dtype=np.uint8))), (48, 64)))
        broken = bytearray(_srgb())
        broken[40:] = bytes(rng.integers(0, 256, len(broken) - 40, dtype=np.uint8))
        cases.append(Case(f"icc-rgb-header-garbage-body-{fmt.lower()}", "icc", fmt, DECODE,
                          _pil(image, fmt, icc_profile=bytes(broken)), (48, 64)))
        for label, blob in (("garbage", b"MM\x00*" + bytes(rng.integers(0, 256, 60, dtype=np.uint8))),
                            ("loop", b"II*\x00\x08\x00\x00\x00\x01\x00\x69\x87\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00"),
                            ("cut", _exif(6)[:30])):
            if fmt == "TIFF":
                continue
            cases.append(Case(f"exif-{label}-{fmt.lower()}", "exif", fmt, DECODE, _pil(image, fmt, exif=blob)))
    png = _pil(image, "PNG")
    head, rest = png[:33], png[33:]
    for label, payload in (("bad-zlib", b"ICC\x00\x00" + b"not zlib" * 8), ("no-name-end", b"ICC" * 9),
                           ("zlib-garbage", b"ICC\x00\x00" + zlib.compress(bytes(range(256)) * 2))):
        cases.append(Case(f"png-iccp-{label}", "icc", "PNG", DECODE, head + _chunk(b"iCCP", payload) + rest, (48, 64)))
    for name, kind, payload in (("png-ztxt-bad-zlib", b"zTXt", b"k\x00\x00garbage"),
                                ("png-exif-garbage", b"eXIf", b"II*\x00\xff\xff\xff\x7f")):
        cases.append(Case(name, "exif", "PNG", DECODE, head + _chunk(kind, payload) + rest, (48, 64)))
    jpeg = _pil(image, "JPEG")
    for label, segment in (("app1-exif-garbage", b"\xff\xe1\x00\x20Exif\x00\x00" + bytes(24)),
                           ("app2-icc-bad-count", b"\xff\xe2\x00\x20ICC_PROFILE\x00\x05\x02" + bytes(16)),
                           ("app1-short-length", b"\xff\xe1\x00\x02")):
        cases.append(Case(f"jpeg-{label}", "exif", "JPEG", DECODE, jpeg[:2] + segment + jpeg[2:], (48, 64)))

    # Awkward paths.
    valid = _pil(image, "PNG")
    for special, expect in (("symlink-loop", ERROR), ("dangling-symlink", ERROR), ("fifo", ERROR),
                            ("nul-byte", ERROR), ("directory", ERROR), ("empty", ERROR),
                            ("non-utf8-name", DECODE), ("unicode-name", DECODE), ("name-255-bytes", DECODE),
                            ("name-too-long", ERROR), ("path-too-long", ERROR), ("missing", ERROR),
                            ("bytes-path", DECODE)):
        cases.append(Case(f"path-{special}", "path", "PATH", expect, valid if expect == DECODE else b"",
                          (48, 64) if expect == DECODE else None, special=special))
    return tuple(cases)


def _random_case(index: int, rnd: random.Random, rng: np.random.Generator) -> Case:
    """One random mutation of a random base image."""
    base = rnd.choice(sorted(BASES))
    fmt, encode = BASES[base]
    height, width = rnd.randint(8, 80), rnd.randint(8, 96)
    data = encode(photo(rng, height, width))
    checked = fmt in STRUCTURE_CHECKED
    kind = rnd.choice(("truncate", "truncate", "truncate-close", "flip", "flip", "magic-random",
                       "size-mismatch", "bomb", "valid"))
    name = f"{index:05d}-{kind}-{base}"
    if kind == "valid":
        return Case(name, "mode", fmt, DECODE, data, (height, width))
    if kind == "truncate":
        cut = rnd.randint(1, len(data) - 1)
        return Case(name, kind, fmt, ERROR if checked else ANY, data[:cut])
    if kind == "truncate-close" and fmt == "JPEG":
        # Cut at least 16 bytes before the end, so that real image data is missing, then close with EOI.
        cut = rnd.randint(2, max(2, len(data) - 18))
        return Case(name, kind, fmt, ERROR, data[:cut] + b"\xff\xd9")
    if kind == "truncate-close" and fmt == "PNG":
        cut = rnd.randint(8, len(data) - 13)
        return Case(name, kind, fmt, ERROR, data[:cut] + _chunk(b"IEND", b""))
    if kind == "truncate-close":
        cut = rnd.randint(1, len(data) - 1)
        return Case(name, kind, fmt, ANY, data[:cut] + data[-2:])
    if kind == "flip":
        out = bytearray(data)
        while out == data:  # two flips of one byte can cancel out
            for _ in range(rnd.randint(1, 8)):
                position = rnd.randrange(len(out))
                out[position] ^= rnd.randint(1, 255)
        # PNG: every byte is covered by the signature, a length or a CRC; JPEG has no checksum.
        return Case(name, kind, fmt, ERROR if fmt == "PNG" else ANY, bytes(out))
    if kind == "magic-random":
        noise = bytes(rng.integers(0, 256, rnd.randint(1, 4000), dtype=np.uint8))
        return Case(name, kind, fmt, ERROR if checked else ANY, _MAGIC[fmt] + noise)
    if kind == "size-mismatch" and fmt == "JPEG":
        if rnd.random() < 0.5:
            new = (width, height + 16 * rnd.randint(1, 8))
        else:
            new = (width + 16 * rnd.randint(1, 8), height)
        return Case(name, kind, fmt, ERROR, _jpeg_with_size(data, *new))
    if kind == "size-mismatch" and fmt == "PNG" and base not in ("png-interlaced", "png-animated"):
        new_height = height + rnd.choice((-1, 1)) * rnd.randint(1, max(1, height - 1))
        return Case(name, kind, fmt, ERROR, _png_with_ihdr(data, width, max(1, new_height)))
    if kind == "size-mismatch":
        return Case(name, kind, fmt, ANY, _forge_size(fmt, data, width, height, rnd))
    if fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF"):
        size = rnd.choice(((10_000, 10_000), (65_535, 65_535), (30_000, 2_000), (8, 12_000_000), (5_000, 5_000)))
        if fmt in ("GIF",) and max(size) > 65_535 or fmt == "JPEG" and max(size) > 65_535:
            size = (20_000, 20_000)
        return Case(name, "bomb", fmt, ERROR, _bomb(fmt, data, *size))
    # Formats without a forgeable size field here: the second half reversed instead.
    return Case(name, "scramble", fmt, ANY, data[: len(data) // 2] + bytes(reversed(data[len(data) // 2 :])))


def _forge_size(fmt: str, data: bytes, width: int, height: int, rnd: random.Random) -> bytes:
    """Other formats: a header size changed by a few pixels (may or may not be noticed)."""
    new = (width + rnd.randint(1, 40), height + rnd.randint(1, 40))
    try:
        return _bomb(fmt, data, *new)
    except (ValueError, struct.error):
        out = bytearray(data)
        out[rnd.randrange(len(out))] ^= 0x10
        return bytes(out)


def generate(count: int, seed: int = 0) -> list[Case]:
    """``count`` cases: the fixed ones first (cut to ``count`` if fewer), then random mutations."""
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    cases = list(_fixed_cases()[:count])
    index = 0
    while len(cases) < count:
        cases.append(_random_case(index, rnd, rng))
        index += 1
    return cases


# ----------------------------------------------------------------------------- on disk


def materialize(case: Case, folder: Path) -> str | bytes:
    """Write ``case`` under ``folder`` and return the path ``read_photo`` should be given."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = case.suffix or {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
                             "WEBP": ".webp", "JXL": ".jxl", "AVIF": ".avif"}.get(case.fmt, ".png")
    if case.kind != "path":
        path = folder / f"{case.name}{suffix}"
        path.write_bytes(case.data)
        return str(path)
    special = case.special
    base = folder / case.name
    if special == "symlink-loop":
        (folder / f"{case.name}-b.png").symlink_to(f"{case.name}-a.png")
        (folder / f"{case.name}-a.png").symlink_to(f"{case.name}-b.png")
        return str(folder / f"{case.name}-a.png")
    if special == "dangling-symlink":
        target = base.with_suffix(".png")
        target.symlink_to(folder / "does-not-exist.png")
        return str(target)
    if special == "fifo":
        target = base.with_suffix(".png")
        os.mkfifo(target)
        return str(target)
    if special == "nul-byte":
        return str(folder / "a\x00b.png")
    if special == "directory":
        target = base.with_suffix(".png")
        target.mkdir()
        return str(target)
    if special == "empty":
        target = base.with_suffix(".png")
        target.write_bytes(b"")
        return str(target)
    if special == "non-utf8-name":
        raw = os.fsencode(str(folder)) + b"/" + case.name.encode() + b"-\xff\xfe\xe9t\xe9.png"
        with open(raw, "wb") as handle:
            handle.write(case.data)
        return os.fsdecode(raw)
    if special == "unicode-name":
        target = folder / f"{case.name}-фото 📷 été.png"
        target.write_bytes(case.data)
        return str(target)
    if special == "name-255-bytes":
        stem = case.name + "-"
        target = folder / (stem + "x" * (255 - len(stem) - 4) + ".png")
        target.write_bytes(case.data)
        return str(target)
    if special == "name-too-long":
        return str(folder / ("y" * 300 + ".png"))
    if special == "path-too-long":
        return str(folder / "/".join(["z" * 200] * 25) / "photo.png")
    if special == "missing":
        return str(base.with_suffix(".png"))
    if special == "bytes-path":
        target = base.with_suffix(".png")
        target.write_bytes(case.data)
        return os.fsencode(str(target))
    raise ValueError(f"unknown path case {special!r}")


# ----------------------------------------------------------------------------- outcomes

CLEAN_ERROR = "clean error"
DECODED = "decoded ok"
DECODED_DAMAGED = "decoded damaged file (no checksum: allowed)"
OTHER = "other exception"
HANG = "hang"
MEMORY = "over memory"
GARBAGE = "garbage decoded"
REFUSED = "valid file refused"
#: Every outcome class, in report order.
OUTCOMES = (CLEAN_ERROR, DECODED, DECODED_DAMAGED, OTHER, HANG, MEMORY, GARBAGE, REFUSED)
#: Outcomes that fail the suite and the benchmark.
FAILURES = (OTHER, HANG, MEMORY, GARBAGE, REFUSED)


def run_case(case: Case, path: str | bytes) -> tuple[str, str]:
    """Read ``path`` (``case`` materialized) with ``photoshield.io.read_image``: (outcome class, detail)."""
    import torch

    from photoshield.errors import ImageError
    from photoshield.io import read_image

    try:
        pixels = read_image(path)
    except ImageError as error:
        if error.path is None or os.fsdecode(error.path) != os.fsdecode(path):
            return OTHER, f"ImageError does not name the file: {error}"
        if case.expect == DECODE:
            return REFUSED, str(error.problem)
        return CLEAN_ERROR, str(error.problem)
    except Exception as error:  # noqa: BLE001 - the point is to count these
        return OTHER, f"{type(error).__name__}: {error}"
    problem = ""
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.float32:
        problem = f"not a float32 tensor: {type(pixels).__name__}"
    elif pixels.ndim != 4 or tuple(pixels.shape[:2]) != (1, 3) or min(pixels.shape[2:]) < 1:
        problem = f"bad shape {tuple(pixels.shape)}"
    elif not bool(torch.isfinite(pixels).all()) or float(pixels.min()) < 0 or float(pixels.max()) > 1:
        problem = "values outside [0, 1] or not finite"
    elif case.size is not None and tuple(pixels.shape[2:]) != tuple(case.size):
        problem = f"size {tuple(pixels.shape[2:])}, expected {case.size}"
    shape = "x".join(str(n) for n in pixels.shape[2:]) if isinstance(pixels, torch.Tensor) else "?"
    if problem:
        return GARBAGE, problem
    if case.expect == ERROR:
        return GARBAGE, f"structurally invalid {case.fmt} file decoded to {shape}"
    return (DECODED if case.expect == DECODE else DECODED_DAMAGED), shape
