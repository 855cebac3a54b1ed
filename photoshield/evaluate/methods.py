"""The methods of a grid, one class per kind: turn a clean photo into the copy every attack is applied to.

    from photoshield.evaluate.methods import build_method
    method = build_method(parse_method("dwtDctSvd"), torch.device("cpu"))
    made = method.apply(photo, seed=7)          # Output: image (1, 3, H, W), status "marked", payload (1, 32) bits
    method.read_back(attacked, made, fpr=1e-6)  # {"bit_accuracy": 1.0, "p_value": 2.3e-10, "detected": True}

Kinds (``MethodSpec.kind``, registered in :data:`METHOD_KINDS`): ``clean`` (the photo as it is), ``protect``
(a protection of :func:`photoshield.protect.protect`), ``baseline`` (an invisible-watermark baseline) and
``watermark`` (photoshield's own). Methods with ``carries_payload`` are scored by the bits read back;
the others by the judges of :mod:`.judges` (identity, segmentation, edits).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .. import watermark
from ..errors import PhotoshieldError
from ..protect import protect
from ..watermark.baselines import baseline
from .config import MethodSpec
from .judges import payload_scores

__all__ = [
    "METHOD_KINDS",
    "BaselineMethod",
    "CleanMethod",
    "Method",
    "Output",
    "ProtectionMethod",
    "WatermarkMethod",
    "build_method",
]


@dataclass
class Output:
    """A method's copy of a clean photo: ``image`` (1, 3, H, W), its ``status``, the ``payload`` embedded (watermarks)."""

    image: torch.Tensor
    status: str
    payload: Any = None  # the bits (baselines) or message (photoshield's watermark) embedded


class Method(ABC):
    """One method of the grid, configured once by its spec and applied to each clean photo."""

    kind: ClassVar[str]
    #: True for watermarks: their rows measure the payload read back (:meth:`read_back`), not identity or edits.
    carries_payload: ClassVar[bool] = False

    def __init__(self, spec: MethodSpec, device: torch.device):
        self.spec = spec
        self.device = device

    @abstractmethod
    def apply(self, image: torch.Tensor, seed: int) -> Output:
        """The method's copy of ``image`` (1, 3, H, W) in [0, 1]; ``seed`` fixes every random choice."""

    def read_back(self, attacked: torch.Tensor, output: Output, fpr: float) -> dict[str, Any]:
        """``bit_accuracy``, ``p_value`` and ``detected`` of the payload of ``output`` found in ``attacked``."""
        raise PhotoshieldError(f"method {self.spec.describe()!r} embeds no payload to read back")


class CleanMethod(Method):
    """The photo untouched: the reference rows (how much the attack alone changes identity, masks and edits)."""

    kind = "clean"

    def apply(self, image: torch.Tensor, seed: int) -> Output:
        return Output(image, "clean")


class ProtectionMethod(Method):
    """A registered protection; ``epsilon`` in 0-255 units, ``psnr`` in dB (neither: the method's default budget),
    ``steps``/``preset`` and other options go to ``protect()``."""

    kind = "protect"

    def apply(self, image: torch.Tensor, seed: int) -> Output:
        options = self.spec.options
        epsilon = options.pop("epsilon", None)
        epsilon = None if epsilon is None else float(epsilon) / 255.0
        result = protect(image.to(self.device), method=self.spec.name, epsilon=epsilon, steps=options.pop("steps", None),
                         preset=options.pop("preset", "standard"), seed=seed % 2**31, device=self.device,
                         progress=False, **options)
        return Output(result.image.cpu(), str(result.report.get("status", "protected")))


class BaselineMethod(Method):
    """An invisible-watermark baseline (dwtDct, dwtDctSvd, rivaGan) embedding random bits; built on first use."""

    kind = "baseline"
    carries_payload = True

    def __init__(self, spec: MethodSpec, device: torch.device):
        super().__init__(spec, device)
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The baseline watermarker (raises PhotoshieldError without the ``baselines`` extra)."""
        if self._model is None:
            self._model = baseline(self.spec.name, **self.spec.options)
        return self._model

    def apply(self, image: torch.Tensor, seed: int) -> Output:
        generator = torch.Generator().manual_seed(seed)
        model = self.model
        payload = torch.randint(0, 2, (1, model.bits), generator=generator)
        return Output(model.embed(image, payload).cpu(), "marked", payload)

    def read_back(self, attacked: torch.Tensor, output: Output, fpr: float) -> dict[str, Any]:
        return payload_scores(self.model.decode(attacked).cpu(), output.payload, fpr)


class WatermarkMethod(Method):
    """photoshield's own watermark (``key``, ``strength``, ``model``, ``refine_steps``, ``search``) with a per-row owner id."""

    kind = "watermark"
    carries_payload = True

    def apply(self, image: torch.Tensor, seed: int) -> Output:
        options = self.spec.options
        generator = torch.Generator().manual_seed(seed)
        message = int(torch.randint(0, 2**20, (1,), generator=generator))  # a per-row owner id
        marked = watermark.embed(image, message, key=options.get("key"), strength=float(options.get("strength", 1.0)),
                                 model=options.get("model"), seed=seed % 2**31,
                                 refine_steps=int(options.get("refine_steps", watermark.DEFAULT_REFINE_STEPS)))
        return Output(marked.cpu(), "marked", message)

    def read_back(self, attacked: torch.Tensor, output: Output, fpr: float) -> dict[str, Any]:
        """Its own ``verify()`` gives the bit accuracy, the p-value and the decision at ``fpr``."""
        options = self.spec.options
        found = watermark.verify(attacked, message=output.payload, key=options.get("key"), fpr=fpr, model=options.get("model"),
                                 search=bool(options.get("search", False)))
        return {"bit_accuracy": found.bit_accuracy, "p_value": found.p_value, "detected": bool(found.detected)}


#: Method classes by ``MethodSpec.kind``; :func:`~photoshield.evaluate.config.parse_method` gives the kind of a name.
METHOD_KINDS: dict[str, type[Method]] = {method.kind: method for method in (CleanMethod, ProtectionMethod, BaselineMethod,
                                                                             WatermarkMethod)}


def build_method(spec: MethodSpec, device: torch.device) -> Method:
    """The method of ``spec``, on ``device`` (where protections run; watermarks run on the CPU)."""
    if spec.kind not in METHOD_KINDS:
        raise PhotoshieldError(f"unknown method kind {spec.kind!r}; choose one of {', '.join(METHOD_KINDS)}")
    return METHOD_KINDS[spec.kind](spec, device)
