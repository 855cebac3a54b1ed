"""Prompts for a promptable segmenter, and how well it still cuts objects out of a changed (protected) photo.

Prompts are drawn the way the SAM attack benchmarks draw them: masks are first
predicted on the *clean* photo (here from a multi-scale grid of box prompts, kept by
the decoder's own quality score and de-duplicated), then every kept mask gives
``boxes_per_mask`` box prompts (its tight bounding box plus jittered copies) and, on
models whose point prompts work, ``points_per_mask`` single-point prompts inside it.
Each prompt is run on the clean and on the protected photo and the two predicted masks
are compared: mean IoU (``miou``) and the attack success rate ``asr50``, the share of
prompts whose IoU falls below 0.5.

LiteMedSAM was trained with boxes only (a lone point gives an empty mask), so on it only
box prompts are drawn; the transformers ``SamModel`` family gets both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...image import check_image
from .segmenter import LiteMedSAM, Segmenter, SegmenterFeatures

__all__ = ["Prompts", "draw_prompts", "mask_iou", "predict_prompts", "propose_masks", "segmentation_agreement", "supports_points"]


@dataclass
class Prompts:
    """Prompts for one photo, in its pixel coordinates, and the clean masks they were drawn from."""

    masks: torch.Tensor  # (M, H, W) bool, predicted on the clean photo
    boxes: torch.Tensor  # (P, 4) x0, y0, x1, y1
    points: torch.Tensor | None  # (Q, 1, 2) x, y: one single-point prompt per row; None where points do not work
    box_owner: torch.Tensor  # (P,) index of the mask each box came from
    point_owner: torch.Tensor | None  # (Q,)

    def __len__(self) -> int:
        return len(self.boxes) + (0 if self.points is None else len(self.points))


def supports_points(segmenter: Segmenter) -> bool:
    """Whether point prompts give usable masks on this segmenter (not on box-trained LiteMedSAM)."""
    return not isinstance(segmenter, LiteMedSAM)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks (P, H, W) pairwise along the first axis; two empty masks agree (IoU 1)."""
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    inter = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _grid_boxes(height: int, width: int, layout: tuple[tuple[float, int], ...] = ((0.35, 3), (0.55, 2), (0.8, 1))) -> torch.Tensor:
    """Candidate boxes: for each (scale, per_side), a per_side x per_side grid of boxes of that fraction of the image."""
    boxes = []
    for scale, per_side in layout:
        bw, bh = scale * width, scale * height
        rows = torch.linspace(bh / 2, height - bh / 2, per_side).tolist() if per_side > 1 else [height / 2]
        cols = torch.linspace(bw / 2, width - bw / 2, per_side).tolist() if per_side > 1 else [width / 2]
        for cy in rows:
            for cx in cols:
                boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return torch.tensor(boxes)


@torch.no_grad()
def propose_masks(
    segmenter: Segmenter,
    image: torch.Tensor,
    max_masks: int = 6,
    min_area: float = 0.01,
    max_area: float = 0.85,
    nms_iou: float = 0.7,
    features: SegmenterFeatures | None = None,
) -> torch.Tensor:
    """Masks (M, H, W) the segmenter predicts on a clean (1, 3, H, W) photo, best decoder score first.

    A grid of box prompts at three scales stands in for SAM's automatic mask generator;
    masks outside [min_area, max_area] of the photo are dropped and near-duplicates
    (mask IoU > nms_iou) removed.
    """
    check_image(image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"propose_masks takes one photo (1, 3, H, W), got batch {image.shape[0]}")
    height, width = image.shape[-2:]
    features = features if features is not None else segmenter.encode(image)
    boxes = _grid_boxes(height, width).to(image.device)
    logits, scores = segmenter.predict_from_features(features, boxes=boxes, return_scores=True)
    masks, scores = logits[:, 0] > 0, scores[:, 0]
    area = masks.flatten(1).float().mean(1)
    keep = (area >= min_area) & (area <= max_area)
    masks, scores = masks[keep], scores[keep]
    chosen: list[torch.Tensor] = []
    for index in scores.argsort(descending=True).tolist():
        candidate = masks[index]
        if all(mask_iou(candidate[None], other[None]).item() <= nms_iou for other in chosen):
            chosen.append(candidate)
        if len(chosen) == max_masks:
            break
    if not chosen:
        return torch.zeros(0, height, width, dtype=torch.bool, device=image.device)
    return torch.stack(chosen)


def _bounding_box(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


@torch.no_grad()
def draw_prompts(
    segmenter: Segmenter,
    image: torch.Tensor,
    boxes_per_mask: int = 3,
    points_per_mask: int = 5,
    jitter: float = 0.1,
    max_masks: int = 6,
    seed: int = 0,
    features: SegmenterFeatures | None = None,
) -> Prompts:
    """Benchmark prompts for one photo: tight and jittered boxes (and points where they work) per clean mask."""
    masks = propose_masks(segmenter, image, max_masks=max_masks, features=features)
    height, width = image.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    limits = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes, box_owner, points, point_owner = [], [], [], []
    use_points = supports_points(segmenter) and points_per_mask > 0
    for number, mask in enumerate(masks.cpu()):
        tight = _bounding_box(mask)
        size = (tight[2:] - tight[:2]).repeat(2)
        for copy in range(boxes_per_mask):
            box = tight if copy == 0 else tight + (torch.rand(4, generator=generator) * 2 - 1) * jitter * size
            box = torch.minimum(box.clamp_min(0), limits)
            boxes.append(box)
            box_owner.append(number)
        if use_points:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            picks = torch.randint(0, len(xs), (points_per_mask,), generator=generator)
            for pick in picks.tolist():
                points.append(torch.tensor([[xs[pick] + 0.5, ys[pick] + 0.5]]))
                point_owner.append(number)
    device = image.device
    return Prompts(
        masks=masks,
        boxes=(torch.stack(boxes) if boxes else torch.zeros(0, 4)).to(device),
        points=torch.stack(points).to(device) if points else None,
        box_owner=torch.tensor(box_owner, dtype=torch.long),
        point_owner=torch.tensor(point_owner, dtype=torch.long) if points else None,
    )


@torch.no_grad()
def predict_prompts(segmenter: Segmenter, image: torch.Tensor, prompts: Prompts, chunk: int = 16) -> dict[str, torch.Tensor]:
    """Masks predicted on one photo for every prompt: {"box": (P, H, W) bool, "point": (Q, H, W) bool}."""
    features = segmenter.encode(image)
    out: dict[str, torch.Tensor] = {}
    if len(prompts.boxes):
        out["box"] = torch.cat(
            [segmenter.predict_from_features(features, boxes=prompts.boxes[i : i + chunk])[:, 0] > 0 for i in range(0, len(prompts.boxes), chunk)]
        )
    if prompts.points is not None and len(prompts.points):
        parts = []
        for i in range(0, len(prompts.points), chunk):
            pts = prompts.points[i : i + chunk]
            parts.append(segmenter.predict_from_features(features, points=pts, point_labels=torch.ones(pts.shape[:2]))[:, 0] > 0)
        out["point"] = torch.cat(parts)
    return out


def segmentation_agreement(
    segmenter: Segmenter,
    clean: torch.Tensor,
    protected: torch.Tensor,
    prompts: Prompts | None = None,
    reference: dict[str, torch.Tensor] | None = None,
    **draw: Any,
) -> dict[str, float]:
    """mIoU and ASR@50 between the masks predicted on ``protected`` and on ``clean`` for the same prompts.

    Returns ``miou``/``asr50`` over all prompts and ``box_*``/``point_*`` per kind, plus
    ``prompts`` and ``masks`` counts. ``prompts`` and the clean ``reference`` masks can be
    passed in to reuse them across several protected copies.
    """
    check_image(clean, "clean")
    check_image(protected, "protected")
    if clean.shape != protected.shape or clean.shape[0] != 1:
        raise ValueError(f"clean and protected must be one photo each of the same size, got {tuple(clean.shape)} and {tuple(protected.shape)}")
    prompts = prompts if prompts is not None else draw_prompts(segmenter, clean, **draw)
    reference = reference if reference is not None else predict_prompts(segmenter, clean, prompts)
    result = predict_prompts(segmenter, protected, prompts)
    figures: dict[str, float] = {"prompts": float(len(prompts)), "masks": float(len(prompts.masks))}
    everything = []
    for kind in ("box", "point"):
        if kind in reference:
            ious = mask_iou(result[kind], reference[kind])
            everything.append(ious)
            figures[f"{kind}_miou"] = float(ious.mean())
            figures[f"{kind}_asr50"] = float((ious < 0.5).float().mean())
    if everything:
        ious = torch.cat(everything)
        figures["miou"] = float(ious.mean())
        figures["asr50"] = float((ious < 0.5).float().mean())
    else:
        figures["miou"] = figures["asr50"] = float("nan")
    return figures
