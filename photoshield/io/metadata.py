"""Photo metadata: EXIF orientation, a fresh EXIF block for output, and the ICC profile check.

``orient`` turns pixels upright for an EXIF orientation 1-8. ``export_exif`` rebuilds an EXIF block
with IFD0 (minus layout tags), the Exif and Interop IFDs and, only when asked, the GPS location; it
resets the orientation to 1 and leaves out the thumbnail and tags that can hold a copy of the
original picture. ``is_rgb_profile`` tells the ICC profiles that can travel with RGB pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image


ORIENTATION = ExifTags.Base.Orientation
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


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
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


def is_rgb_profile(icc: bytes | None) -> bool:
    """True for an ICC profile whose colour space (header bytes 16-20) is RGB."""
    return bool(icc) and len(icc) >= 128 and icc[16:20] == b"RGB "


def export_exif(
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
        if ORIENTATION in out:
            out[ORIENTATION] = 1
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
    """Parse an EXIF block (``b"Exif\\0\\0"`` + TIFF, or bare TIFF); None for an empty one."""
    if not blob:
        return None
    exif = Image.Exif()
    exif.load(blob)
    return exif


def has_sub_ifds(exif: bytes) -> bool:
    """True when an EXIF block holds an Exif or GPS sub-IFD (libtiff's deflate path cannot write those)."""
    loaded = _load_exif(exif)
    return loaded is not None and (_EXIF_IFD in loaded or _GPS_IFD in loaded)
