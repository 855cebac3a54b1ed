"""Facial-feature protection: push face identity embeddings of an ensemble of real networks away.

Every face is detected on the clean photo and its landmarks fixed; each identity model of the
ensemble cuts its own input from the photo the way it was trained (dlib's aligned chip, ``human``'s
square box crop, an ArcFace chip), differentiably, and embeds it. The loss is balanced across models:
each model's cosine similarity to the clean embedding is measured against that model's own
same-person threshold, and a model already pushed ``margin`` past it stops pulling, so one easy model
does not dominate. The cut is jittered a little every step (alignment EOT), since the model that will
judge the photo later detects and aligns the face its own way. The perturbation is confined to a
dilated region around each face.

SFace (and the real dlib pipeline) never enter an objective: they are the independent judges.

    from photoshield.protect import protect
    result = protect("selfie.jpg", "facial")                 # default ensemble, see DEFAULT_ENSEMBLE
    result = protect("selfie.jpg", "facial", exclude=["faceres"])   # leave-one-out
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from photoshield.errors import PhotoshieldError
from photoshield.models import default_device, load
from photoshield.models import face as face_models
from photoshield.protect.objective import Objective

DLIB_SAME_PERSON_DISTANCE = 0.6

#: Cosine similarity at or above which each model calls two faces the same person: the lowest
#: threshold that passes at most 1 % of different-person pairs on a labelled corpus of 30 identities
#: (``python tools/fetch_face_photos.py && python benchmarks/calibrate_face_thresholds.py``;
#: ``benchmarks/results/face_thresholds.json`` has TPR and FPR at each). dlib-resnet's is the cosine
#: that matches dlib's distance 0.6 on those faces (same person 0.95-0.97, different at most 0.90).
SAME_PERSON_COSINE: dict[str, float] = {
    "dlib-resnet": 0.93,
    "faceres": 0.534,
    "faceres-deep": 0.678,
    "mobileface": 0.709,
    "mobilefacenet": 0.99996,
}

#: The identity models a protection attacks by default: the shipped ones that tell people apart.
#: ``mobilefacenet`` as shipped gives every pair of faces a cosine above 0.999, and ``mobileface``
#: recognises none of the calibration corpus's same-person photo pairs at 1 % FPR.
DEFAULT_ENSEMBLE: tuple[str, ...] = ("dlib-resnet", "faceres", "faceres-deep")

#: Black-box judges: never part of an objective.
JUDGES_ONLY = frozenset({"sface", "face-judge-sface", "dlib"})


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


@dataclass
class IdentityModel:
    """One identity embedder of the ensemble: how it cuts its input from a photo, and its threshold.

    ``cut(images, faces) -> (N, 3, S, S)`` and ``embed(chips) -> (N, D)`` are differentiable;
    ``threshold`` is the cosine at or above which the model calls two faces the same person.
    """

    name: str
    embed: Callable[[torch.Tensor], torch.Tensor]
    cut: Callable[[torch.Tensor, Faces], torch.Tensor]
    threshold: float
    weight: float = 1.0
    feature_layer: torch.nn.Module | None = None  # a mid-level block whose output the feature loss compares


def _dlib_model(device: torch.device) -> IdentityModel:
    embedder = face_models.cached_model("face-embedder", device)

    def cut(images: torch.Tensor, faces: Faces) -> torch.Tensor:
        return face_models.align_faces(images, faces.landmarks, 150, 0.25, faces.image_index)

    return IdentityModel("dlib-resnet", embedder, cut, SAME_PERSON_COSINE["dlib-resnet"], feature_layer=embedder.conv128_2)


@lru_cache(maxsize=None)
def _description(name: str, device: str) -> torch.nn.Module:
    from photoshield.models.face_description import load_description

    return load_description(f"face-{name}", device=device)


def _description_model(name: str, device: torch.device) -> IdentityModel:
    from photoshield.models.face_description import crop_faces

    model = _description(name, str(device))

    def cut(images: torch.Tensor, faces: Faces) -> torch.Tensor:
        return crop_faces(images, faces.boxes, model.input_size, image_index=faces.image_index)

    layer = model.blocks[6] if hasattr(model, "blocks") else None
    return IdentityModel(name, model, cut, SAME_PERSON_COSINE[name], feature_layer=layer)


_FACTORIES: dict[str, Callable[[torch.device], IdentityModel]] = {
    "dlib-resnet": _dlib_model,
    **{name: (lambda device, name=name: _description_model(name, device))
       for name in ("faceres", "faceres-deep", "mobileface", "mobilefacenet")},
}


def identity_models() -> list[str]:
    """Names of the shipped identity models an ensemble can use (``DEFAULT_ENSEMBLE`` is the default)."""
    return sorted(_FACTORIES)


def identity_model(name: str, device: torch.device | str | None = None) -> IdentityModel:
    """The shipped identity model ``name`` (see :func:`identity_models`) as an ensemble member."""
    if name in JUDGES_ONLY:
        raise PhotoshieldError(f"{name!r} is an independent judge and never part of a protection objective")
    if name not in _FACTORIES:
        raise PhotoshieldError(f"unknown identity model {name!r}; choose from {', '.join(identity_models())}")
    return _FACTORIES[name](torch.device(device or default_device()))


def default_ensemble(device: torch.device | str | None = None) -> list[IdentityModel]:
    """The shipped identity models of ``DEFAULT_ENSEMBLE``."""
    return [identity_model(name, device) for name in DEFAULT_ENSEMBLE]


def arcface_model(path: str | Path, device: torch.device | str | None = None, weight: float = 1.0,
                  threshold: float = 0.3) -> IdentityModel:
    """An insightface IResNet checkpoint as an ensemble member (112x112 ArcFace chips; same person at cosine >= 0.3)."""
    from photoshield.models.arcface import align_arcface

    backbone = load("face-arcface", device=device, path=path)

    def cut(images: torch.Tensor, faces: Faces) -> torch.Tensor:
        return align_arcface(images, faces.landmarks, faces.image_index)

    return IdentityModel(f"arcface:{Path(path).stem}", backbone, cut, threshold, weight)


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


class FacialAttack:
    """Build the identity objective for a batch over an ensemble of identity models.

    ``models``: shipped model names (default ``DEFAULT_ENSEMBLE``); ``exclude``: names to leave out
    (leave-one-out evaluation); ``arcface``: insightface checkpoints to add; ``ensemble``: ready
    :class:`IdentityModel` objects instead of all of these. ``margin``: how far past its own threshold
    (in units of 1 - threshold) a model is pushed before it stops pulling; ``balance=False`` minimises
    the plain mean cosine instead. ``jitter``: alignment EOT, as a fraction of the face size.
    ``feature_weight``: weight of the mid-level feature term (cosine of a middle block's activations),
    which moves what different networks share. ``judges``: independent judges (never attacked) whose
    verdict on the protected photo goes into the report (``sface``, ``dlib``; ``()`` for none).
    """

    def __init__(
        self,
        ensemble: Sequence[IdentityModel] | None = None,
        device: torch.device | str | None = None,
        region: str = "face",
        dilation: float = 1.6,
        min_score: float = 0.8,
        arcface: str | Path | Sequence[str | Path] = (),
        models: Sequence[str] = DEFAULT_ENSEMBLE,
        exclude: Sequence[str] = (),
        margin: float = 3.0,
        balance: bool = True,
        jitter: float = 0.03,
        feature_weight: float = 5.0,
        judges: Sequence[str] = ("sface",),
        seed: int = 0,
    ):
        if region not in ("face", "image"):
            raise ValueError(f"region must be 'face' or 'image', got {region!r}")
        models, exclude = _names(models), _names(exclude)
        for name in (*models, *exclude):
            if name in JUDGES_ONLY:
                raise PhotoshieldError(f"{name!r} is an independent judge and never part of a protection objective")
            if name not in _FACTORIES:
                raise PhotoshieldError(f"unknown identity model {name!r}; choose from {', '.join(identity_models())}")
        self.device = device
        self.ensemble = list(ensemble) if ensemble is not None else None
        self.models = [name for name in models if name not in exclude]
        self.region, self.dilation, self.min_score = region, dilation, min_score
        self.arcface = [arcface] if isinstance(arcface, (str, Path)) else list(arcface)
        self.margin, self.balance, self.jitter = float(margin), bool(balance), float(jitter)
        self.feature_weight = float(feature_weight)
        self.judges = _names(judges)
        self.generator = torch.Generator().manual_seed(seed)
        if ensemble is None and not self.models and not self.arcface:
            raise PhotoshieldError("the facial ensemble is empty: keep at least one identity model")

    def _ensemble(self, images: torch.Tensor) -> list[IdentityModel]:
        if self.ensemble is None:
            self.ensemble = [identity_model(name, images.device) for name in self.models]
            self.ensemble += [arcface_model(p, images.device) for p in self.arcface]
        return self.ensemble

    def embeddings(self, images: torch.Tensor, faces: Faces) -> list[torch.Tensor]:
        """Embeddings (N, D) of every face under each model of the ensemble (differentiable)."""
        return [model.embed(model.cut(images, faces)) for model in self._ensemble(images)]

    def _embed_with_features(self, model: IdentityModel, images: torch.Tensor, faces: Faces) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embeddings (N, D), the feature layer's output flattened (N, F) or None)."""
        if model.feature_layer is None or self.feature_weight <= 0:
            return model.embed(model.cut(images, faces)), None
        captured: list[torch.Tensor] = []
        handle = model.feature_layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            embedded = model.embed(model.cut(images, faces))
        finally:
            handle.remove()
        return embedded, captured[-1].flatten(1)

    def objective(self, images: torch.Tensor, faces: Faces | None = None) -> Objective:
        """The objective for ``images``; images without a face are marked in ``skip``."""
        faces = faces if faces is not None else find_faces(images, self.min_score)
        batch = images.shape[0]
        counts = torch.bincount(faces.image_index, minlength=batch).to(images.device)
        skip = counts == 0
        ensemble = self._ensemble(images)
        with torch.no_grad():
            clean_pairs = [self._embed_with_features(model, images, faces) for model in ensemble]
        clean = [e for e, _ in clean_pairs]
        clean_features = [f for _, f in clean_pairs]
        weights = [m.weight for m in ensemble]
        owners = faces.image_index.to(images.device)

        def per_image(values: torch.Tensor) -> torch.Tensor:
            total = images.new_zeros(batch).index_add(0, owners, values)
            return total / counts.clamp_min(1)

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            if len(faces) == 0:
                return (x_adv * 0).flatten(1).sum(1)
            seen = faces.jittered(self.jitter, self.generator) if torch.is_grad_enabled() else faces
            total = 0
            for model, weight, reference, reference_features in zip(ensemble, weights, clean, clean_features):
                embedded, features = self._embed_with_features(model, x_adv, seen)
                similarity = F.cosine_similarity(embedded, reference, dim=-1)
                if self.balance:  # 0 at the model's threshold, -margin once it is that far past it
                    similarity = ((similarity - model.threshold) / (1 - model.threshold)).clamp_min(-self.margin)
                if features is not None:  # mid-level features: what different networks share
                    similarity = similarity + self.feature_weight * F.cosine_similarity(features, reference_features, dim=-1)
                total = total + weight * similarity
            return per_image(total / sum(weights))

        boxes_mask = face_boxes_mask(images, faces)
        outsiders = IdentityJudges(self.judges) if self.judges else None
        references = [outsiders.reference(images[i : i + 1]) for i in range(batch)] if outsiders else []

        def measure(x: torch.Tensor) -> dict[str, Any]:
            if len(faces) == 0:
                return {"faces": 0}
            with torch.no_grad():
                embedded = self.embeddings(x, faces)
            figures: dict[str, Any] = {"faces": len(faces)}
            for model, e, c in zip(ensemble, embedded, clean):
                cosine = F.cosine_similarity(e, c, dim=-1)
                figures[f"{model.name}_cosine"] = [round(v, 4) for v in cosine.tolist()]
                figures[f"{model.name}_faces_past_threshold"] = int((cosine < model.threshold).sum())
                if model.name == "dlib-resnet":
                    distance = (e - c).norm(dim=-1)
                    figures["dlib_distance"] = [round(v, 4) for v in distance.tolist()]
                    figures["dlib_faces_past_threshold"] = int((distance > DLIB_SAME_PERSON_DISTANCE).sum())
            from photoshield.evaluate.metrics import region_psnr, region_ssim

            for judge in outsiders.names if outsiders else ():
                scored = [outsiders.score(references[i], x[i : i + 1]).get(judge) for i in range(batch)]
                figures[f"{judge}_cosine" if judge != "dlib" else "dlib_judge_distance"] = [
                    None if value is None else round(value[0], 4) for value in scored]
                figures[f"{judge}_still_recognised"] = [None if value is None else value[1] for value in scored]
            keep = ~skip
            if bool(keep.any()):
                figures["face_psnr_db"] = [round(v, 2) for v in region_psnr(images[keep], x[keep], boxes_mask[keep]).tolist()]
                figures["face_ssim"] = [round(v, 4) for v in region_ssim(images[keep], x[keep], boxes_mask[keep]).tolist()]
            return figures

        mask = face_region_mask(images, faces, self.dilation) if self.region == "face" else None
        info = {"faces": len(faces), "faces_per_image": counts.tolist(), "ensemble": [m.name for m in ensemble],
                "boxes": [[round(v, 1) for v in box] for box in faces.boxes.tolist()]}
        return Objective(loss_fn=loss_fn, mask=mask, measure=measure, skip=skip, info=info)


def _names(value: str | Sequence[str]) -> list[str]:
    """Model names from a list or a comma-separated string (the CLI's ``models=a,b``)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value]


# --------------------------------------------------------------------------- judging


#: Judges that see a photo the way a stranger's system would: every shipped identity model that tells
#: people apart, SFace (never attacked) and real dlib (the ``judges`` extra; never attacked).
JUDGES: tuple[str, ...] = ("dlib-resnet", "faceres", "faceres-deep", "sface", "dlib")


def _main_face(faces: Faces) -> Faces:
    """The largest face only (what a recognition system compares)."""
    area = (faces.boxes[:, 2:] - faces.boxes[:, :2]).prod(1)
    keep = area.argmax().view(1)
    return Faces(faces.landmarks[keep], faces.image_index[keep] * 0, faces.boxes[keep], faces.scores[keep])


class IdentityJudges:
    """Score whether a photo still shows the same person as a reference photo, under several judges.

    Each judge detects the main face anew on the pixels it gets (photoshield's detector for the
    shipped identity models, YuNet for SFace, HOG for dlib) and compares it with the reference face::

        judges = IdentityJudges()
        reference = judges.reference(photo)                     # (1, 3, H, W)
        judges.score(reference, protected)  # {"sface": (0.41, True), ...}: (score, still the same person)

    Scores are cosines (distance for ``dlib``); a face not found counts as not the same person.
    A judge that cannot be loaded (the optional dlib extra) is left out with its reason in ``skipped``.
    """

    def __init__(self, names: Sequence[str] = JUDGES, device: torch.device | str | None = None):
        self.device = torch.device(device or "cpu")
        self.names, self.skipped = [], {}
        self._models: dict[str, Any] = {}
        for name in names:
            try:
                if name == "sface":
                    self._models[name] = load("face-judge-sface")
                elif name == "dlib":
                    from photoshield.models.face_judge import DlibJudge

                    self._models[name] = DlibJudge()
                else:
                    self._models[name] = identity_model(name, self.device) if name not in JUDGES_ONLY else None
            except PhotoshieldError as error:
                self.skipped[name] = str(error)
                continue
            self.names.append(name)

    def threshold(self, name: str) -> float:
        """The judge's same-person threshold (cosine at or above; ``dlib``: distance below)."""
        if name == "dlib":
            return DLIB_SAME_PERSON_DISTANCE
        model = self._models[name]
        return float(model.threshold)

    def _embed(self, name: str, image: torch.Tensor) -> Any:
        model = self._models[name]
        if name in ("sface", "dlib"):
            return model.embed(image)
        faces = find_faces(image)
        if len(faces) == 0:
            raise PhotoshieldError("no face found")
        with torch.no_grad():
            return model.embed(model.cut(image.to(self.device), _main_face(faces)))[0]

    def reference(self, image: torch.Tensor) -> dict[str, Any]:
        """Each judge's embedding of the main face of the reference photo (None where it finds none)."""
        result = {}
        for name in self.names:
            try:
                result[name] = self._embed(name, image)
            except PhotoshieldError:
                result[name] = None
        return result

    def score(self, reference: dict[str, Any], image: torch.Tensor) -> dict[str, tuple[float, bool]]:
        """``{judge: (score, same person)}`` for ``image`` against the reference (judges without a reference face left out)."""
        import numpy as np

        result = {}
        for name in self.names:
            if reference.get(name) is None:
                continue
            try:
                embedded = self._embed(name, image)
            except PhotoshieldError:
                result[name] = (float("nan"), False)
                continue
            if name == "dlib":
                distance = float(np.linalg.norm(embedded - reference[name]))
                result[name] = (distance, distance < self.threshold(name))
            elif name == "sface":
                cosine = float(embedded @ reference[name])
                result[name] = (cosine, cosine >= self.threshold(name))
            else:
                cosine = float(F.cosine_similarity(embedded, reference[name], dim=0))
                result[name] = (cosine, cosine >= self.threshold(name))
        return result
