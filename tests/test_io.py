"""photoshield.io: real files written by Pillow/imagecodecs in tmp_path, small (40x24, non-square)."""

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import torch
from fuzz_corpus import build_png, flat_png_bomb, interlaced_png  # tests/fuzz_corpus.py
from PIL import Image, ImageCms, ImageFile, ImageOps
from PIL.TiffImagePlugin import IFDRational

import photoshield.io as pio
from photoshield.errors import ImageError
from photoshield.io import limits, sniff
from photoshield.io.containers import jxl_size
from photoshield.io import (
    SUPPORTED_READ_EXTENSIONS,
    SUPPORTED_READ_FORMATS,
    SUPPORTED_WRITE_EXTENSIONS,
    Photo,
    detect_format,
    list_images,
    read_image,
    read_photo,
    write_image,
)

W, H = 40, 24
GPS_LATITUDE = (IFDRational(48, 1), IFDRational(51, 1), IFDRational(2957, 100))  # a location to look for


def _smooth(width=W, height=H, seed=0):
    """A photo-like uint8 image: gradients plus a bright block near the top-left (orientation is visible)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 220, y / height * 220, (x + y) / (width + height) * 180 + 30], -1)
    base[2:8, 3:12] = (250, 240, 20)
    noise = np.random.default_rng(seed).normal(0, 2, base.shape)
    return np.clip(base + noise, 0, 255).round().astype(np.uint8)


def _tensor(array):
    return torch.from_numpy(array.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _psnr(a, b):
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def _srgb_icc():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif_with_gps(orientation=1):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhotoCam"  # Make
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = GPS_LATITUDE
    gps[3] = "E"
    gps[4] = (IFDRational(2, 1), IFDRational(17, 1), IFDRational(4010, 100))
    return exif.tobytes()


def _exif_of(path):
    with Image.open(path) as im:
        im.load()
        return im.getexif()


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".webp", ".jxl"])
def test_lossless_round_trip_is_exact(tmp_path, ext):
    if SUPPORTED_WRITE_EXTENSIONS.get(ext) is None:
        pytest.fail(f"{ext} must be writable in this install")
    image = _tensor(_smooth())
    out = write_image(image, tmp_path / f"out{ext}", quality=100)  # 100 = lossless for WebP / JPEG XL
    back = read_image(out)
    assert back.shape == (1, 3, H, W) and back.dtype == torch.float32
    assert torch.equal(back, image)


@pytest.mark.parametrize("ext,min_psnr", [(".jpg", 38), (".webp", 26), (".avif", 37), (".jxl", 34)])
def test_lossy_round_trip_is_close(tmp_path, ext, min_psnr):
    image = _tensor(_smooth())
    out = write_image(image, tmp_path / f"out{ext}")
    photo = read_photo(out)
    assert photo.format == SUPPORTED_WRITE_EXTENSIONS[ext]
    assert photo.pixels.shape == (1, 3, H, W)
    assert _psnr(photo.pixels, image) > min_psnr
    assert 0.0 <= float(photo.pixels.min()) and float(photo.pixels.max()) <= 1.0


def test_lower_quality_gives_smaller_lossy_file(tmp_path):
    image = _tensor(_smooth(80, 48))
    high = write_image(image, tmp_path / "high.jpg", quality=95)
    low = write_image(image, tmp_path / "low.jpg", quality=30)
    assert os.path.getsize(low) < os.path.getsize(high)
    assert _psnr(read_image(low), image) < _psnr(read_image(high), image)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "AVIF"])
def test_files_written_by_pillow_are_read(tmp_path, fmt):
    array = _smooth()
    path = tmp_path / "photo.img"  # no telling extension: the format comes from the content
    options = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF") else {}
    Image.fromarray(array).save(path, fmt, **options)
    photo = read_photo(path)
    assert photo.format == fmt and photo.bit_depth == 8 and photo.alpha is None
    expected = _tensor(array)
    if fmt in ("PNG", "TIFF", "BMP"):
        assert torch.equal(photo.pixels, expected)
    else:
        assert _psnr(photo.pixels, expected) > 25  # Pillow's defaults: 4:2:0 chroma, GIF's 256 colours


def test_jpeg_xl_written_by_imagecodecs_is_read(tmp_path):
    array = _smooth()
    path = tmp_path / "photo.jxl"
    path.write_bytes(imagecodecs.jpegxl_encode(array, lossless=True))
    assert torch.equal(read_image(path), _tensor(array))
    container = tmp_path / "container.jxl"
    container.write_bytes(imagecodecs.jpegxl_encode(array, lossless=True, usecontainer=True))
    assert torch.equal(read_image(container), _tensor(array))


@pytest.mark.parametrize("size", [(40, 24), (64, 48), (48, 64), (33, 17), (1000, 9), (9, 700), (16, 16), (513, 300)])
def test_jpeg_xl_header_size_matches_decoded_size(size):
    width, height = size
    codestream = bytes(imagecodecs.jpegxl_encode(np.zeros((height, width), np.uint8), lossless=True))
    assert jxl_size(codestream) == (width, height)


def test_format_is_detected_from_content_not_extension(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(_smooth()).save(path, "PNG")
    photo = read_photo(path)
    assert photo.format == "PNG"
    assert torch.equal(photo.pixels, _tensor(_smooth()))
    assert detect_format(b"GIF89a" + b"\0" * 20) == "GIF"
    assert detect_format(b"plain text, not an image") is None


# ----------------------------------------------------------------------------- orientation


_STORE = {  # how a camera stores an upright picture for each EXIF orientation (the inverse of the fix)
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_reads_upright(tmp_path, orientation):
    upright = Image.fromarray(_smooth())
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    _STORE[orientation](upright).save(path, exif=exif.tobytes())
    photo = read_photo(path)
    assert torch.equal(photo.pixels, _tensor(_smooth()))
    # Independent reference: Pillow's own exif_transpose agrees.
    with Image.open(path) as stored:
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(stored)), _smooth())
    reloaded = Image.Exif()
    reloaded.load(photo.exif)
    assert reloaded[0x0112] == 1  # pixels are upright now, so the tag says so


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "AVIF", "TIFF"])
def test_orientation_in_other_formats(tmp_path, fmt):
    upright = _smooth()
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated"
    options = {"quality": 95} if fmt != "TIFF" else {}
    _STORE[6](Image.fromarray(upright)).save(path, fmt, exif=exif.tobytes(), **options)
    photo = read_photo(path)
    assert photo.pixels.shape == (1, 3, H, W)
    assert _psnr(photo.pixels, _tensor(upright)) > 27  # a wrong orientation gives about 10 dB


# ----------------------------------------------------------------------------- alpha, depth, modes


def _rgba(seed=1):
    alpha = np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)
    alpha[:4] = 0  # fully transparent rows and fully opaque ones, as in real cut-outs
    alpha[-4:] = 255
    return np.dstack([_smooth(), alpha])


def _read_alpha(path):
    if path.suffix == ".jxl":
        return imagecodecs.jpegxl_decode(path.read_bytes())[..., 3]
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        return np.asarray(im)[..., 3]


@pytest.mark.parametrize("ext", [".png", ".webp", ".tif", ".avif", ".jxl"])
def test_alpha_is_put_back_untouched(tmp_path, ext):
    rgba = _rgba()
    source = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(source)
    photo = read_photo(source)
    assert photo.pixels.shape == (1, 3, H, W)
    assert np.array_equal(photo.alpha, rgba[..., 3]) and photo.alpha.dtype == np.uint8
    assert torch.equal(photo.pixels, _tensor(rgba[..., :3]))
    edited = (photo.pixels + 0.02).clamp(0, 1)  # a protected version of the colours
    out = write_image(edited, tmp_path / f"out{ext}", metadata=photo)
    assert np.array_equal(_read_alpha(out), rgba[..., 3])
    assert np.array_equal(read_photo(out).alpha, rgba[..., 3])


def test_jpeg_output_drops_alpha(tmp_path):
    source = tmp_path / "cutout.png"
    Image.fromarray(_rgba(), "RGBA").save(source)
    photo = read_photo(source)
    out = write_image(photo, tmp_path / "flat.jpg")
    with Image.open(out) as im:
        assert im.mode == "RGB"
    assert read_photo(out).alpha is None


def test_alpha_follows_orientation(tmp_path):
    rgba = _rgba()
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "rotated_cutout.png"
    _STORE[8](Image.fromarray(rgba, "RGBA")).save(path, exif=exif.tobytes())
    photo = read_photo(path)
    assert np.array_equal(photo.alpha, rgba[..., 3])
    assert torch.equal(photo.pixels, _tensor(rgba[..., :3]))


def test_sixteen_bit_png_keeps_precision(tmp_path):
    rgb16 = np.random.default_rng(2).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(imagecodecs.png_encode(rgb16))
    photo = read_photo(path)
    assert photo.bit_depth == 16
    assert torch.equal((photo.pixels[0].permute(1, 2, 0) * 65535).round().to(torch.int64),
                       torch.from_numpy(rgb16.astype(np.int64)))
    # Pixels that differ only below the 8-bit step stay different (Pillow alone would merge them).
    assert len(torch.unique(photo.pixels)) > 256
    out = write_image(photo, tmp_path / "deep_out.png", overwrite_input=False)
    assert np.array_equal(imagecodecs.png_decode(out.read_bytes()), rgb16)


def test_sixteen_bit_gray_alpha_png_and_tiff(tmp_path):
    rng = np.random.default_rng(3)
    gray_alpha = rng.integers(0, 65536, (H, W, 2), dtype=np.uint16)
    path = tmp_path / "la16.png"
    path.write_bytes(imagecodecs.png_encode(gray_alpha))
    photo = read_photo(path)
    assert photo.bit_depth == 16 and photo.alpha.dtype == np.uint16
    assert np.array_equal(photo.alpha, gray_alpha[..., 1])
    expected = torch.from_numpy(gray_alpha[..., 0].astype(np.float32) / 65535)
    for channel in range(3):
        assert torch.equal(photo.pixels[0, channel], expected)
    out = write_image(photo, tmp_path / "la16_out.tif")
    decoded = imagecodecs.tiff_decode(out.read_bytes())
    assert decoded.dtype == np.uint16 and np.array_equal(decoded[..., 3], gray_alpha[..., 1])
    assert np.array_equal(decoded[..., 1], gray_alpha[..., 0])

    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    tiff = tmp_path / "rgb16.tif"
    tiff.write_bytes(imagecodecs.tiff_encode(rgb16))
    photo = read_photo(tiff)
    assert photo.bit_depth == 16
    assert torch.equal((photo.pixels[0].permute(1, 2, 0) * 65535).round().to(torch.int64),
                       torch.from_numpy(rgb16.astype(np.int64)))


def test_grayscale_palette_and_bilevel_inputs(tmp_path):
    gray = _smooth()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    pixels = read_image(tmp_path / "gray.png")
    assert pixels.shape == (1, 3, H, W)
    for channel in range(3):
        assert torch.equal(pixels[0, channel], torch.from_numpy(gray.astype(np.float32) / 255))

    palette_image = Image.fromarray(_smooth()).quantize(16)
    palette_image.save(tmp_path / "palette.png")
    expected = _tensor(np.asarray(palette_image.convert("RGB")))
    photo = read_photo(tmp_path / "palette.png")
    assert torch.equal(photo.pixels, expected) and photo.alpha is None

    palette_image.info["transparency"] = 0  # palette entry 0 is transparent (tRNS)
    palette_image.save(tmp_path / "palette_alpha.png", transparency=0)
    photo = read_photo(tmp_path / "palette_alpha.png")
    assert np.array_equal(photo.alpha, np.where(np.asarray(palette_image) == 0, 0, 255))

    Image.fromarray(gray > 128).save(tmp_path / "bilevel.png")
    assert set(read_image(tmp_path / "bilevel.png").unique().tolist()) == {0.0, 1.0}


def test_gray_with_alpha_input(tmp_path):
    rgba = _rgba()
    la = np.dstack([rgba[..., 0], rgba[..., 3]])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    photo = read_photo(tmp_path / "la.png")
    assert np.array_equal(photo.alpha, rgba[..., 3])
    assert torch.equal(photo.pixels[0, 1], torch.from_numpy(rgba[..., 0].astype(np.float32) / 255))


# ----------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif", ".avif"])
def test_icc_profile_is_kept(tmp_path, ext):
    icc = _srgb_icc()
    source = tmp_path / "tagged.jpg"
    Image.fromarray(_smooth()).save(source, quality=95, icc_profile=icc)
    photo = read_photo(source)
    assert photo.icc_profile == icc
    out = write_image(photo.pixels, tmp_path / f"out{ext}", metadata=photo)
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc
    assert read_photo(out).icc_profile == icc


def test_sixteen_bit_png_output_keeps_icc_and_exif(tmp_path):
    rgb16 = np.random.default_rng(4).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    source = tmp_path / "deep.png"
    source.write_bytes(imagecodecs.png_encode(rgb16))
    photo = read_photo(source)
    photo.icc_profile = _srgb_icc()
    photo.exif = _exif_with_gps()
    out = write_image(photo, tmp_path / "deep_tagged.png")
    with Image.open(out) as im:
        im.load()
        assert im.info["icc_profile"] == photo.icc_profile
        assert im.getexif()[0x010F] == "PhotoCam"
        assert not im.getexif().get_ifd(0x8825)
    assert np.array_equal(imagecodecs.png_decode(out.read_bytes()), rgb16)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif", ".avif", ".jxl"])
def test_gps_is_stripped_by_default_and_kept_on_request(tmp_path, ext):
    source = tmp_path / "geotagged.jpg"
    Image.fromarray(_smooth()).save(source, quality=95, exif=_exif_with_gps())
    photo = read_photo(source)
    original = Image.Exif()
    original.load(photo.exif)
    assert original.get_ifd(0x8825)[1] == "N"  # read_photo keeps everything; writing decides

    stripped = write_image(photo, tmp_path / f"stripped{ext}")
    kept = write_image(photo, tmp_path / f"kept{ext}", keep_all_metadata=True)
    for path, has_gps in ((stripped, False), (kept, True)):
        if ext == ".jxl":  # Pillow has no JPEG XL reader
            exif = Image.Exif()
            exif.load(read_photo(path).exif)
        else:
            exif = _exif_of(path)
        assert exif[0x010F] == "PhotoCam"
        assert exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
        gps = exif.get_ifd(0x8825)
        assert bool(gps) == has_gps
        if has_gps:
            assert gps[1] == "N" and [float(v) for v in gps[2]] == [48.0, 51.0, 29.57]
    # The coordinates are gone from the bytes, not only unreferenced.
    latitude_seconds = struct.pack(">II", 2957, 100), struct.pack("<II", 2957, 100)
    assert not any(pattern in stripped.read_bytes() for pattern in latitude_seconds)
    assert any(pattern in kept.read_bytes() for pattern in latitude_seconds)


def _exif_with_thumbnail(thumbnail):
    """A little-endian EXIF block as cameras write it: IFD0 (Make) then IFD1 pointing at a JPEG thumbnail."""
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHI4s", 0x010F, 2, 4, b"Cam\0") + struct.pack("<I", 26)
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, 56)
    ifd1 += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd0 + ifd1 + struct.pack("<I", 0) + thumbnail


def test_exif_thumbnail_of_the_original_is_not_carried(tmp_path):
    thumbnail = io.BytesIO()
    Image.fromarray(_smooth(16, 10)).save(thumbnail, "JPEG")
    source = tmp_path / "camera.jpg"
    Image.fromarray(_smooth()).save(source, exif=_exif_with_thumbnail(thumbnail.getvalue()))
    with Image.open(source) as im:
        assert thumbnail.getvalue() in im.info["exif"]  # the source really carries the old picture
    photo = read_photo(source)
    exif = Image.Exif()
    exif.load(photo.exif)
    assert exif[0x010F] == "Cam"
    assert b"\xff\xd8\xff" not in photo.exif
    out = write_image(photo, tmp_path / "shared.jpg")
    assert out.read_bytes().count(b"\xff\xd8\xff") == 1  # only the image itself


# ----------------------------------------------------------------------------- bad input


def _png_header_only(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 64)
    chunk += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + chunk


def _assert_image_error(path, words, **kwargs):
    with pytest.raises(ImageError) as caught:
        read_image(path, **kwargs)
    message = str(caught.value)
    assert path.name in message, message
    assert any(word in message for word in words), message
    return caught.value


def test_missing_directory_and_empty_files(tmp_path):
    _assert_image_error(tmp_path / "missing.jpg", ["not found"])
    (tmp_path / "folder.png").mkdir()
    _assert_image_error(tmp_path / "folder.png", ["directory"])
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_image_error(tmp_path / "empty.png", ["empty"])


def test_unknown_and_heif_formats(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels\n" * 10)
    _assert_image_error(tmp_path / "notes.jpg", ["not a recognised image format"])
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + b"\0" * 64
    (tmp_path / "iphone.heic").write_bytes(heic)
    _assert_image_error(tmp_path / "iphone.heic", ["HEIC"])


def _encoded(fmt, noisy=False):
    array = _smooth(64, 48)
    if noisy:  # many bytes of entropy-coded data, so that half the file ends inside the pixels
        array = np.random.default_rng(7).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    if fmt == "JXL":
        return bytes(imagecodecs.jpegxl_encode(array, level=90))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP", "AVIF") else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "AVIF", "JXL"])
def test_truncated_files_raise_instead_of_returning_gray(tmp_path, fmt):
    data = _encoded(fmt, noisy=True)
    path = tmp_path / f"half.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    error = _assert_image_error(path, ["truncated", "corrupt"])
    assert error.__cause__ is not None  # the decoder's own error stays in the chain


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "JXL"])
def test_corrupt_files_raise(tmp_path, fmt):
    data = bytearray(_encoded(fmt))
    garbage = np.random.default_rng(5).integers(0, 256, len(data) - 40, dtype=np.uint8).tobytes()
    data[12 if fmt != "PNG" else 40 :] = garbage[: len(data) - (12 if fmt != "PNG" else 40)]
    path = tmp_path / f"corrupt.{fmt.lower()}"
    path.write_bytes(bytes(data))
    _assert_image_error(path, ["corrupt", "truncated"])


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels claimed in a 100-byte file
    _assert_image_error(path, ["above the limit"])
    # A limit above Pillow's own (2 x Image.MAX_IMAGE_PIXELS) is honoured: ours decides, with our message.
    _assert_image_error(path, ["above the limit of 9,999,999,999"], max_pixels=10**10 - 1)
    small = tmp_path / "small.png"
    Image.fromarray(_smooth()).save(small)
    _assert_image_error(small, ["above the limit"], max_pixels=W * H - 1)
    assert read_image(small, max_pixels=W * H).shape == (1, 3, H, W)
    assert read_image(small, max_pixels=None).shape == (1, 3, H, W)


@pytest.mark.parametrize("fmt", ["JXL", "AVIF"])
def test_pixel_limit_for_imagecodecs_formats(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(_encoded(fmt))
    _assert_image_error(path, ["above the limit"], max_pixels=64 * 48 - 1)
    assert read_image(path, max_pixels=64 * 48).shape == (1, 3, 48, 64)


def test_avif_without_pillow_support_uses_imagecodecs(tmp_path, monkeypatch):
    monkeypatch.setattr(sniff, "PIL_AVIF", False)
    path = tmp_path / "photo.avif"
    path.write_bytes(imagecodecs.avif_encode(_smooth(), 100))  # level 100: lossless
    assert torch.equal(read_image(path), _tensor(_smooth()))
    _assert_image_error(path, ["above the limit"], max_pixels=W * H - 1)
    deep = (_smooth().astype(np.uint16) * 4).clip(0, 1023)
    path.write_bytes(imagecodecs.avif_encode(deep, 100, bitspersample=10))
    photo = read_photo(path)
    assert photo.bit_depth == 10
    assert torch.allclose(photo.pixels, torch.from_numpy(deep / 1023.0).float().permute(2, 0, 1)[None])


def test_too_small_image(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(_smooth(5, 30)).save(path)
    _assert_image_error(path, ["smaller than the minimum"])
    assert read_image(path, min_size=4).shape == (1, 3, 30, 5)


def test_unsupported_mode(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.random.default_rng(6).random((H, W)).astype(np.float32), "F").save(path)
    _assert_image_error(path, ["unsupported pixel mode"])


# ----------------------------------------------------------------------------- writing safely


def test_unknown_output_extension(tmp_path):
    with pytest.raises(ImageError, match=r"out\.xyz.*unknown output extension"):
        write_image(_tensor(_smooth()), tmp_path / "out.xyz")
    assert not list(tmp_path.iterdir())


def test_write_accepts_tensor_pil_and_photo(tmp_path):
    array = _smooth()
    write_image(_tensor(array)[0], tmp_path / "chw.png")
    write_image(Image.fromarray(_rgba(), "RGBA"), tmp_path / "pil.png")
    photo = read_photo(tmp_path / "pil.png")
    assert np.array_equal(photo.alpha, _rgba()[..., 3])
    write_image(photo, tmp_path / "photo.png")
    assert torch.equal(read_image(tmp_path / "chw.png"), _tensor(array))
    with pytest.raises(ImageError, match="batch of 2"):
        write_image(torch.zeros(2, 3, H, W), tmp_path / "batch.png")
    with pytest.raises(ImageError, match="NaN"):
        write_image(torch.full((1, 3, H, W), float("nan")), tmp_path / "nan.png")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    image = _tensor(_smooth())
    for ext in (".png", ".jpg", ".webp", ".jxl"):
        write_image(image, tmp_path / f"out{ext}")
        write_image(image, tmp_path / f"out{ext}")  # replacing an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "out.jxl", "out.png", "out.webp"]


def test_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(_tensor(_smooth()), target)
    before = target.read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ImageError, match="No space left") as caught:
        write_image(_tensor(_smooth(seed=9)), target)
    assert isinstance(caught.value.__cause__, OSError)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_refuses_to_overwrite_the_input(tmp_path):
    source = tmp_path / "holiday.png"
    Image.fromarray(_smooth()).save(source)
    before = source.read_bytes()
    photo = read_photo(source)
    protected = photo.pixels.flip(-1)  # stays on the 8-bit grid
    with pytest.raises(ImageError, match="holiday.png.*overwrite the input"):
        write_image(protected, source, metadata=photo)
    with pytest.raises(ImageError, match="overwrite the input"):
        write_image(photo, tmp_path / "sub" / ".." / "holiday.png")  # another spelling, same file
    link = tmp_path / "link.png"
    link.symlink_to(source)
    with pytest.raises(ImageError, match="overwrite the input"):
        write_image(protected, link, metadata=photo)
    assert source.read_bytes() == before
    write_image(protected, source, metadata=photo, overwrite_input=True)
    assert torch.equal(read_image(source), protected)


# ----------------------------------------------------------------------------- folders


def test_list_images(tmp_path):
    for name in ("b.JPG", "a.png", "c.webp", "notes.txt", ".hidden.png", "d.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jxl").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "f.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp", "d.tif"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.png", "b.JPG", "c.webp", "d.tif", "sub/e.jxl"]
    with pytest.raises(ImageError, match="folder not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "a.png")


def test_supported_constants():
    assert {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "AVIF", "JXL"} <= set(SUPPORTED_READ_FORMATS)
    assert {".jpg", ".png", ".webp", ".tif", ".bmp", ".avif", ".jxl"} <= set(SUPPORTED_WRITE_EXTENSIONS)
    assert ".gif" in SUPPORTED_READ_EXTENSIONS and ".gif" not in SUPPORTED_WRITE_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in SUPPORTED_READ_EXTENSIONS)


def test_photo_repr_is_short(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_smooth()).save(path)
    photo = read_photo(path)
    assert isinstance(photo, Photo) and photo.size == (H, W)
    assert "tensor" not in repr(photo) and "a.png" in repr(photo)


# ----------------------------------------------------------------------------- more inputs


def test_camera_raw_preview_is_refused(tmp_path):
    path = tmp_path / "camera.dng"
    Image.fromarray(_smooth()).save(path, "TIFF", tiffinfo={254: 1})  # first image flagged as a reduced preview
    _assert_image_error(path, ["camera raw"])


def test_sixteen_bit_rgba_tiff_round_trip(tmp_path):
    rgba16 = np.random.default_rng(8).integers(0, 65536, (H, W, 4), dtype=np.uint16)
    path = tmp_path / "rgba16.tif"
    path.write_bytes(imagecodecs.tiff_encode(rgba16, photometric="rgb", extrasample="unassalpha"))
    photo = read_photo(path)
    assert photo.bit_depth == 16 and np.array_equal(photo.alpha, rgba16[..., 3])
    out = write_image(photo, tmp_path / "copy.png")
    assert np.array_equal(imagecodecs.png_decode(out.read_bytes()), rgba16)


@pytest.mark.parametrize("quality", [0, 101, 50.5, True])
def test_bad_quality_is_refused(tmp_path, quality):
    with pytest.raises(ImageError, match="quality"):
        write_image(_tensor(_smooth()), tmp_path / "out.jpg", quality=quality)


def test_broken_exif_does_not_lose_the_photo(tmp_path):
    photo = Photo(pixels=_tensor(_smooth()), exif=b"Exif\0\0MM\0*garbage")
    with pytest.warns(UserWarning, match="EXIF"):
        out = write_image(photo, tmp_path / "out.png")
    assert torch.equal(read_image(out), photo.pixels) and read_photo(out).exif is None


# ----------------------------------------------------------------------------- issue 21: nothing decodes silently wrong

_SAMPLES = Path(__file__).resolve().parent.parent / "photoshield" / "assets" / "samples"
_FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _ihdr(width, height, depth=8, colour=2, interlace=0):
    return (b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def _rows(array):
    return b"".join(b"\0" + row.tobytes() for row in array)


def test_png_with_valid_crcs_but_missing_rows_raises(tmp_path):
    """The issue's reproducer: 64x64, IDAT holds rows 0-1, every chunk and CRC valid."""
    array = _smooth(64, 64)
    path = tmp_path / "two_rows.png"
    path.write_bytes(build_png([_ihdr(64, 64), (b"IDAT", zlib.compress(_rows(array[:2]))), (b"IEND", b"")]))
    _assert_image_error(path, ["holds 2 of the 64 rows"])
    path.write_bytes(build_png([_ihdr(64, 64), (b"IDAT", zlib.compress(_rows(array))), (b"IEND", b"")]))
    assert torch.equal(read_image(path), _tensor(array))


@pytest.mark.parametrize("case", ["taller", "shorter", "wider", "surplus-row", "zlib-cut", "interlaced-short",
                                  "sixteen-bit-short", "bilevel-short", "no-iend", "bad-crc", "idat-split"])
def test_png_pixel_data_must_match_the_header(tmp_path, case):
    array = _smooth(32, 24)
    raw = _rows(array)
    chunks = {
        "taller": [_ihdr(32, 30), (b"IDAT", zlib.compress(raw))],
        "shorter": [_ihdr(32, 20), (b"IDAT", zlib.compress(raw))],
        "wider": [_ihdr(33, 24), (b"IDAT", zlib.compress(raw))],
        "surplus-row": [_ihdr(32, 24), (b"IDAT", zlib.compress(raw + raw[: 1 + 96]))],
        "zlib-cut": [_ihdr(32, 24), (b"IDAT", zlib.compress(raw)[:-40])],
        "interlaced-short": [_ihdr(32, 24, interlace=1), (b"IDAT", zlib.compress(raw[: len(raw) - 97]))],
        "sixteen-bit-short": [_ihdr(32, 24, depth=16), (b"IDAT", zlib.compress(raw))],
        "bilevel-short": [_ihdr(32, 24, depth=1, colour=0), (b"IDAT", zlib.compress(b"\0\xff\xff\xff\xff" * 23))],
        "no-iend": [_ihdr(32, 24), (b"IDAT", zlib.compress(raw))],
        "bad-crc": [_ihdr(32, 24), (b"IDAT", zlib.compress(raw))],
        "idat-split": [_ihdr(32, 24), (b"IDAT", zlib.compress(raw)[:50]), (b"tEXt", b"a\0b"),
                       (b"IDAT", zlib.compress(raw)[50:])],
    }[case]
    data = build_png(chunks + ([] if case == "no-iend" else [(b"IEND", b"")]))
    if case == "bad-crc":
        data = data[:-17] + bytes([data[-17] ^ 1]) + data[-16:]  # last byte of the IDAT CRC
    path = tmp_path / f"{case}.png"
    path.write_bytes(data)
    _assert_image_error(path, ["truncated", "corrupt"])


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (9, 9), (7, 13), (24, 40)])
def test_interlaced_png_of_any_size_reads_exactly(tmp_path, size):
    """The Adam7 length check counts the passes right, empty passes included."""
    array = _smooth(size[1], size[0], seed=size[0])
    path = tmp_path / "interlaced.png"
    path.write_bytes(interlaced_png(array))
    assert torch.equal(read_image(path, min_size=1), _tensor(array))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "I;16"])
def test_png_modes_pass_the_length_check(tmp_path, mode):
    array = _smooth(37, 19)  # odd width: packed rows of 1-bit images end mid-byte
    image = Image.fromarray(array).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    path = tmp_path / f"{mode.replace(';', '')}.png"
    image.save(path)
    assert read_image(path).shape == (1, 3, 19, 37)


def _jpeg(array, style):
    options = {"baseline": {}, "progressive": {"progressive": True}, "restart": {"restart_marker_blocks": 2}}[style]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _jpeg_height(data, height):
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    return data[: sof + 5] + struct.pack(">H", height) + data[sof + 7 :]


@pytest.mark.parametrize("style", ["baseline", "progressive", "restart"])
def test_jpeg_cut_short_and_closed_with_eoi_raises(tmp_path, style):
    data = _jpeg(np.random.default_rng(3).integers(0, 256, (80, 96, 3), dtype=np.uint8), style)
    path = tmp_path / f"cut_{style}.jpg"
    path.write_bytes(data)
    assert read_image(path).shape == (1, 3, 80, 96)
    for cut in (len(data) // 3, len(data) // 2, len(data) - 40):
        path.write_bytes(data[:cut] + b"\xff\xd9")
        _assert_image_error(path, ["truncated"])


@pytest.mark.parametrize("style", ["baseline", "progressive", "restart"])
def test_jpeg_with_a_raised_frame_height_raises(tmp_path, style):
    """The issue's reproducer: SOF height 80 -> 160 decoded as 160 rows, the bottom filled with 128."""
    data = _jpeg(np.random.default_rng(4).integers(0, 256, (80, 96, 3), dtype=np.uint8), style)
    path = tmp_path / f"tall_{style}.jpg"
    path.write_bytes(_jpeg_height(data, 160))
    _assert_image_error(path, ["truncated", "corrupt"])


def test_progressive_jpeg_cut_at_a_scan_boundary_raises(tmp_path):
    data = _jpeg(_smooth(96, 80), "progressive")
    scans = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    path = tmp_path / "few_scans.jpg"
    for scan in scans[1:]:
        path.write_bytes(data[:scan] + b"\xff\xd9")
        _assert_image_error(path, ["truncated"])


def test_jpeg_without_end_marker_raises(tmp_path):
    data = _jpeg(_smooth(), "baseline")
    path = tmp_path / "no_eoi.jpg"
    path.write_bytes(data[:-2])
    _assert_image_error(path, ["truncated"])


def test_real_photos_pass_the_structure_checks():
    """Camera JPEGs and photo PNGs shipped with the package and the tests still read."""
    files = sorted(p for folder in (_SAMPLES, _FIXTURES) if folder.is_dir() for p in folder.rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        pytest.skip("no sample photos in this checkout")
    for file in files:
        image = read_image(file)
        assert image.shape[2] >= 8 and image.shape[3] >= 8, file


def _no_decoding(monkeypatch):
    """Make any pixel decoding fail the test: bombs must be refused from the header."""
    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(imagecodecs, "png_decode", refuse)


def test_tiny_jpeg_declaring_10000x10000_is_refused_before_decoding(tmp_path, monkeypatch):
    data = _jpeg(np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8), "baseline")
    path = tmp_path / "bomb.jpg"
    path.write_bytes(data[:2] + b"\xff\xfe" + struct.pack(">H", 1600) + bytes(1598) + data[2:])  # ~3 kB
    path.write_bytes(path.read_bytes().replace(b"\xff\xc0\x00\x11\x08\x00\x28\x00\x28",
                                               b"\xff\xc0\x00\x11\x08\x27\x10\x27\x10"))
    _no_decoding(monkeypatch)
    error = _assert_image_error(path, ["pixels per byte"])
    assert "10000x10000" in str(error) and "max_pixels_per_byte=None" in str(error)


def test_tiny_png_declaring_8x12000000_is_refused_quickly(tmp_path, monkeypatch):
    path = tmp_path / "tall.png"
    path.write_bytes(build_png([_ihdr(8, 12_000_000, colour=0), (b"IDAT", zlib.compress(bytes(9 * 100_000))),
                                (b"IEND", b"")]))
    assert path.stat().st_size < 1100
    _no_decoding(monkeypatch)
    _assert_image_error(path, ["pixels per byte"])
    # Even with the plausibility rule lifted, the IDAT length bound refuses it without inflating 100 MB.
    _assert_image_error(path, ["cannot hold"], max_pixels_per_byte=None)


def test_flat_sixteen_bit_rgba_10000x10000_png_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "flat16.png"
    path.write_bytes(flat_png_bomb(10_000, 10_000))
    assert path.stat().st_size < 1_000_000  # a real, complete PNG: 800 MB of pixels in under 1 MB
    _no_decoding(monkeypatch)
    error = _assert_image_error(path, ["pixels per byte"])
    assert f"{path.stat().st_size:,} bytes" in str(error)


def test_plausibility_ratio_is_a_setting(tmp_path, monkeypatch):
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (30, 60, 90)).save(path)
    assert 300 * 200 / path.stat().st_size > pio.DEFAULT_MAX_PIXELS_PER_BYTE
    assert read_image(path).shape == (1, 3, 200, 300)  # small images are never judged by their size
    monkeypatch.setattr(limits, "PLAUSIBLE_PIXELS_ANY_SIZE", 10_000)
    _assert_image_error(path, ["pixels per byte", "max_pixels_per_byte=None"])
    assert read_image(path, max_pixels_per_byte=None).shape == (1, 3, 200, 300)
    assert read_image(path, max_pixels_per_byte=1e6).shape == (1, 3, 200, 300)


@pytest.mark.parametrize("text, expected", [("", 64.0), ("0", None), ("none", None), ("200", 200.0), ("abc", 64.0)])
def test_plausibility_ratio_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv("PHOTOSHIELD_MAX_PIXELS_PER_BYTE", text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert limits.ratio_from_environment(64.0) == expected


def test_genuine_large_flat_photo_reads(tmp_path):
    """A 5312x2988 camera-size JPEG reads even when it compresses to a few hundred pixels per byte."""
    small = _smooth(83, 47)
    path = tmp_path / "large.jpg"
    Image.fromarray(small).resize((5312, 2988), Image.BILINEAR).save(path, quality=60)
    assert read_image(path).shape == (1, 3, 2988, 5312)


def test_nul_byte_and_other_unopenable_paths_name_the_path(tmp_path):
    with pytest.raises(ImageError) as caught:
        read_photo("a\x00b.png")
    assert caught.value.path == "a\x00b.png" and "invalid file name" in str(caught.value)
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(loop)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)  # must be refused, not block waiting for a writer
    for path, words in ((loop, ["cannot open"]), (dangling, ["not found"]), (fifo, ["not a regular file"]),
                        (tmp_path / ("x" * 300 + ".png"), ["cannot open"])):
        with pytest.raises(ImageError) as caught:
            read_photo(path)
        assert caught.value.path == str(path) and any(w in caught.value.problem for w in words), caught.value


def test_bytes_and_non_utf8_paths_read(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9-\xff.png"
    Image.fromarray(_smooth()).save(os.fsdecode(raw))
    assert read_image(raw).shape == (1, 3, H, W)
    assert read_image(os.fsdecode(raw)).shape == (1, 3, H, W)


@pytest.mark.parametrize("dtype, words", [(np.float32, "32-bit floating-point"), (np.float64, "64-bit floating-point"),
                                          (np.uint32, "32-bit unsigned integer"), (np.int16, "16-bit signed integer")])
@pytest.mark.parametrize("channels", [1, 3])
def test_float_and_32_bit_tiffs_say_the_sample_format_is_unsupported(tmp_path, dtype, words, channels):
    array = np.random.default_rng(9).random((H, W, 3))[..., :channels].squeeze()
    array = (array * (1 if np.dtype(dtype).kind == "f" else 1000)).astype(dtype)
    path = tmp_path / "samples.tif"
    path.write_bytes(imagecodecs.tiff_encode(array, photometric="rgb" if channels == 3 else None))
    error = _assert_image_error(path, [words])
    assert "unsupported" in error.problem and "cannot be parsed" not in error.problem


@pytest.mark.parametrize("chunk", [b"ICC" * 9, b"ICC\0\0" + b"not zlib" * 8, b"ICC\0\0" + zlib.compress(b"junk" * 99)])
def test_corrupt_png_icc_profile_never_loses_the_photo(tmp_path, chunk):
    data = (tmp_path / "src.png")
    Image.fromarray(_smooth()).save(data)
    raw = data.read_bytes()
    path = tmp_path / "icc.png"
    path.write_bytes(raw[:33] + build_png([(b"iCCP", chunk)])[8:] + raw[33:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photo = read_photo(path)
    assert torch.equal(photo.pixels, _tensor(_smooth())) and photo.icc_profile is None


@pytest.mark.parametrize("segment", [
    b"\xff\xe1\x00\x20Exif\x00\x00" + bytes(24),  # EXIF block of zeros
    b"\xff\xe1\x00\x1aExif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x69\x87\x04\x00\x01\x00\x00\x00\x08\x00",  # IFD loop
    b"\xff\xe2\x00\x20ICC_PROFILE\x00\x05\x02" + bytes(16),  # ICC chunk 5 of 2
    # An ICC profile with an RGB header and nothing else.
    b"\xff\xe2\x00\x90ICC_PROFILE\x00\x01\x01" + b"\x00\x00\x00\x80" + bytes(12) + b"RGB " + bytes(108),
])
def test_corrupt_jpeg_exif_and_icc_never_lose_the_photo(tmp_path, segment):
    data = _jpeg(_smooth(), "baseline")
    path = tmp_path / "meta.jpg"
    path.write_bytes(data[:2] + segment + data[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photo = read_photo(path)
        write_image(photo, tmp_path / "out.png")
    assert photo.size == (H, W)


@pytest.mark.parametrize("orientation", [0, 9, 255])
def test_out_of_range_orientation_is_ignored(tmp_path, orientation):
    path = tmp_path / "odd.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_smooth()).save(path, quality=95, exif=exif.tobytes())
    assert read_image(path).shape == (1, 3, H, W)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own complaint while it gives up on the file
def test_bigtiff_float_samples_say_unsupported(tmp_path):
    path = tmp_path / "big.tif"
    path.write_bytes(imagecodecs.tiff_encode(np.zeros((H, W, 3), np.float32), photometric="rgb", bigtiff=True,
                                             byteorder=">"))
    _assert_image_error(path, ["32-bit floating-point"])
