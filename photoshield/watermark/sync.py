"""Re-synchronise a cropped or rotated copy before decoding: an exhaustive search over where it came from.

The mark is laid over the whole photo, so a crop (zoomed back to any size) or a rotation moves every
bit's pattern away from where the decoder looks. ``search_logits`` undoes each candidate geometry on a
``size`` x ``size`` canvas and decodes it:

- crops: the copy is the window of side ``w`` px (of the ``size`` px square the mark lives in; the
  same fraction of height and width, as any aspect-keeping crop) at offset (top, left), for every
  integer ``w`` from ``min_area`` up and every integer offset: the copy is resized to ``w`` x ``w``,
  placed there, and the rest of the canvas is filled by edge replication;
- rotations: every whole degree from -``max_degrees`` to ``max_degrees`` (0 excluded), undone about
  the centre at the copy's own aspect ratio.

That fine grid has ``n_hypotheses`` entries (about 19,000 at the defaults). It is searched coarse to
fine (every ``coarse``-th size and offset, then a local search around the best few), which finds the
best entry of the grid without decoding all of it; the statistics charge for the whole grid (a union
bound), so the false-positive rate stays what ``verify`` promises whatever the search selects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..image import resize_to, working_size

__all__ = ["Geometry", "RealignedCrop", "SearchResult", "n_hypotheses", "realigned_crops", "search_logits"]

MIN_AREA = 0.45  # the smallest crop on the grid: a crop to half the area (side 0.707) sits inside it, not on its edge
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, canvases) -> (B,) higher is better


@dataclass(frozen=True)
class Geometry:
    """One candidate: ``kind`` "none", "crop" (``side``, ``top``, ``left`` in canvas px) or "rotation" (``degrees``)."""

    kind: str
    side: int = 0
    top: int = 0
    left: int = 0
    degrees: int = 0

    def describe(self, size: int) -> str:
        """In words, for a result: e.g. "crop of 100/128 side at (22, 7)"."""
        if self.kind == "crop":
            return f"crop of {self.side}/{size} side at ({self.top}, {self.left})"
        if self.kind == "rotation":
            return f"rotation by {self.degrees} degrees"
        return "as is"


@dataclass(frozen=True)
class SearchResult:
    """The best candidate's logits (1, n_bits), its geometry, the size of the grid it was chosen from, and the
    canvas (1, 3, size, size) the decoder read there (the copy put back where it came from)."""

    logits: torch.Tensor
    geometry: Geometry
    n_hypotheses: int
    canvas: torch.Tensor


def _min_side(size: int, min_area: float) -> int:
    return max(2, math.ceil(size * math.sqrt(min_area)))


def n_hypotheses(size: int = 128, min_area: float = MIN_AREA, max_degrees: int = 20) -> int:
    """How many geometries the fine grid holds (crops of every side and offset, plus rotations)."""
    crops = sum((size - side + 1) ** 2 for side in range(_min_side(size, min_area), size))
    return 1 + crops + 2 * max_degrees


def _crop_canvas(window: torch.Tensor, size: int, geometry: Geometry) -> torch.Tensor:
    """The ``geometry.side`` px ``window`` placed at its offset on the ``size`` px canvas, edges replicated."""
    right, bottom = size - geometry.side - geometry.left, size - geometry.side - geometry.top
    return F.pad(window, (geometry.left, right, geometry.top, bottom), mode="replicate")


def _rotation_canvas(image: torch.Tensor, degrees: int | torch.Tensor) -> torch.Tensor:
    """``image`` (B, 3, H, W) turned back by ``degrees`` (one angle, or one per image), edges replicated."""
    from kornia.geometry.transform import rotate

    angle = -torch.as_tensor(degrees, dtype=image.dtype, device=image.device).expand(image.shape[0])
    return rotate(image, angle.contiguous(), padding_mode="border")


def search_logits(decoder: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, score: Score,
                  size: int = 128, min_area: float = MIN_AREA, max_degrees: int = 20, coarse: int = 3,
                  keep: int = 4, batch: int = 256) -> SearchResult:
    """The logits of the geometry (on the fine grid) whose decode ``score`` rates highest, for one image.

    ``decoder``: images -> (B, n_bits) logits; ``score``: (logits (B, n_bits), canvases (B, 3, size, size))
    -> (B,) higher is better (e.g. how many bits match the codeword expected for that canvas). ``image`` is
    (1, 3, H, W).
    """
    if image.shape[0] != 1:
        raise ValueError("search_logits takes one image at a time")
    square = resize_to(image, (size, size))
    # rotations are undone at the copy's own aspect ratio (a rotation of a non-square photo is not a rotation
    # of its square-resized copy), on a copy of at most 2 x size px, then resized to the square
    upright = resize_to(image, working_size(*image.shape[-2:], 2 * size))
    low = _min_side(size, min_area)
    resized: dict[int, torch.Tensor] = {}

    def canvas(geometry: Geometry) -> torch.Tensor:
        if geometry.kind == "rotation":
            return resize_to(_rotation_canvas(upright, geometry.degrees), (size, size))
        if geometry.kind == "crop":
            if geometry.side not in resized:
                resized[geometry.side] = resize_to(square, (geometry.side, geometry.side))
            return _crop_canvas(resized[geometry.side], size, geometry)
        return square

    seen: dict[Geometry, tuple[float, torch.Tensor]] = {}

    def evaluate(candidates: list[Geometry]) -> None:
        todo = [g for g in dict.fromkeys(candidates) if g not in seen]
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            canvases = torch.cat([canvas(g) for g in chunk])
            logits = decoder(canvases)
            for geometry, row, value in zip(chunk, logits, score(logits, canvases).tolist()):
                seen[geometry] = (value, row[None])

    def valid(geometry: Geometry) -> bool:
        if geometry.kind != "crop":
            return True
        limit = size - geometry.side
        return low <= geometry.side < size and 0 <= geometry.top <= limit and 0 <= geometry.left <= limit

    coarse_grid = [Geometry("none")]
    coarse_grid += [Geometry("rotation", degrees=d) for d in range(-max_degrees, max_degrees + 1) if d]
    for side in range(low, size, coarse):
        offsets = list(range(0, size - side + 1, coarse))
        if offsets[-1] != size - side:
            offsets.append(size - side)
        coarse_grid += [Geometry("crop", side, top, left) for top in offsets for left in offsets]
    evaluate(coarse_grid)

    # local search around the best few crops: move by one px in side and offset until nothing improves
    frontier = sorted((g for g in seen if g.kind == "crop"), key=lambda g: seen[g][0], reverse=True)[:keep]
    for _ in range(4 * coarse):
        neighbours = [
            Geometry("crop", g.side + ds, g.top + dt, g.left + dl)
            for g in frontier for ds in (-1, 0, 1) for dt in (-1, 0, 1) for dl in (-1, 0, 1)
        ]
        neighbours = [g for g in neighbours if valid(g)]
        before = max(seen[g][0] for g in frontier)
        evaluate(neighbours)
        frontier = sorted(set(neighbours) | set(frontier), key=lambda g: seen[g][0], reverse=True)[:keep]
        if max(seen[g][0] for g in frontier) <= before:
            break
    best = max(seen, key=lambda g: seen[g][0])
    return SearchResult(seen[best][1], best, n_hypotheses(size, min_area, max_degrees), canvas(best))


class RealignedCrop:
    """A differentiable stand-in for "cropped, then re-synchronised by the search": a random window (``area``
    in ``areas``, any position) of the image, resized to its side on the ``size`` px canvas and placed where
    it came from, the rest filled by edge replication. Passed to ``WatermarkModel.refine(through=...)`` it
    teaches the residual to read from part of the photo, which is what a searched crop gives the decoder."""

    def __init__(self, areas: tuple[float, float] = (0.5, 0.9), size: int = 128, seed: int = 0):
        self.areas, self.size = areas, size
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        low, high = self.areas
        draw = torch.rand(3, generator=self.generator).tolist()
        side = max(2, min(self.size - 1, round(self.size * math.sqrt(low + (high - low) * draw[0]))))
        top, left = round(draw[1] * (self.size - side)), round(draw[2] * (self.size - side))
        height, width = images.shape[-2:]
        rows = slice(round(top / self.size * height), round((top + side) / self.size * height))
        columns = slice(round(left / self.size * width), round((left + side) / self.size * width))
        window = resize_to(images[..., rows, columns], (side, side))
        return _crop_canvas(window, self.size, Geometry("crop", side, top, left))


def realigned_crops(count: int = 4, size: int = 128, seed: int = 0) -> list[RealignedCrop]:
    """``count`` independent ``RealignedCrop`` views for ``refine(through=...)``: each refinement step then
    asks the mark to read from several parts of the photo at once, not from one (what ``embed`` with
    ``refine_for_crops`` uses)."""
    return [RealignedCrop(size=size, seed=seed * 1000 + index) for index in range(count)]
