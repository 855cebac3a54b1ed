"""Facial-feature protection (FaceShield's identity term): push face identity embeddings away.

Every face is detected on the clean photo, its landmarks fixed, and the aligned chip
(differentiable warp) is fed to an ensemble of identity models; the loss is the mean
cosine similarity between the protected and clean embeddings, which the engine
drives down. The perturbation is confined to a dilated region around each face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from photoshield.models import face as face_models
from photoshield.models import default_device, load
from photoshield.protect.objective import Objective

DLIB_SAME_PERSON_DISTANCE = 0.6


@dataclass
class IdentityModel:
    """One identity embedder of the ensemble and how to cut its input chip from a photo."""

    name: str
    embed: Callable[[torch.Tensor], torch.Tensor]
    chip_size: int = 150
    padding: float = 0.25
    weight: float = 1.0
    align: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # default: dlib chip


@dataclass
class Faces:
    """Faces found in a batch: landmarks (N, K, 2) in pixels and the image each belongs to."""

    landmarks: torch.Tensor
    image_index: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return len(self.image_index)


def default_ensemble(device: torch.device | str | None = None) -> list[IdentityModel]:
    """The bundled identity models: the dlib ResNet port (face-api weights)."""
    embedder = face_models.cached_model("face-embedder", torch.device(device or default_device()))
    return [IdentityModel("dlib-resnet", embedder, chip_size=150, padding=0.25)]


def arcface_model(path: str | Path, device: torch.device | str | None = None, weight: float = 1.0) -> IdentityModel:
    """An insightface IResNet checkpoint as an ensemble member (112x112 ArcFace chips)."""
    from photoshield.models.arcface import align_arcface

    backbone = load("face-arcface", device=device, path=path)
    return IdentityModel(f"arcface:{Path(path).stem}", backbone, chip_size=112, weight=weight, align=align_arcface)


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


class FacialAttack:
    """Build the identity objective for a batch: mean cosine similarity to the clean embeddings."""

    def __init__(
        self,
        ensemble: Sequence[IdentityModel] | None = None,
        device: torch.device | str | None = None,
        region: str = "face",
        dilation: float = 1.6,
        min_score: float = 0.8,
        arcface: str | Path | Sequence[str | Path] = (),
    ):
        if region not in ("face", "image"):
            raise ValueError(f"region must be 'face' or 'image', got {region!r}")
        self.device = device
        self.ensemble = list(ensemble) if ensemble is not None else None
        self.region, self.dilation, self.min_score = region, dilation, min_score
        self.arcface = [arcface] if isinstance(arcface, (str, Path)) else list(arcface)

    def _ensemble(self, images: torch.Tensor) -> list[IdentityModel]:
        if self.ensemble is None:
            self.ensemble = default_ensemble(images.device) + [arcface_model(p, images.device) for p in self.arcface]
        return self.ensemble

    def embeddings(self, images: torch.Tensor, faces: Faces) -> list[torch.Tensor]:
        """Embeddings (N, D) of every face under each model of the ensemble (differentiable)."""
        result = []
        for model in self._ensemble(images):
            if model.align is not None:
                chips = model.align(images, faces.landmarks, faces.image_index)
            else:
                chips = face_models.align_faces(images, faces.landmarks, model.chip_size, model.padding, faces.image_index)
            result.append(model.embed(chips))
        return result

    def objective(self, images: torch.Tensor, faces: Faces | None = None) -> Objective:
        """The objective for ``images``; images without a face are marked in ``skip``."""
        faces = faces if faces is not None else find_faces(images, self.min_score)
        batch = images.shape[0]
        counts = torch.bincount(faces.image_index, minlength=batch).to(images.device)
        skip = counts == 0
        with torch.no_grad():
            clean = [e.detach() for e in self.embeddings(images, faces)]
        weights = [m.weight for m in self._ensemble(images)]
        owners = faces.image_index.to(images.device)

        def per_image(values: torch.Tensor) -> torch.Tensor:
            total = images.new_zeros(batch).index_add(0, owners, values)
            return total / counts.clamp_min(1)

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            if len(faces) == 0:
                return (x_adv * 0).flatten(1).sum(1)
            similarity = sum(w * F.cosine_similarity(e, c, dim=-1) for w, e, c in zip(weights, self.embeddings(x_adv, faces), clean))
            return per_image(similarity / sum(weights))

        def measure(x: torch.Tensor) -> dict[str, Any]:
            if len(faces) == 0:
                return {"faces": 0}
            with torch.no_grad():
                embedded = self.embeddings(x, faces)
            figures: dict[str, Any] = {"faces": len(faces)}
            for model, e, c in zip(self._ensemble(images), embedded, clean):
                figures[f"{model.name}_cosine"] = F.cosine_similarity(e, c, dim=-1).tolist()
                if model.name == "dlib-resnet":
                    distance = (e - c).norm(dim=-1)
                    figures["dlib_distance"] = distance.tolist()
                    figures["dlib_faces_past_threshold"] = int((distance > DLIB_SAME_PERSON_DISTANCE).sum())
            return figures

        mask = face_region_mask(images, faces, self.dilation) if self.region == "face" else None
        info = {"faces": len(faces), "faces_per_image": counts.tolist(), "boxes": [[round(v, 1) for v in box] for box in faces.boxes.tolist()]}
        return Objective(loss_fn=loss_fn, mask=mask, measure=measure, skip=skip, info=info)

