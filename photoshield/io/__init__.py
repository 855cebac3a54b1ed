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

Modules, each importing only modules listed before it: ``problems`` (one-line errors), ``limits``
(decompression-bomb limits), ``sniff`` (format detection, codecs present), ``containers`` (AVIF/JPEG XL
boxes), ``photo`` (the ``Photo`` record), ``metadata`` (EXIF orientation and export, ICC),
``structure`` (PNG/JPEG/TIFF structural checks), ``decode`` and ``encode`` (bytes <-> pixel arrays),
``atomic`` (atomic writes), ``read`` and ``write`` (the public functions).
"""

from __future__ import annotations

from .limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS_PER_BYTE, PLAUSIBLE_PIXELS_ANY_SIZE
from .photo import Photo
from .read import list_images, read_image, read_photo
from .sniff import SUPPORTED_READ_EXTENSIONS, SUPPORTED_READ_FORMATS, SUPPORTED_WRITE_EXTENSIONS, detect_format
from .write import ImageInput as ImageInput  # the type write_image takes; public, not in __all__
from .write import write_image

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
