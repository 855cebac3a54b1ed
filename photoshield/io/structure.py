"""Structural checks that refuse truncated or forged PNG, JPEG and TIFF files before they decode to gray.

PNG: chunk by chunk (lengths, CRCs, IEND, consecutive IDAT, palette, animation frames) and the
inflated IDAT length against the size IHDR declares, in 1 MiB steps. JPEG: marker by marker up to
the end-of-image marker (a scan for every component, complete progressive scans, restart markers),
then a second decode with filler bytes after every Huffman-coded scan: a scan that ran short of data
reads the filler and the two decodes differ. TIFF: the sample format and bits per sample of the
first IFD, to name what cannot be read.
"""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageChops, JpegImagePlugin

from ..errors import ImageError

from .problems import cut_short, reason


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


def _png_chunks(data: bytes, path: Path) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, payload end) of each chunk up to IEND, checking lengths and CRCs."""
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise cut_short(path, f"truncated PNG data: the file ends at byte {len(data):,} before the IEND chunk",
                             f"{len(data) - pos} bytes after the last complete chunk, 12 needed for a chunk")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if not kind.isalpha() or not kind.isascii():
            raise ImageError(path, f"corrupt PNG data: invalid chunk type {kind!r} at byte {pos + 4:,}")
        if length > 0x7FFFFFFF:
            raise ImageError(path, f"corrupt PNG data: {kind.decode()} chunk length {length:,} is out of range")
        end = pos + 8 + length
        if end + 4 > len(data):
            raise cut_short(path, f"truncated PNG data: the {kind.decode()} chunk at byte {pos:,} is cut short "
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


def check_png(data: bytes, path: Path, check_size: Callable[[int, int], None]) -> None:
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


def png_without_metadata(data: bytes) -> tuple[bytes, list[str]]:
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
class JpegLayout:
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


def jpeg_layout(data: bytes, path: Path) -> JpegLayout:
    """Walk the markers of a JPEG's first image up to its EOI; refuse a file that ends before it.

    Also refuses a frame without scans, a sequential image without a scan for every component, a
    progressive image whose scans leave coefficient bits uncoded (a file cut at a scan boundary) and a
    scan with fewer restart markers than its restart interval and the frame size imply (data missing).
    """
    def cut(where: str) -> ImageError:
        return cut_short(path, f"truncated JPEG data: the file ends {where}, before the end-of-image marker",
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
    layout = JpegLayout(marker, width, height, components, scans, scan_ends, eoi)
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


def check_jpeg_scans_complete(data: bytes, layout: JpegLayout, im: Image.Image, path: Path) -> None:
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
        problem = f"the image data is shorter than the header declares ({reason(e)})"
    if problem:
        raise ImageError(path, f"truncated or corrupt JPEG data: {problem}; the file was cut short or its "
                               f"size field altered ({layout.width}x{layout.height} declared)")


_TIFF_TYPE_SIZES = {1: 1, 3: 2, 4: 4, 16: 8}  # BYTE, SHORT, LONG, LONG8
_TIFF_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point", 4: "undefined",
                        5: "complex integer", 6: "complex floating-point"}


def tiff_first_ifd(data: bytes, tags: tuple[int, ...] = (258, 277, 339)) -> dict[int, tuple[int, ...]]:
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


def tiff_sample_problem(tags: dict[int, Any]) -> str | None:
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
