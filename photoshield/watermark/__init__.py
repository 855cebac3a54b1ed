"""Diffusion watermark: ``embed`` an owner's message into a photo, ``verify`` a copy with a stated false-positive rate.

    from photoshield.watermark import embed, verify
    marked = embed(photo, "ID-004217", key="my secret")          # any size, tensor / PIL / path in
    result = verify(copy, message="ID-004217", key="my secret")   # fpr=1e-6 by default
    result.detected, result.p_value, result.bit_accuracy, result.message

The model is ``load("watermark-diffmark")`` from the registry (see ``watermark.model``); the
message layout, error correction and statistics are in ``watermark.payload``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
from PIL import Image

from ..errors import PhotoshieldError
from ..image import ImageLike, check_image, to_pil, to_tensor
from . import payload
from .payload import DEFAULT_FPR, Message, MessageTooLongError, PayloadError

__all__ = ["DEFAULT_FPR", "DEFAULT_REFINE_STEPS", "MessageTooLongError", "PayloadError", "VerifyResult", "embed", "load", "verify"]

ImageInput = Union[ImageLike, str, os.PathLike]

_CACHE: dict[tuple[str, str], torch.nn.Module] = {}
DEFAULT_REFINE_STEPS = 60  # informed-embedding steps (0.3-0.7 s a photo on 2 CPU cores)


def load(name_or_path: str | os.PathLike = "watermark-diffmark", device: str | torch.device | None = None,
         verify: bool = True):
    """The watermark model: a registry name (default the shipped ``watermark-diffmark``) or a checkpoint path.

    A file is accepted when it is byte for byte the shipped model (registry sha256) or carries the
    tensor checksum that ``WatermarkModel.save`` writes and its weights match it; ``verify=False``
    loads older files of your own without either check. Cached per (name, device). A clear error
    says how to train or point at weights when they are missing.
    """
    from ..models import registry
    from .model import REGISTRY_NAME, WatermarkModel

    device = torch.device(device) if device is not None else registry.default_device()
    key = (str(name_or_path), str(device))
    if key not in _CACHE:
        text = str(name_or_path)
        if text == REGISTRY_NAME or (not Path(text).suffix and not Path(text).exists()):
            model = registry.load(text, device=device)
        else:
            if not Path(text).is_file():
                raise PhotoshieldError(f"{text}: watermark checkpoint file does not exist")
            if verify:
                _check_watermark_file(Path(text), registry.get_checkpoint(REGISTRY_NAME).sha256)
            model = WatermarkModel.from_file(text, device=device).eval().requires_grad_(False)
        _CACHE[key] = model
    return _CACHE[key]


def _check_watermark_file(path: Path, shipped_sha256: str | None) -> None:
    """Refuse a checkpoint that is neither the shipped file nor self-checked by its recorded tensor sha256."""
    from ..errors import ChecksumError
    from ..models.registry import safetensors_metadata, sha256_of

    if shipped_sha256 is not None and sha256_of(path) == shipped_sha256:
        return
    if "tensors_sha256" not in safetensors_metadata(path, "watermark checkpoint"):
        raise ChecksumError(
            f"{path}: not the shipped watermark-diffmark file (sha256 differs) and it carries no checksum of its "
            "weights, so corruption cannot be ruled out; for weights you trained yourself pass verify=False"
        )


def _resolve_model(model, device=None):
    if model is None or isinstance(model, (str, os.PathLike)):
        return load(model or "watermark-diffmark", device=device)
    return model


def _as_tensor(image: ImageInput) -> tuple[torch.Tensor, str]:
    """(tensor, kind of the input) for a tensor, PIL image, numpy array or path."""
    if isinstance(image, (str, os.PathLike)):
        from ..io import read_image

        return read_image(image), "tensor"
    kind = "pil" if isinstance(image, Image.Image) else "tensor"
    tensor = image if isinstance(image, torch.Tensor) else to_tensor(image)
    if isinstance(image, torch.Tensor):
        check_image(tensor if tensor.ndim == 4 else tensor[None])
        tensor = tensor if tensor.ndim == 4 else tensor[None]
    return tensor, kind


def _schema(model) -> payload.Schema:
    return payload.get_schema(model.n_bits, getattr(model.config, "schema_version", 1))


def embed(image: ImageInput, message: Message, key: str | bytes | None = None, strength: float = 1.0, *,
          model=None, steps: int | None = None, seed: int = 0, refine_steps: int = DEFAULT_REFINE_STEPS,
          refine_through: Sequence[Callable[[torch.Tensor], torch.Tensor]] = ()) -> torch.Tensor | Image.Image:
    """Watermark ``image`` (tensor (B, 3, H, W) / PIL / array / path) with ``message`` under ``key``.

    Returns the same kind it was given (PIL for PIL, else a tensor) at the input's own size.
    ``strength`` scales the residual (1.0 is what the quality figures are measured at); ``steps``
    sets the DDIM sampling steps (default the model's, 4); ``seed`` makes the sampling repeatable.
    ``refine_steps`` adapts the sampled residual to this photo at the same image quality (informed
    embedding, ``WatermarkModel.refine``; 0 turns it off); ``refine_through`` adds differentiable
    attacks the mark must also survive, e.g. ``[attacks.get("vae", model=models.load("autoencoder-small"))]``.
    """
    wm = _resolve_model(model)
    tensor, kind = _as_tensor(image)
    bits = payload.encode(message, key=key, schema=_schema(wm))
    device = next(wm.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        out = wm.embed(tensor.to(device), bits.to(device), strength=float(strength), steps=steps, generator=generator,
                       refine_steps=int(refine_steps), refine_through=tuple(refine_through))
    out = out.to(tensor.device)
    return to_pil(out) if kind == "pil" else out


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found in one image."""

    message: Message | None  # the decoded message (None when no valid codeword is within reach)
    bit_accuracy: float | None  # bits matching the expected (or nearest valid) codeword
    p_value: float  # chance that an unmarked image matches this well
    detected: bool  # p_value <= fpr
    fpr: float
    errors: int | None
    n_bits: int
    geometry: str = "as is"  # with search=True: the crop or rotation the bits were read through
    other_message: Message | None = None  # set when the photo carries a different message than the one asked

    @property
    def verdict(self) -> str:
        """``DETECTED``, ``marked, with a different message: 'X'`` or ``not detected``."""
        if self.detected:
            return "DETECTED"
        if self.other_message is not None:
            return f"marked, with a different message: {self.other_message!r}"
        return "not detected"

    def __str__(self) -> str:
        accuracy = "n/a" if self.bit_accuracy is None else f"{100 * self.bit_accuracy:.1f} %"
        where = "" if self.geometry == "as is" else f"  (read through: {self.geometry})"
        return (f"message: {self.message!r}  bit accuracy: {accuracy}  p-value: {self.p_value:.3g}  "
                f"{self.verdict} at FPR {self.fpr:g}{where}")


def verify(image: ImageInput, message: Message | None = None, key: str | bytes | None = None,
           fpr: float = DEFAULT_FPR, *, model=None, search: bool = False) -> VerifyResult | list[VerifyResult]:
    """Decode the watermark of ``image`` and test it at false-positive rate ``fpr``.

    With ``message`` the test is against that message's codeword (a binomial test of the matching
    bits), and a photo whose bits fit another message's codeword at least as well is not detected but
    reported with ``other_message`` (a neighbouring ID under the same key shares most bits); without one, against every message the schema can carry (BCH decoding, union bound).
    ``search=True`` (with a message) also looks for the mark through crops and rotations
    (``watermark.sync``; about 5 s per image on 2 CPU cores): the p-value is then the smaller of twice the plain
    one and 2 x (grid size) x the searched one, a union bound that keeps the stated FPR.
    A batch of B > 1 images gives a list of results.
    """
    if search and message is None:
        from .sync import n_hypotheses

        wm = _resolve_model(model)
        schema, grid = _schema(wm), n_hypotheses(wm.config.size)
        best = 2 * grid * payload.search_p_value(0, schema)
        raise PhotoshieldError(
            "verify(search=True) needs the message to test for: the search ranks crops and rotations by how many "
            f"bits match it, and without one even a perfect read through the best of the {grid:,} "
            f"geometries could not be told from chance below p = {best:.1g} (every one of the 2**{schema.payload_bits} "
            "messages at every geometry)")
    wm = _resolve_model(model)
    tensor, _ = _as_tensor(image)
    schema = _schema(wm)
    device = next(wm.parameters()).device
    tensor = tensor.to(device)
    with torch.no_grad():
        probabilities = torch.sigmoid(wm.decode(tensor)).cpu()
    results = []
    for index, row in enumerate(probabilities):
        found = payload.match(row, message=message, key=key, fpr=fpr, schema=schema)
        geometry = "as is"
        if search:
            found, geometry = _search(wm, tensor[index : index + 1], found, message, key, fpr, schema)
        results.append(VerifyResult(found.message, found.bit_accuracy, found.p_value, found.detected, float(fpr),
                                    found.errors, schema.n_bits, geometry, found.other_message))
    return results[0] if len(results) == 1 else results


def _search(wm, image: torch.Tensor, plain: payload.Match, message: Message, key, fpr: float,
            schema: payload.Schema) -> tuple[payload.Match, str]:
    """The plain read and the best re-synchronised read, judged together under one union bound."""
    from .sync import search_logits

    expected = payload.encode(message, key=key, schema=schema).to(image.device)
    signs = expected * 2 - 1

    def score(logits: torch.Tensor) -> torch.Tensor:  # matching bits, ties broken by the margins
        return ((logits > 0).float() == expected).float().sum(1) + 1e-3 * (signs * logits).clamp(-1, 1).mean(1)

    with torch.no_grad():
        result = search_logits(wm.decode, image, score, size=wm.config.size)
    searched = payload.match(torch.sigmoid(result.logits[0]).cpu(), message=message, key=key, fpr=fpr, schema=schema)
    p_plain = min(1.0, 2 * plain.p_value)
    p_searched = min(1.0, 2 * result.n_hypotheses * searched.p_value)
    best, geometry = (plain, "as is") if p_plain <= p_searched else (searched, result.geometry.describe(wm.config.size))
    p_value = min(p_plain, p_searched)
    return dataclasses.replace(best, p_value=p_value, detected=p_value <= fpr), geometry
