"""Previews of a protection for people: the face before and after, zoomed, and the change made visible.

``face_previews(original, protected, box)`` returns two PIL images: the face crop before | after side by
side at 2x (nearest-neighbour, so single pixels stay visible), and the amplified difference of the same
crop (mid-grey is no change; the largest change in the crop is pushed to black or white).
``write_previews`` writes both as PNG next to a protected photo::

    result = protect("selfie.jpg", preset="light")
    write_previews("selfie.jpg", result.image, "selfie", box=face_box(result.report))
    # -> selfie.preview.png, selfie.difference.png
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..image import to_pil, to_tensor

__all__ = ["Previews", "difference_image", "face_box", "face_previews", "write_previews"]

#: The longest side a zoomed crop panel may have; a larger face is zoomed less than 2x.
MAX_PANEL = 1024
_GAP = 8  # white pixels between the before and after panels


@dataclass(frozen=True)
class Previews:
    """``comparison``: before | after face crop; ``difference``: the amplified change of the crop; ``gain``:
    how much the change was amplified; ``box``: the crop (x0, y0, x1, y1) in pixels of the photo."""

    comparison: Image.Image
    difference: Image.Image
    gain: float
    box: tuple[int, int, int, int]


def face_box(report: Mapping[str, Any], image: int = 0) -> tuple[float, float, float, float] | None:
    """The largest face box (x0, y0, x1, y1) of image ``image`` in a facial ``protect()`` report, or None."""
    boxes = report.get("boxes") or []
    counts = report.get("faces_per_image") or [len(boxes)]
    start = sum(counts[:image])
    mine = boxes[start : start + (counts[image] if image < len(counts) else 0)]
    if not mine:
        return None
    return tuple(max(mine, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))


def _crop_box(height: int, width: int, box: Sequence[float] | None, margin: float) -> tuple[int, int, int, int]:
    """A square crop around ``box`` grown by ``margin`` of its size (the central half of the photo without one)."""
    if box is None:
        side = max(1, min(height, width) // 2)
        cx, cy = width / 2, height / 2
    else:
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = int(min(round(side), height, width))
    left = int(min(max(round(cx - side / 2), 0), width - side))
    top = int(min(max(round(cy - side / 2), 0), height - side))
    return left, top, left + side, top + side


def _zoom(crop: torch.Tensor, zoom: float) -> torch.Tensor:
    size = (max(1, round(crop.shape[-2] * zoom)), max(1, round(crop.shape[-1] * zoom)))
    return F.interpolate(crop, size=size, mode="nearest")


def difference_image(original: Any, changed: Any) -> tuple[Image.Image, float]:
    """(the change ``changed - original`` as a picture, its gain): mid-grey is no change, and the largest change
    is amplified to black or white. Both images (1, 3, H, W) tensors in [0, 1], PIL images or arrays of one size."""
    before = to_tensor(original)[:1].float()
    after = to_tensor(changed)[:1].float().to(before.device)
    if before.shape != after.shape:
        raise ValueError(f"the two photos differ in size: {tuple(before.shape[-2:])} and {tuple(after.shape[-2:])}")
    change = after - before
    largest = float(change.abs().max())
    gain = 0.5 / largest if largest > 0 else 1.0
    return to_pil((0.5 + gain * change).clamp(0, 1)), gain


def face_previews(original: Any, protected: Any, box: Sequence[float] | None = None, zoom: float = 2.0,
                  margin: float = 0.25) -> Previews:
    """Before | after crop around ``box`` (a face box in pixels; None: the middle of the photo) at ``zoom`` x,
    and its difference amplified so the largest change fills the range (mid-grey: unchanged).

    ``original`` and ``protected``: (1, 3, H, W) tensors in [0, 1], PIL images or arrays of one size. A crop
    whose zoomed side would pass ``MAX_PANEL`` pixels is zoomed less.
    """
    before = to_tensor(original)[:1].float()
    after = to_tensor(protected)[:1].float().to(before.device)
    if before.shape != after.shape:
        raise ValueError(f"the original {tuple(before.shape[-2:])} and protected {tuple(after.shape[-2:])} photos differ in size")
    left, top, right, bottom = _crop_box(before.shape[-2], before.shape[-1], box, margin)
    zoom = min(zoom, MAX_PANEL / max(right - left, 1))
    crops = [_zoom(image[..., top:bottom, left:right], zoom) for image in (before, after)]
    gap = torch.ones_like(crops[0][..., :_GAP])
    comparison = to_pil(torch.cat([crops[0], gap, crops[1]], dim=-1))
    difference, gain = difference_image(crops[0], crops[1])
    return Previews(comparison, difference, gain, (left, top, right, bottom))


def write_previews(original: Any, protected: Any, stem: str | os.PathLike, box: Sequence[float] | None = None,
                   zoom: float = 2.0) -> tuple[Path, Path]:
    """Write ``STEM.preview.png`` (before | after face crop) and ``STEM.difference.png`` atomically; their paths.

    ``original`` / ``protected`` as in :func:`face_previews`, or image paths.
    """
    from ..io import read_image, write_image

    images = [read_image(x) if isinstance(x, (str, os.PathLike)) else x for x in (original, protected)]
    previews = face_previews(images[0], images[1], box=box, zoom=zoom)
    stem = Path(stem)
    targets = (stem.with_name(stem.name + ".preview.png"), stem.with_name(stem.name + ".difference.png"))
    for picture, target in zip((previews.comparison, previews.difference), targets):
        write_image(picture, target)
    return targets
