"""Which formats this install reads and writes, and which format a file holds, told from its first bytes.

``detect_format`` names the format by content, never by extension. ``SUPPORTED_READ_FORMATS``,
``SUPPORTED_READ_EXTENSIONS`` and ``SUPPORTED_WRITE_EXTENSIONS`` follow the codecs present: AVIF needs
Pillow >= 11.2 or imagecodecs' AVIF codec (``PIL_AVIF`` says whether Pillow has it), JPEG XL needs
imagecodecs' JPEG XL codec.
"""

from __future__ import annotations

import struct

import imagecodecs
from PIL import features


#: Pillow reads and writes AVIF itself (Pillow >= 11.2); without it imagecodecs does. Readers and
#: encoders look it up as ``sniff.PIL_AVIF`` when they run, so one switch picks the codec for both.
PIL_AVIF = features.check("avif")
_HAVE_AVIF = PIL_AVIF or imagecodecs.AVIF.available
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


def detect_format(data: bytes) -> str | None:
    """Name the image format from its first bytes ("JPEG", "PNG", ...), or None if unrecognised.

    Args:
        data: the file's bytes (the first 64 are enough).

    Returns:
        One of "JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "JXL", "AVIF", "HEIF" (recognised, never
        decoded), or None. Whether this install can decode it is ``SUPPORTED_READ_FORMATS``.

    Examples:
        >>> from photoshield.data import sample_path
        >>> from photoshield.io import detect_format
        >>> detect_format(sample_path("rocket").read_bytes()), detect_format(b"not an image")
        ('JPEG', None)
    """
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
