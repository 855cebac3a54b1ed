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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
from PIL import Image

from ..errors import PhotoshieldError
from ..image import ImageLike, check_image, to_pil, to_tensor
from . import binding, payload
from .payload import DEFAULT_FPR, Message, MessageTooLongError, PayloadError

__all__ = ["DEFAULT_FPR", "DEFAULT_PSNR", "DEFAULT_REFINE_STEPS", "MessageTooLongError", "PayloadError", "VerifyResult", "embed", "load", "verify"]

ImageInput = Union[ImageLike, str, os.PathLike]

_CACHE: dict[tuple[str, str], torch.nn.Module] = {}
DEFAULT_REFINE_STEPS = 60  # informed-embedding steps (0.3-0.7 s a photo on 2 CPU cores)
DEFAULT_PSNR = 40.0  # dB of the 8-bit marked copy when no strength is given


def load(name_or_path: str | os.PathLike = "watermark-diffmark", device: str | torch.device | None = None,
         verify: bool = True):
    """The watermark model: a registry name (default the shipped ``watermark-diffmark``) or a checkpoint path.

    A file is accepted when it is byte for byte the shipped model (registry sha256) or carries the
    tensor checksum that ``WatermarkModel.save`` writes and its weights match it; ``verify=False``
    loads older files of your own without either check. Cached per (name, device). A clear error
    says how to train or point at weights when they are missing.

    Args:
        name_or_path: a registry name or a ``.safetensors`` file.
        device: where to put the model; None for the best available.
        verify: check a file as described above.

    Returns:
        (WatermarkModel): the model, frozen and in eval mode (the same object on later calls).

    Raises:
        PhotoshieldError: the file is missing or is not a watermark checkpoint.
        ChecksumError: a file that is neither the shipped one nor self-checked.

    Examples:
        >>> from photoshield import watermark
        >>> model = watermark.load(device="cpu")  # the shipped watermark-diffmark
        >>> type(model).__name__, model.n_bits, model.config.size
        ('WatermarkModel', 96, 128)
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


def embed(image: ImageInput, message: Message, key: str | bytes | None = None, strength: float | None = None, *,
          psnr: float = DEFAULT_PSNR,
          model=None, steps: int | None = None, seed: int = 0, refine_steps: int = DEFAULT_REFINE_STEPS,
          refine_through: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
          bind: bool = True) -> torch.Tensor | Image.Image:
    """Watermark ``image`` (tensor (B, 3, H, W) / PIL / array / path) with ``message`` under ``key``.

    Returns the same kind it was given (PIL for PIL, else a tensor) at the input's own size.
    By default each photo gets the strongest mark whose 8-bit copy keeps ``psnr`` dB (40: invisible at
    2x on smooth skin and sky); an explicit ``strength`` scales the residual instead (1.0 gives about
    35 dB and reads through harsher attacks). ``steps``
    sets the DDIM sampling steps (default the model's, 4); ``seed`` makes the sampling repeatable.
    ``refine_steps`` adapts the sampled residual to this photo at the same image quality (informed
    embedding, ``WatermarkModel.refine``; 0 turns it off); ``refine_through`` adds differentiable
    attacks the mark must also survive, e.g. ``[attacks.get("vae", model=models.load("autoencoder-small"))]``.
    ``bind`` (default) scrambles the bits with a key drawn from ``key`` and the photo's own content tag
    (``watermark.binding``), so that the mark cannot be averaged out of several photos or copied onto another
    one; ``bind=False`` writes the unbound mark of older versions (verify it with ``bind=False``).

    Args:
        image: the photo(s): a tensor, a PIL image, a numpy array or a path.
        message: what to embed: text (up to 9 ASCII characters), bytes (up to 7) or an integer below 2**64.
        key: the owner's secret; the same key verifies the mark.
        strength: scales the residual (1.0 is about 35 dB); None to aim at ``psnr``.
        psnr: the PSNR in dB of the marked 8-bit copy when ``strength`` is None.
        model (WatermarkModel | str | None): a model, registry name or path; None for the shipped model.
        steps: DDIM sampling steps; None for the model's.
        seed: makes the sampling repeatable.
        refine_steps: informed-embedding steps (0: off).
        refine_through: differentiable attacks the refined mark must survive.
        bind: bind the mark to the photo's content.

    Shapes:
        - image: (B, 3, H, W) or (3, H, W) float in [0, 1] when a tensor; any size
        - output: (B, 3, H, W) float in [0, 1] at the input's size (a PIL image for a PIL input)

    Returns:
        The marked photo(s).

    Raises:
        MessageTooLongError: the message does not fit; the error says what does.

    Examples:
        >>> from photoshield import data, metrics, watermark
        >>> from photoshield.image import resize_to
        >>> photo = resize_to(data.sample("chelsea"), (128, 192))
        >>> marked = watermark.embed(photo, "ID-004217", key="my secret", refine_steps=0)  # 0: faster, less robust
        >>> marked.shape, round(float(metrics.psnr(photo, marked)))
        (torch.Size([1, 3, 128, 192]), 40)
        >>> watermark.verify(marked, message="ID-004217", key="my secret").detected
        True
    """
    wm = _resolve_model(model)
    tensor, kind = _as_tensor(image)
    schema = _schema(wm)
    device = next(wm.parameters()).device

    def marked(tags) -> torch.Tensor:
        if tags is None:
            bits = payload.encode(message, key=key, schema=schema)
        else:
            bits = torch.stack([payload.encode(message, key=binding.bound_key(key, tag), schema=schema) for tag in tags])
        generator = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            return wm.embed(tensor.to(device), bits.to(device), strength=1.0 if strength is None else float(strength),
                            steps=steps, generator=generator, refine_steps=int(refine_steps),
                            refine_through=tuple(refine_through),
                            psnr=float(psnr) if strength is None else None).to(tensor.device)

    if not bind:
        out = marked(None)
    else:
        tags, _ = binding.content_tag(tensor, key)
        out = marked(tags)
        # The mark itself may tip a tag bit that was near zero past the ones the verifier retries; then
        # bind to the marked photo's own tag instead (it does not move again under the same residual).
        after, reliability = binding.content_tag(out, key)
        if any(not _among(tag, binding.candidates(new, weak)) for tag, new, weak in zip(tags, after, reliability)):
            out = marked(after)
    return to_pil(out) if kind == "pil" else out


def _among(tag, tags) -> bool:
    return any(bool((tag == other).all()) for other in tags)


def _bound_keys(image: torch.Tensor, key) -> list[bytes]:
    """The keys a photo bound to its content may carry: one per candidate tag of ``image`` (1, 3, H, W)."""
    tags, reliability = binding.content_tag(image, key)
    return [binding.bound_key(key, tag) for tag in binding.candidates(tags[0], reliability[0])]


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found in one image.

    Args:
        message: the decoded message (None when no valid codeword is within reach).
        bit_accuracy: share of bits matching the expected (or nearest valid) codeword.
        p_value: the chance that an unmarked image matches this well.
        detected: ``p_value <= fpr``.
        fpr: the false-positive rate tested at.
        errors: bits that differ from that codeword.
        n_bits: bits the model carries.
        geometry: the crop or rotation the bits were read through (``search=True``), else "as is".
        other_message: the message a photo carries when it is not the one asked about.
        image_size: (height, width) of the photo read, in pixels.

    Examples:
        >>> from photoshield import data, watermark
        >>> from photoshield.image import resize_to
        >>> photo = resize_to(data.sample("chelsea"), (128, 192))
        >>> result = watermark.verify(photo, message="ID-004217", key="my secret")  # never marked
        >>> result.verdict, result.p_value > result.fpr
        ('not detected', True)
        >>> print(result)
        message: None  bit accuracy: ... %  p-value: ...  not detected at FPR 1e-06
    """

    message: Message | None  # the decoded message (None when no valid codeword is within reach)
    bit_accuracy: float | None  # bits matching the expected (or nearest valid) codeword
    p_value: float  # chance that an unmarked image matches this well
    detected: bool  # p_value <= fpr
    fpr: float
    errors: int | None
    n_bits: int
    geometry: str = "as is"  # with search=True: the crop or rotation the bits were read through
    other_message: Message | None = None  # set when the photo carries a different message than the one asked
    image_size: tuple[int, int] | None = None  # (height, width) of the photo read, in pixels

    def _crop(self) -> tuple[int, int, int, int] | None:
        """(side, grid size, top, left) of a found crop, from ``geometry`` (``sync.Geometry.describe``)."""
        found = re.fullmatch(r"crop of (\d+)/(\d+) side at \((\d+), (\d+)\)", self.geometry)
        return tuple(int(value) for value in found.groups()) if found else None

    @property
    def crop_box(self) -> tuple[int, int, int, int] | None:
        """Where this photo sits in the marked photo when the search found a crop: (left, top, right, bottom)
        in this photo's own pixels (the marked photo scaled as this copy is); None otherwise."""
        crop = self._crop()
        if crop is None or self.image_size is None:
            return None
        side, _, top, left = crop
        height, width = self.image_size
        x0, y0 = round(left * width / side), round(top * height / side)
        return x0, y0, x0 + width, y0 + height

    @property
    def marked_size(self) -> tuple[int, int] | None:
        """(width, height) of the marked photo at this photo's scale, when the search found a crop."""
        crop = self._crop()
        if crop is None or self.image_size is None:
            return None
        side, size, _, _ = crop
        height, width = self.image_size
        return round(width * size / side), round(height * size / side)

    @property
    def where(self) -> str:
        """The geometry in words, in this photo's pixels: ``"as is"``, ``"rotated by 5 degrees"`` or ``"a crop:
        this photo is x 12-203, y 8-199 of the marked photo (about 220 x 230 px at this scale, 87 % of each side)"``."""
        box, size, crop = self.crop_box, self.marked_size, self._crop()
        if box is not None and size is not None and crop is not None:
            return (f"a crop: this photo is x {box[0]}-{box[2]}, y {box[1]}-{box[3]} of the marked photo "
                    f"(about {size[0]} x {size[1]} px at this scale, {100 * crop[0] / crop[1]:.0f} % of each side)")
        if self.geometry.startswith("rotation by "):
            return "rotated by " + self.geometry[len("rotation by "):]
        return self.geometry

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
        where = "" if self.geometry == "as is" else f"  (read as {self.where})"
        return (f"message: {self.message!r}  bit accuracy: {accuracy}  p-value: {self.p_value:.3g}  "
                f"{self.verdict} at FPR {self.fpr:g}{where}")


def verify(image: ImageInput, message: Message | None = None, key: str | bytes | None = None,
           fpr: float = DEFAULT_FPR, *, model=None, search: bool = False,
           bind: bool = True) -> VerifyResult | list[VerifyResult]:
    """Decode the watermark of ``image`` and test it at false-positive rate ``fpr``.

    With ``message`` the test is against that message's codeword (a binomial test of the matching
    bits), and a photo whose bits fit another message's codeword at least as well is not detected but
    reported with ``other_message`` (a neighbouring ID under the same key shares most bits); without one, against every message the schema can carry (BCH decoding, union bound).
    ``search=True`` (with a message) also looks for the mark through crops and rotations: FFT registration of
    the read-out (``watermark.register``; a fraction of a second on 2 CPU cores) picks a geometry of the fixed
    grid of ``watermark.sync``, and the p-value is then the smaller of twice the plain one and
    2 x (grid size) x the searched one, a union bound that keeps the stated FPR.
    ``bind`` (default) reads a mark bound to the photo's content (what ``embed`` writes by default): the
    bits are judged under each of the ``2**binding.FLIP_BITS`` keys that the photo's content tag may give
    after codecs and resizing, and the p-value is multiplied by that count; a mark copied from another photo
    or averaged from several is read under the wrong keys and is not detected. ``bind=False`` reads the
    unbound mark of older versions.
    A batch of B > 1 images gives a list of results.

    Args:
        image: the copy to check: a tensor, a PIL image, a numpy array or a path.
        message: the message to test for; None to test for any message.
        key: the key the mark was embedded with.
        fpr: the false-positive rate: the chance that an unmarked photo is called detected.
        model (WatermarkModel | str | None): a model, registry name or path; None for the shipped model.
        search: also look through crops and rotations (needs ``message``).
        bind: read a mark bound to the photo's content.

    Shapes:
        - image: (B, 3, H, W) or (3, H, W) float in [0, 1] when a tensor; any size

    Returns:
        The result, a :class:`VerifyResult`; a list of B of them for a batch.

    Raises:
        PhotoshieldError: ``search=True`` without a message.
        PayloadError: an ``fpr`` outside (0, 1).

    Examples:
        >>> from photoshield import data, watermark
        >>> from photoshield.image import resize_to
        >>> photo = resize_to(data.sample("chelsea"), (128, 192))
        >>> marked = watermark.embed(photo, "ID-004217", key="my secret", refine_steps=0)
        >>> result = watermark.verify(marked, message="ID-004217", key="my secret", fpr=1e-6)
        >>> result.detected, result.message, result.p_value < 1e-6
        (True, 'ID-004217', True)
        >>> watermark.verify(marked, message="ID-004217", key="another key").detected
        False
    """
    if search and message is None:
        from .sync import n_hypotheses

        wm = _resolve_model(model)
        schema, grid = _schema(wm), n_hypotheses(wm.config.size)
        best = 2 * grid * (2**binding.FLIP_BITS if bind else 1) * payload.search_p_value(0, schema)
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
        keys = _bound_keys(tensor[index : index + 1], key) if bind else [key]
        found = payload.match_any(row, keys, message=message, fpr=fpr, schema=schema)
        geometry = "as is"
        if search:
            found, geometry = _search(wm, tensor[index : index + 1], found, message, key, fpr, schema, bind)
        results.append(VerifyResult(found.message, found.bit_accuracy, found.p_value, found.detected, float(fpr),
                                    found.errors, schema.n_bits, geometry, found.other_message,
                                    image_size=(int(tensor.shape[-2]), int(tensor.shape[-1]))))
    return results[0] if len(results) == 1 else results


def _search(wm, image: torch.Tensor, plain: payload.Match, message: Message, key, fpr: float,
            schema: payload.Schema, bind: bool = True) -> tuple[payload.Match, str]:
    """The plain read and the best re-synchronised read, judged together under one union bound.

    Each geometry's canvas (the copy put back where it came from) has its own content tag, so a bound mark
    is scored there against the codewords of that canvas's candidate keys.
    """
    import numpy as np

    from .register import register_logits
    from .sync import n_hypotheses, search_logits

    unbound = np.asarray(payload.encode(message, key=key, schema=schema).numpy(), dtype=np.uint8) ^ \
        payload.keystream(key, schema.n_bits, schema.version)
    streams: dict[bytes, np.ndarray] = {}

    def expected(bound: bytes) -> np.ndarray:
        if bound not in streams:
            streams[bound] = unbound ^ payload.keystream(bound, schema.n_bits, schema.version)
        return streams[bound]

    def codewords(canvases: torch.Tensor) -> torch.Tensor:  # (B, K, n_bits) the codewords each canvas may carry
        if not bind:
            return torch.from_numpy(expected(binding.key_bytes(key)).astype(np.float32))[None, None]
        tags, reliability = binding.content_tag(canvases, key)
        words = [[expected(binding.bound_key(key, tag)) for tag in binding.candidates(t, r)] for t, r in zip(tags, reliability)]
        return torch.from_numpy(np.asarray(words, dtype=np.float32))

    def score(logits: torch.Tensor, canvases: torch.Tensor) -> torch.Tensor:  # matching bits, ties broken by margins
        words = codewords(canvases).to(logits.device)
        signs = words * 2 - 1
        hard = (logits > 0).float()[:, None]
        values = (hard == words).float().sum(2) + 1e-3 * (signs * logits[:, None]).clamp(-1, 1).mean(2)
        return values.max(dim=1).values

    # No geometry can beat a plain read that is already past the best any searched read could score (every bit
    # right, charged for the grid and the keys): the search would not change the verdict or the p-value.
    grid = n_hypotheses(wm.config.size)
    keys = 2**binding.FLIP_BITS if bind else 1
    if 2 * plain.p_value <= 2 * grid * keys * payload.binomial_p_value(schema.n_bits, schema.n_bits):
        return dataclasses.replace(plain, p_value=2 * plain.p_value, detected=2 * plain.p_value <= fpr), "as is"
    with torch.no_grad():
        if wm.decoder.linear is not None:
            result = register_logits(wm.decoder, image, score, codewords, size=wm.config.size)
        else:  # no linear read-out to register against: decode the grid
            result = search_logits(wm.decode, image, score, size=wm.config.size)
    if result.geometry.kind == "none":  # the plain read again, charged more: the plain verdict stands
        return dataclasses.replace(plain, p_value=min(1.0, 2 * plain.p_value),
                                   detected=min(1.0, 2 * plain.p_value) <= fpr), "as is"
    keys = _bound_keys(result.canvas, key) if bind else [key]
    # at the rate the union bound leaves it, so that the rival-message check runs only when the read could count
    searched = payload.match_any(torch.sigmoid(result.logits[0]).cpu(), keys, message=message,
                                 fpr=min(0.5, fpr / (2 * result.n_hypotheses)), schema=schema)
    p_plain = min(1.0, 2 * plain.p_value)
    p_searched = min(1.0, 2 * result.n_hypotheses * searched.p_value)
    best, geometry = (plain, "as is") if p_plain <= p_searched else (searched, result.geometry.describe(wm.config.size))
    p_value = min(p_plain, p_searched)
    return dataclasses.replace(best, p_value=p_value, detected=p_value <= fpr), geometry
