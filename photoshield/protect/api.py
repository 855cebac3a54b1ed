"""``protect(image, method=...)``: one call from a photo to a protected photo and a report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from ..errors import PhotoshieldError
from ..image import quantize, to_pil, to_tensor
from .objective import Objective
from .optim import PGDConfig, rms_for_psnr, run_pgd
from .shaping import faceshield_shaper

# Each preset: engine steps, signed-step size as a fraction of epsilon, shaping, and the
# transformations sampled each step (EOT) for robustness. A quarter of epsilon per step
# (FaceShield uses 1/255 at 12/255) gave the largest identity distance in a small sweep on
# one bundled photo; Madry's 2.5 * epsilon / steps left most of the budget unused.
# Shaping is off: on the bundled faces it moved identity less at the same budget and the
# same PSNR, also after JPEG q50 (benchmarks/bench_facial_protection.py); shaping=True turns it on.
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"steps": 30, "step_fraction": 0.25, "shaping": False, "eot": (), "momentum": 0.0},
    "standard": {"steps": 60, "step_fraction": 0.25, "shaping": False, "eot": ("jpeg-diff:quality=75",), "momentum": 0.0},
    "strong": {
        "steps": 150,
        "step_fraction": 0.25,
        "shaping": False,
        "eot": ("jpeg-diff:quality=75", "jpeg-diff:quality=50", "resize:scale=0.75", "blur:sigma=1"),
        "momentum": 0.5,
    },
    # The cheap purifications of the literature (Hönig et al. 2025) in the expectation: Gaussian noise then
    # differentiable JPEG, total-variation smoothing, noisy bicubic upscaling, next to plain JPEG 75.
    "robust": {
        "steps": 100,
        "step_fraction": 0.25,
        "shaping": False,
        "eot": ("jpeg-diff:quality=75", "noise-jpeg:strength=0.5,codec=diffjpeg", "tv:strength=0.5",
                "noisy-upscale:strength=0.5"),
        "momentum": 0.5,
    },
}

#: The pixel cap of a PSNR budget given without ``epsilon``.
DEFAULT_PSNR_CAP = 12 / 255
#: The budget of a method when the caller gives neither ``epsilon`` nor ``psnr``: ``psnr`` (dB over the
#: method's quality region, the face boxes for ``facial``) with ``epsilon`` capping single pixels, or an
#: L_inf ``epsilon`` alone. At the same face PSNR, a PSNR budget moved identity further than an L_inf one, on
#: the models attacked and on SFace, which is never attacked (benchmarks/bench_facial_choices.py).
DEFAULT_BUDGETS: dict[str, dict[str, float]] = {"facial": {"psnr": 35.0, "epsilon": DEFAULT_PSNR_CAP}}
DEFAULT_EPSILON = 8 / 255
#: Under a PSNR budget the steps follow the normalised gradient; each is this share of the budget.
PSNR_STEP_FRACTION = 0.15


def resolve_budget(method: str, epsilon: float | None, psnr: float | None) -> tuple[float, float | None]:
    """``(epsilon, psnr)`` for a call: what was given, else the method's :data:`DEFAULT_BUDGETS`.

    ``epsilon`` alone is an L_inf budget; with ``psnr`` it caps single pixels.

    Examples:
        >>> from photoshield.protect.api import resolve_budget
        >>> [round(e * 255) for e, _ in (resolve_budget("facial", None, None), resolve_budget("encoder", None, None))]
        [12, 8]
        >>> resolve_budget("facial", 8 / 255, None)[1] is None   # an explicit epsilon: a plain L_inf budget
        True
    """
    if epsilon is None and psnr is None:
        budget = DEFAULT_BUDGETS.get(method, {"epsilon": DEFAULT_EPSILON})
        return budget["epsilon"], budget.get("psnr")
    return (DEFAULT_PSNR_CAP if epsilon is None else epsilon), psnr


ObjectiveBuilder = Callable[..., Objective]
_METHODS: dict[str, ObjectiveBuilder] = {}


def register_method(name: str) -> Callable[[ObjectiveBuilder], ObjectiveBuilder]:
    """Register ``builder(images, **options) -> Objective`` as a protection method.

    :func:`protect` calls the builder once per batch with the clean images on the working device and
    the options it does not use itself, then runs the shared engine on the :class:`Objective`.

    Args:
        name: the ``method=`` name (re-registering a name replaces it).

    Returns:
        The decorator; it returns the builder unchanged.

    Examples:
        >>> import torch
        >>> from photoshield.protect import Objective, protect, register_method
        >>> @register_method("darken")
        ... def darken(images, **options):
        ...     return Objective(loss_fn=lambda x: x.mean(dim=(1, 2, 3)))  # lower is better
        >>> photo = torch.full((1, 3, 16, 16), 0.5)
        >>> result = protect(photo, method="darken", steps=4, device="cpu", progress=False)
        >>> result.report["status"], round(float(result.image.mean()) * 255, 1)
        ('protected', 119.5)
    """

    def decorate(builder: ObjectiveBuilder) -> ObjectiveBuilder:
        _METHODS[name] = builder
        return builder

    return decorate


def methods() -> list[str]:
    """Names of the protection methods.

    Returns:
        The names :func:`protect` accepts as ``method=``, sorted.

    Examples:
        >>> from photoshield.protect import methods
        >>> methods()
        ['attention', 'deformation', 'encoder', 'facial']
    """
    return sorted(_METHODS)


@register_method("facial")
def _facial(images: torch.Tensor, **options: Any) -> Objective:
    from .facial import FacialProtection

    return FacialProtection(**options).objective(images)


@register_method("encoder")
def _encoder(images: torch.Tensor, vae: Any = None, editor: Any = None, editor_kind: str | None = None, **options: Any) -> Objective:
    from .encoder import EncoderProtection

    if vae is None:
        if editor is None:
            raise PhotoshieldError(
                "the encoder method needs a latent-diffusion VAE: pass editor=PATH_OR_HUB_ID (a diffusers "
                "pipeline folder, or a registered editor such as editor-unet-small) or vae=AutoencoderKL "
                "(CLI: --editor PATH)"
            )
        from ..models.diffusion import KINDS, as_editor

        kinds = (editor_kind,) if editor_kind else KINDS
        vae = as_editor(editor, kinds, device=images.device, owner="encoder").vae
    return Objective(loss_fn=EncoderProtection(vae, **options).objective(images))


@register_method("attention")
def _attention(images: torch.Tensor, **options: Any) -> Objective:
    from .attention import attention_objective

    return attention_objective(images, **options)


@register_method("deformation")
def _deformation(images: torch.Tensor, **options: Any) -> Objective:
    from .deformation import deformation_objective

    return deformation_objective(images, **options)


@dataclass
class ProtectionResult:
    """The protected image (quantised to 8 bits, as it will be saved), its perturbation, a report, and the file
    it was written to when it was written.

    Args:
        image: the protected images.
        delta: ``image`` minus the clean images.
        report: what was done: ``method``, ``status`` (``protected``, ``partly protected`` or
            ``unchanged``, with ``reason``), ``psnr_db``, ``ssim``, ``linf_255``, steps, timings and the
            method's own measures (``clean``, ``protected``).
        path: the file written by :func:`protect_file`, else None.

    Shapes:
        - image: (B, 3, H, W) float32 in [0, 1], on the 8-bit grid
        - delta: (B, 3, H, W)

    Examples:
        >>> import torch
        >>> from photoshield.protect import ProtectionResult
        >>> result = ProtectionResult(image=torch.zeros(1, 3, 4, 6), delta=torch.zeros(1, 3, 4, 6))
        >>> result.pil().size, result.path is None
        ((6, 4), True)
    """

    image: torch.Tensor
    delta: torch.Tensor
    report: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where the protected photo was written (``protect_file``), else None

    def pil(self) -> Image.Image:
        """The protected image as a PIL image (first of the batch)."""
        return to_pil(self.image[:1])

    def summary(self, image: int = 0) -> str:
        """Image ``image``'s protection in plain language: per face, which models still recognise it, and the
        PSNR (see :func:`photoshield.protect.verdicts.summary`)."""
        from .verdicts import summary

        return summary(self.report, image)


def _as_tensor(image: Any) -> torch.Tensor:
    if isinstance(image, (str, os.PathLike)):
        from ..io import read_image

        return read_image(image)
    return to_tensor(image)


def _config(preset: str, epsilon: float, steps: int | None, seed: int, progress: bool, overrides: dict[str, Any],
            psnr: float | None = None) -> tuple[PGDConfig, bool]:
    if preset not in PRESETS:
        raise PhotoshieldError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not 0 < epsilon <= 1:
        raise PhotoshieldError(f"epsilon is in [0, 1] pixel units (8/255 = {8 / 255:.4f}); got {epsilon}")
    if psnr is not None and not 20 <= psnr <= 60:
        raise PhotoshieldError(f"psnr is the quality floor in dB over the protected region, 20 to 60 (e.g. 35); got {psnr:g}")
    settings = dict(PRESETS[preset])
    shaping = bool(overrides.pop("shaping", settings.pop("shaping")))
    settings.pop("shaping", None)
    eot = overrides.pop("eot", settings.pop("eot"))
    settings.pop("eot", None)
    if eot:
        from .. import attacks

        eot = tuple(attacks.get(spec) if isinstance(spec, str) else spec for spec in eot)
    fraction = overrides.pop("step_fraction", settings.pop("step_fraction"))
    settings["step_size"] = epsilon * fraction
    if psnr is not None:  # an rms budget over the method's region; epsilon caps single pixels
        settings.update(norm="rms", linf_cap=epsilon, step_size=rms_for_psnr(psnr) * PSNR_STEP_FRACTION)
        epsilon = rms_for_psnr(psnr)
    settings.update({k: overrides.pop(k) for k in list(overrides) if k in PGDConfig.__dataclass_fields__})
    if steps is not None:
        settings["steps"] = steps
    config = PGDConfig(epsilon=epsilon, seed=seed, progress=progress, eot=eot, **settings)
    return config, shaping


def protect(
    image: Any,
    method: str = "facial",
    epsilon: float | None = None,
    steps: int | None = None,
    preset: str = "standard",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    psnr: float | None = None,
    **options: Any,
) -> ProtectionResult:
    """Protect ``image`` (tensor, PIL image or path) with ``method`` inside a budget.

    The budget is an L_inf ``epsilon``, or a quality floor ``psnr`` in dB over the method's region (the face
    boxes for ``facial``, else the whole photo) with ``epsilon`` capping single pixels; with neither, the
    method's default (:data:`DEFAULT_BUDGETS`: face PSNR 35 dB for ``facial``, 8/255 for the others).

    Engine settings (``norm``, ``step_size``, ``schedule``, ``momentum``, ``eot``,
    ``shaping``, ...) override the preset; other options go to the method.
    ``report["status"]`` is ``protected``, ``partly protected`` or ``unchanged`` (with ``report["reason"]``):
    an image the method cannot protect, or whose perturbation does not lower the objective, is returned as it was.

    Args:
        image: the photo(s): a tensor, a PIL image or a path (nothing is written; see :func:`protect_file`).
        method: one of :func:`methods`: ``facial`` (face recognition), ``encoder`` (latent-diffusion
            editors; needs ``editor=`` or ``vae=``), ``attention`` (editors; needs ``editor=``),
            ``deformation`` (promptable segmentation).
        epsilon: the L_inf budget in [0, 1] pixel units (8/255: no pixel moves more than 8 levels); with
            ``psnr``, the cap on single pixels.
        steps: engine steps; None for the preset's (scaled by the method's ``Objective.steps_scale``).
        preset: ``light``, ``standard``, ``strong`` or ``robust`` (:data:`PRESETS`).
        seed: makes the run repeatable.
        device: where to compute; None for the best available.
        progress: show a progress bar.
        psnr: the quality floor in dB (20-60) over the method's region; the perturbation goes where it
            moves the objective most.
        **options: engine settings (:class:`PGDConfig` fields, ``shaping``, ``step_fraction``) and the
            method's own options (e.g. ``models=``, ``editor=``, ``segmenter=``).

    Shapes:
        - image: (B, 3, H, W) or (3, H, W) float in [0, 1] when a tensor
        - output.image, output.delta: (B, 3, H, W)

    Returns:
        The result, a :class:`ProtectionResult`.

    Raises:
        PhotoshieldError: an unknown method or preset, ``epsilon`` outside (0, 1] or ``psnr`` outside [20, 60].

    Examples:
        >>> from photoshield import data
        >>> from photoshield.image import resize_to
        >>> from photoshield.protect import protect
        >>> face = resize_to(data.sample("obama")[..., :256, 100:356], (112, 112))
        >>> result = protect(face, method="facial", models=["dlib-resnet"], judges=(), steps=2,
        ...                  device="cpu", progress=False)  # a real run: the default ensemble, 60 steps
        >>> result.report["status"], result.report["faces"], result.report["linf_255"] <= 12
        ('protected', 1, True)
        >>> result.report["budget"]
        'PSNR >= 35 dB over the face boxes, no pixel beyond 12/255'
    """
    if method not in _METHODS:
        raise PhotoshieldError(f"unknown protection method {method!r}; choose one of {', '.join(methods())}")
    from ..metrics import psnr as photo_psnr, ssim
    from ..models import default_device

    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    images = _as_tensor(image).to(device)
    epsilon, psnr = resolve_budget(method, epsilon, psnr)
    chosen = {key for key in options if key in PGDConfig.__dataclass_fields__}  # the caller's own engine settings
    config, shaping = _config(preset, epsilon, steps, seed, progress, options, psnr)
    config.description = "steps"  # the bar of one photo's optimisation (a batch's own bar counts photos)
    started = time.perf_counter()
    objective = _METHODS[method](images, **options)
    for key, value in objective.engine.items():
        if key not in chosen:
            setattr(config, key, value)
    if objective.target_loss is not None and config.target_loss is None:
        config.target_loss = objective.target_loss
    if steps is None and objective.steps_scale != 1.0:
        config.steps = max(1, round(config.steps * objective.steps_scale))

    report: dict[str, Any] = {"method": method, "preset": preset, "epsilon_255": round(epsilon * 255, 3), "seed": seed,
                              "budget": _describe_budget(epsilon, psnr, objective.region is not None, method)}
    if psnr is not None:
        report["psnr_floor_db"] = psnr
    report.update(objective.info)
    skip = objective.skip if objective.skip is not None else torch.zeros(images.shape[0], dtype=torch.bool)
    if bool(skip.all()):
        report.update(status="unchanged", reason=_skip_reason(method), seconds=round(time.perf_counter() - started, 2))
        return ProtectionResult(image=images, delta=torch.zeros_like(images), report=report)

    result = run_pgd(objective.loss_fn, images, config, mask=objective.mask, shaping=faceshield_shaper() if shaping else None,
                     region=objective.region)
    delta = result.delta * (~skip.to(device)).view(-1, 1, 1, 1)
    protected = quantize_within_budget(images, delta, epsilon)
    if psnr is not None:
        protected = _keep_psnr_floor(images, protected, psnr, objective.region)
    with torch.no_grad():  # both judged the same way (no EOT, no jitter): the clean photo and the result
        clean_loss = objective.loss_fn(images).float()
        final_loss = objective.loss_fn(protected)
    # A perturbation that rounds away or does not lower the objective protects nothing: keep the photo as it was.
    moved = ((protected - images).flatten(1).abs().amax(1) > 0) & (final_loss.detach().float() < clean_loss)
    unmoved = ~moved.to(skip.device) & ~skip
    if bool(unmoved.any()):
        protected = torch.where(unmoved.to(device).view(-1, 1, 1, 1), images, protected)
        with torch.no_grad():
            final_loss = objective.loss_fn(protected)
    done = ~skip & ~unmoved
    report.update(
        status="unchanged" if not bool(done.any()) else "protected" if bool(done.all()) else "partly protected",
        steps=result.steps_run,
        interrupted=result.interrupted,
        early_stopped=result.early_stopped,
        objective_before=[round(v, 5) for v in clean_loss.tolist()],
        objective_after=[round(v, 5) for v in final_loss.tolist()],
        psnr_db=[round(v, 2) for v in photo_psnr(images, protected).tolist()],
        ssim=[round(v, 4) for v in ssim(images, protected).tolist()],
        linf_255=round(float((protected - images).abs().max() * 255), 3),
        seconds=round(time.perf_counter() - started, 2),
        seconds_per_step=round(result.seconds / max(result.steps_run, 1), 4),
    )
    if objective.measure is not None:
        report["clean"] = objective.measure(images)
        report["protected"] = objective.measure(protected)
    reasons = []
    if bool(skip.any()):
        report["skipped_images"] = skip.nonzero().flatten().tolist()
        reasons.append(_skip_reason(method))
    if bool(unmoved.any()):
        report["unchanged_images"] = unmoved.nonzero().flatten().tolist()
        reasons.append(f"the optimisation did not lower the objective within epsilon {epsilon * 255:g}/255 "
                       f"in {result.steps_run} steps (a larger epsilon, more steps or another preset may)")
    if reasons:
        report["reason"] = "; ".join(reasons)
    return ProtectionResult(image=protected, delta=protected - images, report=report)


def quantize_within_budget(images: torch.Tensor, delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Round ``images + delta`` to the 8-bit grid it will be saved on without leaving the L_inf budget.

    For images already on the grid the change is clamped to whole levels (floor of
    epsilon * 255), so saving as PNG keeps the budget exactly.
    """
    on_grid = bool(torch.equal(quantize(images), images))
    limit = torch.floor(torch.tensor(epsilon * 255 + 1e-4)).item() / 255 if on_grid else epsilon
    rounded = quantize(images + delta) if on_grid else (images + delta).clamp(0, 1)
    return (images + (rounded - images).clamp(-limit, limit)).clamp(0, 1)


def _keep_psnr_floor(images: torch.Tensor, protected: torch.Tensor, psnr: float, region: torch.Tensor | None) -> torch.Tensor:
    """Shrink any image whose 8-bit rounding took its region's PSNR below ``psnr`` until it is back above."""
    from ..metrics import region_psnr

    whole = torch.ones_like(images[:, :1])
    region = whole if region is None else region.to(images).expand_as(whole)
    measured = region.flatten(1).amax(1) > 0.5  # images without a region (no face) are left as they are
    region = torch.where(measured.view(-1, 1, 1, 1), region, whole)  # (measured over the photo, never checked)
    for _ in range(20):
        low = measured & (region_psnr(images, protected, region) < psnr)
        if not bool(low.any()):
            break
        shrunk = quantize((images + 0.97 * (protected - images)).clamp(0, 1))
        protected = torch.where(low.view(-1, 1, 1, 1), shrunk, protected)
    return protected


def _describe_budget(epsilon: float, psnr: float | None, has_region: bool, method: str) -> str:
    if psnr is None:
        return f"no pixel beyond {epsilon * 255:g}/255"
    where = ("the face boxes" if method == "facial" else "the protected region") if has_region else "the photo"
    return f"PSNR >= {psnr:g} dB over {where}, no pixel beyond {epsilon * 255:g}/255"


def _skip_reason(method: str) -> str:
    if method == "facial":
        return "no face found: the facial method changes nothing; try method='encoder' or another method"
    return "the method found nothing to protect"
