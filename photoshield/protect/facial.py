"""Facial-feature protection: push face identity embeddings of an ensemble of real networks away.

Every face is detected on the clean photo and its landmarks fixed; each identity model of the
ensemble cuts its own input from the photo the way it was trained (dlib's aligned chip, ``human``'s
square box crop, an ArcFace chip), differentiably, and embeds it. The loss is balanced across models:
each model's cosine similarity to the clean embedding is measured from that model's own same-person
threshold in units of (1 - threshold), so models with differently spread scores weigh alike (a model
pushed ``margin`` units past its threshold stops pulling). A mid-level feature term moves what
different networks share. The cut is jittered a little every step (alignment EOT), since the model that will
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

from ..errors import PhotoshieldError
from ..models import default_device, load
from ..models import face as face_models
from ._renamed import renamed_getattr
from .objective import Objective
from .faces import Faces, face_boxes_mask, face_region_mask, find_faces  # noqa: F401

DLIB_SAME_PERSON_DISTANCE = 0.6

#: Cosine similarity at or above which each model calls two faces the same person: the lowest
#: threshold that passes at most 1 % of different-person pairs on a labelled corpus of 30 identities
#: (``python tools/fetch_face_photos.py && python benchmarks/calibrate_face_thresholds.py``;
#: ``benchmarks/results/face_thresholds.json`` has TPR and FPR at each; that script scores the dlib port
#: by distance, 0.62 at 1 % FPR). For the dlib port's cosine, 0.93 separates the bundled faces (same
#: person 0.95-0.97, different people at most 0.90).
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

#: Engine settings of the facial objective (they replace the preset's, not the caller's): MI-FGSM momentum,
#: TI-FGSM gradient smoothing (sigma in pixels) and DI-FGSM input diversity, the transfer-attack recipe. On the
#: bundled faces at face PSNR 35 dB they lowered SFace's mean cosine (never attacked) from 0.59 to 0.57, and raised
#: real dlib from 88 % to 100 % of faces (``benchmarks/bench_facial_choices.py``).
FACIAL_ENGINE: dict[str, float] = {"momentum": 0.9, "smooth_gradient": 1.0, "input_diversity": 0.5}

#: Black-box judges: never part of an objective.
JUDGES_ONLY = frozenset({"sface", "face-judge-sface", "dlib"})


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
    from ..models.face.description import load_description

    return load_description(f"face-{name}", device=device)


def _description_model(name: str, device: torch.device) -> IdentityModel:
    from ..models.face.description import crop_faces

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
    from ..models.face.arcface import align_arcface

    backbone = load("face-arcface", device=device, path=path)

    def cut(images: torch.Tensor, faces: Faces) -> torch.Tensor:
        return align_arcface(images, faces.landmarks, faces.image_index)

    return IdentityModel(f"arcface:{Path(path).stem}", backbone, cut, threshold, weight)


class FacialProtection:
    """Build the identity objective for a batch over an ensemble of identity models.

    ``models``: shipped model names (default ``DEFAULT_ENSEMBLE``); ``exclude``: names to leave out
    (leave-one-out evaluation); ``arcface``: insightface checkpoints to add; ``ensemble``: ready
    :class:`IdentityModel` objects instead of all of these. ``margin``: how far past its own threshold
    (in units of 1 - threshold) a model is pushed before it stops pulling; ``balance=False`` minimises
    the plain mean cosine instead. ``jitter``: alignment EOT, as a fraction of the face size.
    ``feature_weight``: weight of the mid-level feature term (cosine of a middle block's activations),
    which moves what different networks share. ``judges``: independent judges (never attacked) whose
    verdict on the protected photo goes into the report (``sface``, ``dlib``; ``()`` for none).

    Args:
        ensemble: ready identity models; None to build them from ``models`` and ``arcface``.
        device: kept for callers; the models are loaded on the device of the images.
        region: ``face`` (the perturbation stays in a dilated ellipse around each face) or ``image``.
        dilation: the ellipse's size as a multiple of the landmarks' extent.
        min_score: the face detector's score a face needs.
        arcface: insightface IResNet checkpoint file(s) to add.
        models: shipped identity model names (``identity_models()``).
        exclude: names to leave out of ``models``.
        margin: how far past its threshold, in units of (1 - threshold), a model still pulls.
        balance: measure each model from its own threshold (False: the plain mean cosine).
        jitter: alignment jitter per step, as a fraction of the face size.
        feature_weight: weight of the mid-level feature term.
        judges: independent judges for the report.
        seed: seeds the jitter.

    Shapes:
        - objective(images): images (B, 3, H, W) in [0, 1]; its loss_fn (B, 3, H, W) -> (B,),
          its mask (B, 1, H, W)

    Raises:
        PhotoshieldError: an unknown model, a judge named as a model, or an empty ensemble.

    Examples:
        >>> from photoshield import data
        >>> from photoshield.image import resize_to
        >>> from photoshield.protect import FacialProtection
        >>> face = resize_to(data.sample("obama")[..., :256, 100:356], (112, 112))
        >>> objective = FacialProtection(models=["dlib-resnet"], judges=()).objective(face)
        >>> objective.info["faces"], objective.loss_fn(face).shape, objective.mask.shape
        (1, torch.Size([1]), torch.Size([1, 1, 112, 112]))
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
            from ..metrics import region_psnr, region_ssim

            for judge in outsiders.names if outsiders else ():
                scored = [outsiders.score(references[i], x[i : i + 1], [judge]).get(judge) for i in range(batch)]
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
        return Objective(loss_fn=loss_fn, mask=mask, measure=measure, skip=skip, info=info, region=boxes_mask,
                         engine=dict(FACIAL_ENGINE))


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
                    from ..models.face.judge import DlibJudge

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

    def _embed(self, name: str, image: torch.Tensor, faces: Faces | None) -> Any:
        model = self._models[name]
        if name in ("sface", "dlib"):
            return model.embed(image)
        if faces is None or len(faces) == 0:
            raise PhotoshieldError("no face found")
        with torch.no_grad():
            return model.embed(model.cut(image.to(self.device), _main_face(faces)))[0]

    def _faces(self, image: torch.Tensor, names: Sequence[str]) -> Faces | None:
        """photoshield's detection, once for every shipped-model judge among ``names``."""
        return find_faces(image) if any(name not in ("sface", "dlib") for name in names) else None

    def reference(self, image: torch.Tensor) -> dict[str, Any]:
        """Each judge's embedding of the main face of the reference photo (None where it finds none)."""
        result = {}
        faces = self._faces(image, self.names)
        for name in self.names:
            try:
                result[name] = self._embed(name, image, faces)
            except PhotoshieldError:
                result[name] = None
        return result

    def score(self, reference: dict[str, Any], image: torch.Tensor,
              names: Sequence[str] | None = None) -> dict[str, tuple[float, bool]]:
        """``{judge: (score, same person)}`` for ``image`` against the reference, for ``names`` (default every
        judge); judges without a reference face are left out."""
        import numpy as np

        names = [name for name in (names or self.names) if name in self.names and reference.get(name) is not None]
        faces = self._faces(image, names)
        result = {}
        for name in names:
            try:
                embedded = self._embed(name, image, faces)
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


__getattr__ = renamed_getattr(__name__, globals(), ("FacialAttack",))  # the old name, deprecated
