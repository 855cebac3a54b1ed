"""Faces found in a photo, shared by the protection methods: detection, fixed landmarks, region masks.

``find_faces`` detects every face with the bundled detector and fixes its 68 landmarks on the clean pixels;
the masks say where a method may change pixels (``face_region_mask``) or where face-region quality is measured
(``face_boxes_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import face as face_models

__all__ = ["Faces", "face_boxes_mask", "face_region_mask", "find_faces"]


@dataclass
class Faces:
    """Faces found in a batch: landmarks (N, K, 2) and boxes (N, 4) in pixels, and the image each belongs to."""

    landmarks: torch.Tensor
    image_index: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return len(self.image_index)

    def jittered(self, amount: float, generator: torch.Generator) -> "Faces":
        """The same faces moved by a random similarity each: shift and scale up to ``amount`` of the face size,
        rotation up to ``amount`` x 60 degrees (alignment EOT: judges detect and align the face their own way)."""
        if amount <= 0 or len(self) == 0:
            return self
        count = len(self)
        draw = (torch.rand(count, 4, generator=generator) * 2 - 1).to(self.landmarks)
        centre = (self.boxes[:, :2] + self.boxes[:, 2:]) / 2
        size = (self.boxes[:, 2:] - self.boxes[:, :2]).amax(1, keepdim=True)
        angle = draw[:, 0] * amount * torch.pi / 3
        scale = 1 + draw[:, 1] * amount
        shift = draw[:, 2:] * amount * size
        rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)

        def move(points: torch.Tensor) -> torch.Tensor:  # (N, K, 2)
            offset = points - centre[:, None]
            return centre[:, None] + scale[:, None, None] * offset @ rotation.transpose(1, 2) + shift[:, None]

        corners = move(self.boxes.view(count, 2, 2))
        half = (corners[:, 1] - corners[:, 0]).abs() / 2
        middle = corners.mean(1)
        return Faces(move(self.landmarks), self.image_index, torch.cat([middle - half, middle + half], 1), self.scores)


def find_faces(images: torch.Tensor, min_score: float = 0.8) -> Faces:
    """Detect every face with the bundled detector and fix its 68 landmarks on the clean pixels."""
    with torch.no_grad():
        detections = face_models.detect_faces(images)
        boxes, scores, owners = [], [], []
        for number, found in enumerate(detections):
            keep = found["scores"] >= min_score
            boxes.append(found["boxes"][keep].to(images.device, torch.float32))
            scores.append(found["scores"][keep].to(images.device, torch.float32))
            owners.append(torch.full((int(keep.sum()),), number, dtype=torch.long))
        boxes_t = torch.cat(boxes) if boxes else images.new_zeros(0, 4)
        owners_t = torch.cat(owners) if owners else torch.zeros(0, dtype=torch.long)
        if len(owners_t):
            landmarks = face_models.landmarks68(images, boxes_t, owners_t)
        else:
            landmarks = images.new_zeros(0, 68, 2)
    return Faces(landmarks, owners_t, boxes_t, torch.cat(scores) if scores else images.new_zeros(0))


def face_region_mask(images: torch.Tensor, faces: Faces, dilation: float = 1.6, feather: float = 0.1) -> torch.Tensor:
    """(B, 1, H, W) mask: 1 inside an ellipse ``dilation`` times the landmark extent of each face, soft edge."""
    batch, _, height, width = images.shape
    mask = images.new_zeros(batch, 1, height, width)
    ys = torch.arange(height, device=images.device, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, device=images.device, dtype=torch.float32).view(1, -1)
    for points, owner in zip(faces.landmarks, faces.image_index.tolist()):
        low, high = points.min(0).values, points.max(0).values
        centre = (low + high) / 2
        # The landmarks stop at the brows: shift the centre up to take in the forehead.
        radius = (high - low).clamp_min(4.0) * dilation / 2
        centre = centre - torch.stack([torch.zeros(()), radius[1] * 0.15]).to(centre)
        distance = (((xs - centre[0]) / radius[0]) ** 2 + ((ys - centre[1]) / radius[1]) ** 2).sqrt()
        soft = ((1 + feather - distance) / feather).clamp(0, 1)
        mask[owner, 0] = torch.maximum(mask[owner, 0], soft)
    return mask


def face_boxes_mask(images: torch.Tensor, faces: Faces) -> torch.Tensor:
    """(B, 1, H, W) 0/1 mask of the detected face boxes: where face-region PSNR and SSIM are measured."""
    mask = images.new_zeros(images.shape[0], 1, *images.shape[-2:])
    height, width = images.shape[-2:]
    for box, owner in zip(faces.boxes.tolist(), faces.image_index.tolist()):
        x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
        x1, y1 = min(int(round(box[2])), width), min(int(round(box[3])), height)
        mask[owner, 0, y0:y1, x0:x1] = 1
    return mask
