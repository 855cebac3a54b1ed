"""Invisible-watermark baselines to compare against: dwtDct, dwtDctSvd and RivaGAN.

Thin adapters over the ``invisible-watermark`` package (PyPI ``invisible-watermark``,
import name ``imwatermark``; the ``baselines`` extra), the watermark shipped with the
Stable Diffusion reference scripts. Each method is an object with the payload length
``bits`` and a batched tensor interface::

    from photoshield.watermark.baselines import baseline
    mark = baseline("dwtDct")                     # or "dwtDctSvd", "rivaGan"
    bits = torch.randint(0, 2, (images.shape[0], mark.bits))
    marked = mark.embed(images, bits)             # (B, 3, H, W) float in [0, 1]
    decoded = mark.decode(marked)                 # (B, bits) 0/1 long

The package works on 8-bit BGR ``H x W x 3`` arrays (OpenCV order): images are rounded to
uint8, flipped to BGR, marked, and flipped back, so ``embed`` returns images on the 8-bit
grid. The package refuses images of fewer than 256 x 256 pixels; smaller images are padded
here (reflected, at the bottom and right, to the smallest size it accepts: see ``padded_size``),
marked or read, and cropped back, so ``embed`` returns the input's own size. Only the image's
own pixels then carry the mark and the reflected border adds noise to the read-back, so small
images decode less reliably (dwtDctSvd on obama: every bit at 320 x 180, ~90 % at 200 x 200,
~60 % at 96 x 64). RivaGAN's ONNX encoder and decoder ship inside the package and run offline
through onnxruntime; it carries exactly 32 bits.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import PhotoshieldError
from ..image import check_image

__all__ = ["BASELINES", "DwtDct", "DwtDctSvd", "InvisibleWatermark", "RivaGan", "baseline", "names", "padded_size"]

_INSTALL = "pip install 'photoshield[baselines]' (the invisible-watermark package)"
MIN_PIXELS = 256 * 256  # invisible-watermark's limit (height x width)
MIN_SIDE = 256


def _imwatermark() -> Any:
    """The ``imwatermark`` module, or an error that says how to install it."""
    try:
        import imwatermark
    except ImportError as error:
        raise PhotoshieldError(f"the invisible-watermark baselines need the optional extra: {_INSTALL} ({error})") from None
    return imwatermark


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The size an image is padded to before marking or reading: itself when it has 256 x 256 pixels or more.

    Otherwise the short side grows until the area reaches 256 * 256 (e.g. 180 x 320 -> 205 x 320), or both
    sides grow to 256 when the long side is shorter than that: the least padding the package accepts.
    """
    height, width = int(height), int(width)
    if height * width >= MIN_PIXELS:
        return height, width
    long_side = max(height, width)
    needed = -(-MIN_PIXELS // long_side)
    if needed <= long_side:
        return (needed, width) if height <= width else (height, needed)
    return max(height, MIN_SIDE), max(width, MIN_SIDE)


def _to_bgr_uint8(image: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """One (3, H, W) float RGB tensor in [0, 1] -> H x W x 3 uint8 BGR array (rounded), reflect-padded to ``size``."""
    rgb = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    bgr = rgb[..., ::-1]
    if size is not None and tuple(size) != bgr.shape[:2]:
        rows, cols = size[0] - bgr.shape[0], size[1] - bgr.shape[1]
        bgr = np.pad(bgr, ((0, rows), (0, cols), (0, 0)), mode="reflect" if min(bgr.shape[:2]) > 1 else "edge")
    return np.ascontiguousarray(bgr)


def _from_bgr_uint8(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """H x W x 3 uint8 BGR array -> (3, H, W) float RGB tensor in [0, 1] on ``like``'s device and dtype."""
    rgb = np.ascontiguousarray(np.asarray(array, dtype=np.uint8)[..., ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1).to(like.device, like.dtype) / 255.0


class InvisibleWatermark:
    """One invisible-watermark method: ``embed(images, bits)`` and ``decode(images)`` on (B, 3, H, W) batches."""

    method: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def __init__(self, bits: int = 32, **configs: Any):
        if not 1 <= int(bits) <= 4096:
            raise PhotoshieldError(f"{self.name}: the payload must have between 1 and 4096 bits, got {bits}")
        self.bits = int(bits)
        self.configs = configs
        self._module = _imwatermark()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits})"

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        check_image(images, "images")
        return images

    def _bits(self, bits: Any, batch: int) -> torch.Tensor:
        bits = torch.as_tensor(bits).long()
        if bits.ndim == 1:
            bits = bits[None].expand(batch, -1)
        if bits.shape != (batch, self.bits):
            raise PhotoshieldError(f"{self.name}: bits must have shape ({batch}, {self.bits}), got {tuple(bits.shape)}")
        if bool(((bits != 0) & (bits != 1)).any()):
            raise PhotoshieldError(f"{self.name}: bits must be 0 or 1")
        return bits

    def embed(self, images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Mark each image with its row of ``bits`` (B, n) of 0/1; returns images on the 8-bit grid."""
        images = self._check(images)
        bits = self._bits(bits, images.shape[0])
        height, width = images.shape[-2:]
        size = padded_size(height, width)  # small images: reflect-padded, marked, cropped back
        out = []
        for image, row in zip(images, bits):
            encoder = self._module.WatermarkEncoder()
            encoder.set_watermark("bits", row.tolist())
            marked = encoder.encode(_to_bgr_uint8(image, size), method=self.method, **self.configs)
            out.append(_from_bgr_uint8(marked[:height, :width], image))
        return torch.stack(out)

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        """The payload read back from each image: (B, n) long of 0/1."""
        images = self._check(images)
        size = padded_size(*images.shape[-2:])  # padded as embed pads
        out = []
        for image in images:
            decoder = self._module.WatermarkDecoder("bits", self.bits)
            bits = decoder.decode(_to_bgr_uint8(image, size), method=self.method, **self.configs)
            out.append(torch.as_tensor(np.asarray(bits).astype(np.int64)).flatten())
        return torch.stack(out).to(images.device)


class DwtDct(InvisibleWatermark):
    """Haar DWT, then each 4x4 block's largest DCT coefficient quantised to carry one bit (U channel; ``scales``, ``block``)."""

    method = "dwtDct"
    name = "dwtDct"


class DwtDctSvd(InvisibleWatermark):
    """Like dwtDct, but the bit sits in the largest singular value of each block's DCT (slower, more robust)."""

    method = "dwtDctSvd"
    name = "dwtDctSvd"


class RivaGan(InvisibleWatermark):
    """RivaGAN (Zhang et al. 2019): a trained attention-based encoder/decoder pair, 32 bits, ONNX through onnxruntime."""

    method = "rivaGan"
    name = "rivaGan"

    def __init__(self, bits: int = 32, **configs: Any):
        if int(bits) != 32:
            raise PhotoshieldError(f"rivaGan carries exactly 32 bits, got bits={bits}")
        super().__init__(bits, **configs)
        try:  # the ONNX files ship inside the package: no download
            self._module.WatermarkEncoder.loadModel()
        except ImportError as error:
            raise PhotoshieldError(f"rivaGan needs onnxruntime: pip install onnxruntime ({error})") from None


BASELINES: dict[str, type[InvisibleWatermark]] = {cls.name: cls for cls in (DwtDct, DwtDctSvd, RivaGan)}
_KEYS = {name.lower().replace("-", "").replace("_", ""): name for name in BASELINES}


def names() -> list[str]:
    """Names of the baseline methods."""
    return list(BASELINES)


def canonical(name: str) -> str | None:
    """The baseline's registered name for ``name`` (case and dashes ignored: "dwt-dct" -> "dwtDct"), or None."""
    return _KEYS.get(name.lower().replace("-", "").replace("_", ""))


def baseline(name: str, **params: Any) -> InvisibleWatermark:
    """Build a baseline by name ("dwtDct", "dwtDctSvd", "rivaGan"); ``params``: ``bits`` and the method's options."""
    key = canonical(name)
    if key is None:
        raise PhotoshieldError(f"unknown watermark baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return BASELINES[key](**params)
