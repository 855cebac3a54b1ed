"""Bind a mark to the photo it was embedded in: a keyed, robust content tag that selects the keystream.

Without it every photo marked with one key and message carries the same bits, so the same residual:
averaging a few marked photos estimates it and adds it to any photo (a forgery), and the public decoder
reads the raw bits of one marked photo so that the public embedder can copy them onto another (a
replay). With it the codeword is scrambled by a keystream drawn from the key *and* a ``TAG_BITS``-bit tag
of the photo's own coarse content:

- the tag is the signs of ``TAG_BITS`` keyed random projections of a band-pass (difference of Gaussians)
  32 x 32 luma copy, weighted towards the centre (so that crops of the border keep it) and normalised to
  zero mean and unit variance (so that brightness and contrast changes keep it); without the key nobody
  can compute it, nor steer a photo towards a chosen tag;
- codecs, resizing, blur and the mark itself move the projections a little: the projections nearest to
  zero may flip, so the verifier tries every flip pattern of the ``FLIP_BITS`` least reliable tag bits
  (``candidates``) and charges for all of them in its p-value (a union bound over ``2**FLIP_BITS`` keys);
- photos marked with one key and message now carry different bits (their tags differ), so their average
  carries no codeword; bits copied from one photo onto another are read under the other photo's tag, so
  they no longer fit the owner's codeword.

    tags, reliability = content_tag(images, key="k")      # (B, 16) uint8 and (B, 16) float
    keys = [bound_key("k", tag) for tag in candidates(tags[0], reliability[0])]   # 16 keys to try
"""

from __future__ import annotations

import hashlib
import itertools
from functools import lru_cache

import kornia
import numpy as np
import torch

from ..image import resize_to

__all__ = ["FLIP_BITS", "TAG_BITS", "bound_key", "candidates", "content_tag", "key_bytes"]

TAG_BITS = 16
FLIP_BITS = 4
_SIDE = 32
_CENTRE_SIGMA = 0.16  # of the side: the tag reads the central part of the photo most
_PUBLIC_KEY = b"photoshield-public"


def key_bytes(key: str | bytes | None) -> bytes:
    """The key as bytes (None is the public key): ``key_bytes("k") == b"k"``."""
    if key is None:
        return _PUBLIC_KEY
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        from .payload import PayloadError

        raise PayloadError("a watermark key must be a non-empty string or bytes")
    return bytes(key)


def bound_key(key: str | bytes | None, tag: np.ndarray | torch.Tensor) -> bytes:
    """The keystream key for ``key`` on a photo whose content tag is ``tag`` (``TAG_BITS`` 0/1 values)."""
    bits = np.asarray(tag, dtype=np.uint8).reshape(-1)
    return key_bytes(key) + b"\x00content-tag\x00" + np.packbits(bits).tobytes()


@lru_cache(maxsize=8)
def _projections(key: bytes) -> torch.Tensor:
    """(TAG_BITS, SIDE * SIDE) keyed Gaussian projections, centre-weighted."""
    seed = int.from_bytes(hashlib.sha256(b"photoshield-content-tag\x00" + key).digest()[:8], "little")
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(TAG_BITS, _SIDE * _SIDE, generator=generator, dtype=torch.float64)
    axis = (torch.arange(_SIDE, dtype=torch.float64) + 0.5) / _SIDE - 0.5
    window = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * _CENTRE_SIGMA**2)).reshape(-1)
    return directions * window


def _features(images: torch.Tensor) -> torch.Tensor:
    """(B, SIDE * SIDE) band-pass luma of a SIDE x SIDE copy, zero mean and unit variance per photo."""
    luma = (0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]).float()
    small = resize_to(luma, (_SIDE, _SIDE)).double()
    band = (kornia.filters.gaussian_blur2d(small, (7, 7), (1.0, 1.0), border_type="replicate")
            - kornia.filters.gaussian_blur2d(small, (19, 19), (4.0, 4.0), border_type="replicate")).flatten(1)
    band = band - band.mean(dim=1, keepdim=True)
    return band / band.std(dim=1, keepdim=True).clamp_min(1e-9)


def content_tag(images: torch.Tensor, key: str | bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The content tag of each photo under ``key``: bits (B, TAG_BITS) uint8 and their reliability (B, TAG_BITS).

    ``images`` is (B, 3, H, W) in [0, 1], any size. Reliability is each projection's magnitude (larger:
    less likely to flip under a codec or resize).
    """
    with torch.no_grad():
        values = _features(images.detach().cpu()) @ _projections(key_bytes(key)).T
    return (values > 0).numpy().astype(np.uint8), values.abs().numpy()


def candidates(tag: np.ndarray, reliability: np.ndarray, flips: int = FLIP_BITS) -> list[np.ndarray]:
    """Every flip pattern of the ``flips`` least reliable bits of one ``tag`` (``2**flips`` tags, ``tag`` first)."""
    tag = np.asarray(tag, dtype=np.uint8).reshape(-1)
    weakest = np.argsort(np.asarray(reliability).reshape(-1), kind="stable")[:flips]
    out = []
    for pattern in itertools.product((0, 1), repeat=flips):
        flipped = tag.copy()
        flipped[weakest] ^= np.array(pattern, dtype=np.uint8)
        out.append(flipped)
    return out
