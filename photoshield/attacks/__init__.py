"""Attack simulations: what a photo goes through after it is shared.

    from photoshield import attacks
    attacks.names()                          # every registered attack
    jpeg = attacks.get("jpeg", quality=50)   # or attacks.get("jpeg", strength=0.5)
    out = jpeg(images)                       # (B, 3, H, W) float in [0, 1], same shape
    for attack in attacks.grid("standard"):  # preset lists for evaluations
        print(attack.describe())             # "jpeg:quality=90", "crop:area=0.75+jpeg:quality=75"

Each attack has one ``strength`` knob s in [0, 1] mapped onto a documented range
(``type(attack).strength_range``) and explicit parameters that override it.
"""

from __future__ import annotations

from . import codecs, deepfake, distortions, purify, regeneration  # noqa: F401  (register the built-in attacks)
from .base import Attack, AttackError, Compose, attack_class, get, names, parse, register
from .codecs import AVIF, JPEG, JPEGXL, DiffJPEG, WebP
from .deepfake import FaceInpaint, FaceSwap, InstructEdit
from .distortions import (
    Blur,
    Brightness,
    Contrast,
    Crop,
    HorizontalFlip,
    Hue,
    Identity,
    MedianBlur,
    Noise,
    Perspective,
    Resize,
    Rotation,
    Saturation,
    Sharpness,
)
from .purify import Bilateral, DiffPure, GrIDPure, Impress, NoiseJPEG, NoisyUpscale, NonLocalMeans, TotalVariation
from .regeneration import Rinse, SDEdit, VAERoundTrip
from .presets import WAVES_STRENGTHS, grid, grid_names, register_grid

__all__ = [
    "AVIF",
    "Attack",
    "AttackError",
    "Bilateral",
    "Blur",
    "Brightness",
    "Compose",
    "Contrast",
    "Crop",
    "FaceInpaint",
    "FaceSwap",
    "DiffJPEG",
    "DiffPure",
    "GrIDPure",
    "HorizontalFlip",
    "Hue",
    "Identity",
    "Impress",
    "InstructEdit",
    "JPEG",
    "JPEGXL",
    "MedianBlur",
    "Noise",
    "NoiseJPEG",
    "NoisyUpscale",
    "NonLocalMeans",
    "Perspective",
    "Resize",
    "Rinse",
    "Rotation",
    "SDEdit",
    "Saturation",
    "Sharpness",
    "TotalVariation",
    "VAERoundTrip",
    "WAVES_STRENGTHS",
    "WebP",
    "attack_class",
    "get",
    "grid",
    "grid_names",
    "names",
    "parse",
    "register",
    "register_grid",
]
