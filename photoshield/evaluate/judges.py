"""The judges that score a row's attacked copy against the clean photo: face identity, segmentation, edits, payloads.

    from photoshield.evaluate.judges import build_judges
    judges = build_judges(config, device)              # in column order: face judges, segmenter, editor
    row = {}
    for judge in judges:                               # clean, attacked: (1, 3, H, W) in [0, 1]
        row.update(judge.score("obama", clean, attacked))

Every judge has ``columns`` (the row columns it fills) and ``score(image, clean, attacked) -> {column: value}``;
what it needs of the clean photo (its face descriptor, prompts and masks, its edit) is computed once per
image name and kept. Protections and ``clean`` rows are judged; watermark rows are scored by
:func:`payload_scores` (bits read back) in :mod:`.methods` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from ..errors import PhotoshieldError
from ..models import face, load
from ..models.diffusion import load_editor, resolve_editor
from ..models.face.judge import DlibJudge
from ..models.sam import load_segmenter
from ..models.sam.prompts import draw_prompts, predict_prompts, segmentation_agreement
from ..protect.attention import AttentionProtection
from ..watermark.payload import binomial_p_value as _binomial_tail
from .config import SEGMENTATION_COLUMNS, EditingSpec, EvalConfig
from .editing import edit_disruption, edit_photo
from .grid import row_seed

__all__ = [
    "FACE_JUDGES",
    "EditJudge",
    "IdentityJudge",
    "Judge",
    "SegmentationJudge",
    "binomial_p_value",
    "build_judges",
    "payload_scores",
]


class Judge(Protocol):
    """Scores one attacked copy of a clean photo; ``columns`` are the row columns ``score`` fills."""

    columns: list[str]

    def score(self, image: str, clean: torch.Tensor, attacked: torch.Tensor) -> dict[str, Any]:
        """``{column: value}`` of ``attacked`` (1, 3, H, W) against ``clean`` (the photo named ``image``)."""
        ...


# ----------------------------------------------------------------------------- watermarks


def binomial_p_value(matches: int, bits: int) -> float:
    """P(at least ``matches`` of ``bits`` random bits agree): the chance an unmarked image decodes this well."""
    return _binomial_tail(int(matches), int(bits))


def payload_scores(decoded: torch.Tensor, payload: torch.Tensor, fpr: float) -> dict[str, Any]:
    """``bit_accuracy``, ``p_value`` and ``detected`` (p-value at or below ``fpr``) of bits read back, (1, N) each.

    >>> payload_scores(torch.tensor([[1, 0, 1, 1]]), torch.tensor([[1, 0, 1, 0]]), 0.5)["bit_accuracy"]
    0.75
    """
    matches = int((decoded == payload).sum())
    bits = payload.shape[-1]
    p_value = binomial_p_value(matches, bits)
    return {"bit_accuracy": matches / bits, "p_value": p_value, "detected": p_value <= fpr}


# ----------------------------------------------------------------------------- face identity


class IdentityJudge(ABC):
    """A face-identity judge: ``identity_<name>`` (its score against the clean face) and ``identity_<name>_same``.

    A clean photo without a face leaves both empty (None); an attacked copy without one scores (nan, False).
    """

    name: ClassVar[str]

    def __init__(self, device: torch.device):
        self.device = device
        stem = "identity_" + self.name.replace("-", "_")
        self.columns = [stem, stem + "_same"]
        self._clean: dict[str, Any] = {}

    @abstractmethod
    def embed(self, image: torch.Tensor) -> Any:
        """The descriptor of the main face of ``image`` (1, 3, H, W); raises PhotoshieldError without a face."""

    @abstractmethod
    def compare(self, clean: Any, other: Any) -> tuple[float, bool]:
        """(score, same person?) of two descriptors."""

    def descriptor(self, image: torch.Tensor) -> Any:
        """The descriptor of the main face, or None when the judge finds no face."""
        try:
            return self.embed(image)
        except PhotoshieldError:
            return None

    def score(self, image: str, clean: torch.Tensor, attacked: torch.Tensor) -> dict[str, Any]:
        if image not in self._clean:
            self._clean[image] = self.descriptor(clean)
        reference = self._clean[image]
        if reference is None:  # no face in the clean photo: nothing to judge
            return dict.fromkeys(self.columns)
        other = self.descriptor(attacked)
        value, same = (float("nan"), False) if other is None else self.compare(reference, other)
        return dict(zip(self.columns, (value, same)))


class DlibPortIdentity(IdentityJudge):
    """photoshield's torch port of the dlib ResNet: Euclidean distance, same person below 0.6."""

    name = "dlib-port"

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return face.embed_faces(image.to(self.device))[0].cpu()

    def compare(self, clean: torch.Tensor, other: torch.Tensor) -> tuple[float, bool]:
        value = float(clean.sub(other).norm())
        return value, value < 0.6


class SFaceIdentity(IdentityJudge):
    """OpenCV's SFace with YuNet (onnxruntime, CPU; a black box): cosine, same person at or above its threshold (0.363)."""

    name = "sface"

    def __init__(self, device: torch.device):
        super().__init__(device)
        self._model = load("face-judge-sface")

    def embed(self, image: torch.Tensor) -> np.ndarray:
        return self._model.embed(image.cpu())

    def compare(self, clean: np.ndarray, other: np.ndarray) -> tuple[float, bool]:
        value = float(np.dot(clean, other))
        return value, value >= self._model.threshold


class DlibIdentity(IdentityJudge):
    """The original dlib (the ``judges`` extra; CPU, not differentiable): Euclidean distance, same person below 0.6."""

    name = "dlib"

    def __init__(self, device: torch.device):
        super().__init__(device)
        self._model = DlibJudge()  # imports dlib (the optional judges extra) or says how to install it

    def embed(self, image: torch.Tensor) -> np.ndarray:
        return self._model.embed(image.cpu())

    def compare(self, clean: np.ndarray, other: np.ndarray) -> tuple[float, bool]:
        value = float(np.linalg.norm(clean - other))
        return value, value < 0.6


#: Face judges by the name the config uses (``judges: [dlib-port, sface]``).
FACE_JUDGES: dict[str, type[IdentityJudge]] = {judge.name: judge for judge in (DlibPortIdentity, SFaceIdentity, DlibIdentity)}


# ----------------------------------------------------------------------------- segmentation


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


class SegmentationJudge:
    """``seg_miou`` / ``seg_asr50``: the segmenter's masks of the attacked copy against the clean photo's.

    Prompts (boxes and points) are drawn once per photo from ``seed``; the clean photo's masks are the reference.
    """

    columns = SEGMENTATION_COLUMNS

    def __init__(self, segmenter: str, device: torch.device, seed: int):
        self.segmenter = load_segmenter(segmenter, device=device)
        self.seed = seed
        self._clean: dict[str, tuple[Any, Any]] = {}

    def score(self, image: str, clean: torch.Tensor, attacked: torch.Tensor) -> dict[str, Any]:
        device = _device_of(self.segmenter)
        clean = clean.to(device)
        if image not in self._clean:
            prompts = draw_prompts(self.segmenter, clean, seed=self.seed)
            self._clean[image] = prompts, predict_prompts(self.segmenter, clean, prompts)
        prompts, reference = self._clean[image]
        figures = segmentation_agreement(self.segmenter, clean, attacked.to(device), prompts=prompts, reference=reference)
        return {"seg_miou": figures["miou"], "seg_asr50": figures["asr50"]}


# ----------------------------------------------------------------------------- edits


class EditJudge:
    """Edits each attacked copy with one editor and compares it with the clean photo's edit (made once per image).

    Every edit of a photo uses that photo's edit seed (from the run's ``seed`` and the image name), so the
    clean photo edited again gives the reference edit exactly.
    """

    def __init__(self, spec: EditingSpec, device: torch.device, seed: int):
        self.spec = spec
        self.seed = seed
        self.columns = spec.columns()
        # Shared with the attention method's editor cache (one copy in memory). The prompt is encoded now,
        # before that method may free the text encoders of the shared editor.
        self.editor, _ = resolve_editor(spec.editor, spec.kind, device, owner="editing")
        try:
            self.editor.encode_prompt(spec.prompt)
        except PhotoshieldError:  # an earlier attention run freed the shared copy's text encoders: load our own
            self.editor = load_editor(spec.editor, spec.kind, device=device)
            self.editor.encode_prompt(spec.prompt)
        self.editor.pipe.set_progress_bar_config(disable=True)
        self.probe = None
        if self.editor.is_flux:
            self.probe = AttentionProtection(self.editor, prompts=[spec.prompt], faces=False, gradient_checkpointing=False)
        self._clean: dict[str, dict[str, Any]] = {}

    def edit_seed(self, image: str) -> int:
        """The seed of every edit of the photo named ``image``."""
        return row_seed(self.seed, image, "edit") % 2**31

    def score(self, image: str, clean: torch.Tensor, attacked: torch.Tensor) -> dict[str, Any]:
        spec, options, seed = self.spec, self.spec.edit_options(), self.edit_seed(image)
        reference = self._clean.get(image)
        if reference is None:
            reference = {"edit": edit_photo(self.editor, clean, spec.prompt, seed=seed, **options)}
            if self.probe is not None:
                reference["context_mass"] = float(self.probe.context_mass(clean).mean())
            self._clean[image] = reference
        figures = edit_disruption(self.editor, clean, attacked, spec.prompt, seed=seed, faces=spec.faces, context_mass=False,
                                  edited_clean=reference["edit"], **options)
        row = {"edit_psnr": figures["psnr_db"], "edit_ssim": figures["ssim"], "edit_rmse255": figures["rmse255"]}
        if spec.faces:
            row["edit_identity"] = figures.get("identity_cosine_protected_edit")
            row["edit_identity_clean"] = figures.get("identity_cosine_clean_edit")
            lost = figures.get("faces_lost_in_edit_protected_edit")  # None: no face in the clean photo
            row["edit_face_lost"] = None if lost is None else lost > 0
        if self.probe is not None:
            mass = float(self.probe.context_mass(attacked).mean())
            row["edit_context_mass"] = mass
            row["edit_context_mass_ratio"] = mass / max(reference["context_mass"], 1e-12)
        return row


def build_judges(config: EvalConfig, device: torch.device) -> list[Judge]:
    """The judges ``config`` asks for, in column order: its face judges, then the segmenter, then the editor."""
    judges: list[Judge] = [FACE_JUDGES[name](device) for name in config.judges]
    if config.segmenter:
        judges.append(SegmentationJudge(config.segmenter, device, config.seed))
    spec = config.editing_spec()
    if spec is not None:
        judges.append(EditJudge(spec, device, config.seed))
    return judges
