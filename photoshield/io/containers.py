"""ISO-BMFF box parsing for AVIF and JPEG XL containers: image size, bit depth, codestream and EXIF.

Pure byte parsing, no decoding: ``avif_header`` finds the largest ``ispe`` size and the ``pixi`` bit
depth of an AVIF file (for the pixel limits and for AVIF read without Pillow), ``jxl_parts`` splits a
JPEG XL container into its codestream and EXIF (Brotli-compressed ``brob`` boxes included), and
``jxl_size`` reads width and height from a JPEG XL codestream's SizeHeader.
"""

from __future__ import annotations

import struct

import imagecodecs


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


def avif_header(data: bytes) -> tuple[tuple[int, int] | None, int]:
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


def jxl_parts(data: bytes):
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


def jxl_size(codestream: bytes) -> tuple[int, int] | None:
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
