"""Plain-language verdicts of a facial protection: does each face model still recognise each face?

``summary(report)`` turns a ``protect()`` report into lines a person can read: the status, which models the
protection was computed against, one line per face per identity model (the attacked ensemble and the
independent judges that never saw the protection), and the PSNR on the face region and on the whole photo::

    result = protect("selfie.jpg", preset="light")
    print(summary(result.report))            # or result.summary()
    # protected (facial, preset light, budget 8/255, 30 steps, 12.6 s)
    # computed against: dlib ResNet, FaceRes, FaceRes-deep
    # face 1: recognised by 1 of 5 face models (SFace)
    #   dlib ResNet: no longer recognised (cosine 0.71, same person at or above 0.93)
    #   SFace, never seen by the protection: still recognised (cosine 0.84, same person at or above 0.36)
    # quality: PSNR 35.8 dB on the face region, 44.9 dB on the whole photo (40 dB and up is hard to see)

``judge_verdicts(report)`` gives the same verdicts as :class:`JudgeVerdict` objects, and
``score_verdicts(scores, thresholds)`` words the ``IdentityJudges.score`` output of any two photos.
Thresholds are the ones the measurements use: ``SAME_PERSON_COSINE`` per shipped model (the dlib port
included, as in the report's ``*_faces_past_threshold`` and ``IdentityJudges``), OpenCV's 0.363 for SFace,
and dlib's own distance 0.6 (``DLIB_SAME_PERSON_DISTANCE``) for the original dlib library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .facial import DLIB_SAME_PERSON_DISTANCE, JUDGES_ONLY, SAME_PERSON_COSINE

__all__ = ["MODEL_LABELS", "JudgeVerdict", "judge_verdicts", "model_label", "score_verdicts", "summary"]

#: How each identity model is called for people.
MODEL_LABELS: dict[str, str] = {
    "dlib-resnet": "dlib ResNet",
    "faceres": "FaceRes",
    "faceres-deep": "FaceRes-deep",
    "mobileface": "MobileFace",
    "mobilefacenet": "MobileFaceNet",
    "sface": "SFace",
    "dlib": "dlib",
}
#: Same-person cosine of an ArcFace checkpoint added with ``arcface=PATH`` (``facial.arcface_model``'s default).
_ARCFACE_COSINE = 0.3


def model_label(name: str) -> str:
    """The name people see for identity model ``name`` (``"faceres-deep"`` -> ``"FaceRes-deep"``)."""
    return MODEL_LABELS.get(name, name)


def _threshold(name: str) -> tuple[str, float]:
    """(``"cosine"`` or ``"distance"``, the same-person threshold) of identity model ``name``."""
    if name == "dlib":  # the original library, judged as dlib itself does (its port is judged by cosine)
        return "distance", DLIB_SAME_PERSON_DISTANCE
    if name == "sface":
        from ..models.face.judge import SFACE_SAME_PERSON_COSINE

        return "cosine", SFACE_SAME_PERSON_COSINE
    return "cosine", SAME_PERSON_COSINE.get(name, _ARCFACE_COSINE)


def _pair(score: float, threshold: float) -> tuple[str, str]:
    """Score and threshold as text, with 2 digits unless more are needed to tell them apart (or to keep a
    threshold just under 1 from reading as 1)."""
    for digits in (2, 3, 4):
        left, right = f"{score:.{digits}f}", f"{threshold:.{digits}f}"
        if left != right and (threshold >= 1 or float(right) < 1):
            return left, right
    return f"{score:.5f}", f"{threshold:.5f}"


@dataclass(frozen=True)
class JudgeVerdict:
    """One identity model's verdict on one face: is it still the same person as in the original?

    ``measure`` is ``"cosine"`` (same person at or above ``threshold``) or ``"distance"`` (same person below
    it); ``score`` is None and ``recognised`` False when the model found no face. ``attacked``: the model was
    in the protection's objective (True), never seen by it (False), or unknown (None, e.g. two uploads
    compared). ``face`` numbers the faces of a photo from 1; None is the main face as the model finds it.
    ``role`` is said after the model's name.
    """

    model: str
    score: float | None
    recognised: bool
    measure: str
    threshold: float
    attacked: bool | None = None
    face: int | None = None
    role: str = ""  # said after the name: "never seen by the protection", "independent judge", ...

    @property
    def label(self) -> str:
        """The model's name for people, with its role: ``"SFace, never seen by the protection"``."""
        return f"{model_label(self.model)}, {self.role}" if self.role else model_label(self.model)

    def __str__(self) -> str:
        if self.score is None or math.isnan(self.score):
            return f"{self.label}: no face found (counts as not recognised)"
        state = "still recognised" if self.recognised else "no longer recognised"
        score, threshold = _pair(self.score, self.threshold)
        side = "below" if self.measure == "distance" else "at or above"
        return f"{self.label}: {state} ({self.measure} {score}, same person {side} {threshold})"


def _role(model: str, attacked: bool | None, ensemble: Sequence[str] = ()) -> str:
    if attacked is False and model == "dlib" and "dlib-resnet" in ensemble:
        return "never seen by the protection, but the same network as dlib ResNet"
    if attacked is False:
        return "never seen by the protection"
    if attacked is None and model in JUDGES_ONLY:
        return "independent judge"
    return ""


def _verdict(model: str, score: float | None, attacked: bool | None, face: int | None,
             recognised: bool | None = None, ensemble: Sequence[str] = ()) -> JudgeVerdict:
    measure, threshold = _threshold(model)
    if recognised is None:
        recognised = score is not None and not math.isnan(score) and (
            score < threshold if measure == "distance" else score >= threshold)
    return JudgeVerdict(model, score, bool(recognised), measure, threshold, attacked, face,
                        _role(model, attacked, ensemble))


def _at(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, (list, tuple)) and 0 <= index < len(values) else None


def _face_range(report: Mapping[str, Any], image: int) -> range:
    """Indices, in the report's per-face lists, of the faces of image ``image`` of the batch."""
    counts = report.get("faces_per_image") or [report.get("faces", 0)]
    start = sum(counts[:image])
    return range(start, start + (counts[image] if image < len(counts) else 0))


def judge_verdicts(report: Mapping[str, Any], image: int = 0) -> list[JudgeVerdict]:
    """Every identity model's verdict on every face of image ``image`` of a facial ``protect()`` report.

    The attacked ensemble judges each face (faces numbered from 1); the independent judges (SFace, real
    dlib) detect the main face anew. Empty for other methods and for photos without a face.
    """
    after = report.get("protected") or {}
    verdicts = []
    for number, index in enumerate(_face_range(report, image), start=1):
        for name in report.get("ensemble", ()):
            score = _at(after.get(f"{name}_cosine"), index)
            if score is not None:
                verdicts.append(_verdict(name, float(score), True, number))
    ensemble = list(report.get("ensemble", ()))
    for key in after:
        if not key.endswith("_still_recognised"):
            continue
        name = key[: -len("_still_recognised")]
        still = _at(after[key], image)
        if still is None:  # the judge found no face on the original: nothing to compare
            continue
        score = _at(after.get("dlib_judge_distance" if name == "dlib" else f"{name}_cosine"), image)
        verdicts.append(_verdict(name, None if score is None else float(score), name in ensemble, None, bool(still),
                                 ensemble))
    return verdicts


def score_verdicts(scores: Mapping[str, tuple[float, bool]], attacked: Sequence[str] | None = None) -> list[JudgeVerdict]:
    """Verdicts from ``IdentityJudges.score`` output ``{model: (score, same person)}`` (two photos compared).

    ``attacked``: the models a protection of the photo was computed against, when known.
    """
    return [_verdict(name, score, None if attacked is None else name in attacked, None, same, attacked or ())
            for name, (score, same) in scores.items()]


def _quality(report: Mapping[str, Any], image: int) -> str | None:
    after = report.get("protected") or {}
    photo = _at(report.get("psnr_db"), image)
    skipped = set(report.get("skipped_images", ()))
    kept = image - sum(1 for index in skipped if index < image)
    face = None if image in skipped else _at(after.get("face_psnr_db"), kept)
    parts = []
    if face is not None:
        parts.append("unchanged on the face region" if math.isinf(face) else f"{face:.1f} dB on the face region")
    if photo is not None:
        parts.append("unchanged on the whole photo" if math.isinf(photo) else f"{photo:.1f} dB on the whole photo")
    if not parts:
        return None
    return "quality: PSNR " + ", ".join(parts) + " (higher is less visible; 40 dB and up is hard to see)"


def _heading(report: Mapping[str, Any]) -> str:
    details = [report.get("method", "protection")]
    if report.get("preset"):
        details.append(f"preset {report['preset']}")
    if report.get("psnr_floor_db") is not None:
        details.append(f"budget PSNR >= {report['psnr_floor_db']:g} dB, pixels <= {report.get('epsilon_255', 0):g}/255")
    elif report.get("epsilon_255") is not None:
        details.append(f"budget {report['epsilon_255']:g}/255")
    if report.get("steps") is not None:
        details.append(f"{report['steps']} step{'' if report['steps'] == 1 else 's'}")
    if report.get("seconds") is not None:
        details.append(f"{report['seconds']:.1f} s")
    return f"{report.get('status', 'done')} ({', '.join(str(d) for d in details)})"


def summary(report: Mapping[str, Any], image: int = 0) -> str:
    """The protection of image ``image`` of a ``protect()`` report in plain language, one fact per line.

    Lines: status and settings; the reason when unchanged; the models the protection was computed against;
    per face, how many models still recognise it and one line per model (:func:`judge_verdicts`); the
    PSNR on the face region and on the whole photo.
    """
    lines = [_heading(report)]
    if report.get("reason"):
        lines.append(f"note: {report['reason']}")
    if report.get("ensemble") and report.get("steps") is not None:  # the optimisation ran (not: no face found)
        lines.append("computed against: " + ", ".join(model_label(name) for name in report["ensemble"]))
    verdicts = judge_verdicts(report, image)
    faces = sorted({v.face for v in verdicts if v.face is not None})
    independent = [v for v in verdicts if v.face is None]
    for number in faces:
        mine = [v for v in verdicts if v.face == number]
        if len(faces) == 1:  # one face: the independent judges' main face is this one
            mine += independent
        still = [model_label(v.model) for v in mine if v.recognised]
        head = f"face {number}" if len(faces) > 1 else "face"
        lines.append(f"{head}: recognised by {len(still)} of {len(mine)} face models" + (f" ({', '.join(still)})" if still else ""))
        lines.extend(f"  {v}" for v in mine)
    if independent and len(faces) != 1:
        lines.append("largest face, as the independent judges find it:")
        lines.extend(f"  {v}" for v in independent)
    quality = _quality(report, image)
    if quality:
        lines.append(quality)
    return "\n".join(lines)
