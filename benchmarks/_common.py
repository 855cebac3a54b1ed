"""Shared bits of the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent


def face_photo_path() -> Path:
    """A real face photo: the first bundled face sample, or the test fixture in a bare checkout."""
    try:
        from photoshield import data

        return data.sample_path(data.samples("faces")[0])
    except Exception:  # samples not bundled in this checkout
        return REPO / "tests" / "fixtures" / "faces" / "obama.jpg"


def face_photo(size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """That photo as a (1, 3, size, size) tensor."""
    from photoshield.io import read_image

    image = read_image(face_photo_path())
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).to(device)
