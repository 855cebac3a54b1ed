"""Purification attacks: what someone does on purpose to strip a protective perturbation.

The published record (Hönig et al., ICLR 2025; GrIDPure, CVPR 2024; IMPRESS, NeurIPS 2023) is that
small adversarial perturbations are undone by cheap filters and by a short trip through a
generative model. These attacks reproduce those purifiers so reports can show a protection after
them. Every one keeps the image size, has the usual ``strength`` knob s in [0, 1] (range in each
class docstring, ``cls.strength_range``) and takes ``seed=`` or a ``torch.Generator`` when it is
randomised.

==================  ==========================================================  ================================
name                what it does                                                differentiable
==================  ==========================================================  ================================
``noise-jpeg``      Gaussian noise, then a JPEG round trip                      ``codec=diffjpeg``, or BPDA [1]_
``median-blur``     median filter (in :mod:`.distortions`; in the grid)         yes (subgradient)
``bilateral``       edge-preserving bilateral filter (kornia)                   yes
``nlm``             non-local means (OpenCV ``fastNlMeansDenoisingColored``)    BPDA only [1]_
``tv``              total-variation minimisation by gradient descent            yes (steps unrolled)
``noisy-upscale``   Gaussian noise, downscale, upscale                          bicubic / bilinear: yes
``impress``         IMPRESS: make the autoencoder round trip consistent         no
``diffpure``        DiffPure: noise the latents to a small t, denoise back      no
``gridpure``        GrIDPure: DiffPure on overlapping tiles, blended            no
==================  ==========================================================  ================================

.. [1] ``straight_through=true``: the gradient passes the non-differentiable step unchanged (BPDA).

"Differentiable" means gradients reach the input, so a protection engine can optimise through
the attack (expectation over transformations). The model purifiers default to the models trained
here (``autoencoder-small``, ``editor-unet-small``) and take any diffusers ``AutoencoderKL`` or
Stable Diffusion img2img pipeline (object, photoshield ``Editor``, folder or hub id) as ``model=``.
Each model purifier keeps what it did in ``last_report``.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from .base import Attack, AttackError, randn, register
from .codecs import JPEG, DiffJPEG
from .regeneration import VAERoundTrip, draw_seed, resolve_autoencoder, resolve_editor

__all__ = [
    "Bilateral",
    "DiffPure",
    "GrIDPure",
    "Impress",
    "NoiseJPEG",
    "NoisyUpscale",
    "NonLocalMeans",
    "TotalVariation",
    "impress_losses",
    "tv_denoise",
]


def _gaussian(images: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """``images`` plus N(0, sigma^2) noise drawn from ``generator``."""
    if sigma <= 0:
        return images
    return images + sigma * randn(images.shape, generator, images.device).to(images.dtype)


@register("noise-jpeg", "noisy-jpeg")
class NoiseJPEG(Attack):
    """Gaussian noise of std ``sigma``, clipped to [0, 1], then a JPEG round trip at ``quality`` (Hönig et al. 2025).

    Differentiable with ``codec=diffjpeg``, or with ``straight_through=true`` (the real codec passes
    gradients unchanged). Randomised. Registered as ``noise-jpeg`` (alias ``noisy-jpeg``).

    Keyword Args:
        sigma (float): in [0, 1] pixel units (default 0.05); ``strength`` maps it 0 -> 0.1.
        quality (int): 1-100 (default 75); ``strength`` maps it 95 -> 50.
        codec (str): "jpeg" (libjpeg, 4:2:0; default) or "diffjpeg" (kornia's differentiable JPEG).
        straight_through (bool): pass gradients through the real codec unchanged (BPDA).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> purify = attacks.NoiseJPEG(strength=0.5, seed=0)
        >>> purify.describe(), purify(torch.rand(1, 3, 32, 32)).shape
        ('noise-jpeg:sigma=0.05,quality=72,seed=0', torch.Size([1, 3, 32, 32]))
        >>> attacks.NoiseJPEG(codec="diffjpeg").differentiable
        True
    """

    defaults = {"sigma": 0.05, "quality": 75, "codec": "jpeg", "straight_through": False}
    strength_range = {"sigma": (0.0, 0.1), "quality": (95, 50)}
    bounds = {"sigma": (0.0, 1.0), "quality": (1, 100)}
    choices = {"codec": ("jpeg", "diffjpeg")}
    randomized = True

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return self.params["codec"] == "diffjpeg" or bool(self.params["straight_through"])

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noisy = _gaussian(images, self.params["sigma"], generator).clamp(0.0, 1.0)
        if self.params["codec"] == "diffjpeg":
            return DiffJPEG(quality=float(self.params["quality"]))(noisy)
        return JPEG(quality=self.params["quality"], straight_through=self.params["straight_through"])(noisy)


@register("bilateral", "bilateral-filter")
class Bilateral(Attack):
    """Edge-preserving bilateral filter (kornia ``bilateral_blur``, L1 colour distance, reflect border).

    A neighbour weighs ``exp(-r^2 / (2 sigma_space^2)) * exp(-d^2 / (2 sigma_color^2))`` for a
    distance of ``r`` pixels and a colour difference ``d`` (sum over channels, [0, 1] units), over a
    window of ``2 * ceil(2 * sigma_space) + 1`` pixels. ``sigma_color`` >= 0 (default 0.1; 0 is the
    identity), ``sigma_space`` in pixels (default 1.5); ``strength`` maps sigma_color 0 -> 0.3 and
    sigma_space 1 -> 3. Differentiable. Registered as ``bilateral`` (alias ``bilateral-filter``).

    Keyword Args:
        sigma_color (float): colour scale in [0, 1] units (default 0.1; 0 is the identity).
        sigma_space (float): spatial scale in pixels (default 1.5).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> edge = torch.zeros(1, 3, 16, 16)
        >>> edge[..., 8:] = 1.0
        >>> noisy = (edge + 0.05 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        >>> smooth = attacks.Bilateral(sigma_color=0.2, sigma_space=2)(noisy)
        >>> bool((smooth - edge).abs().mean() < (noisy - edge).abs().mean())  # less noise, the edge kept
        True
    """

    defaults = {"sigma_color": 0.1, "sigma_space": 1.5}
    strength_range = {"sigma_color": (0.0, 0.3), "sigma_space": (1.0, 3.0)}
    bounds = {"sigma_color": (0.0, 10.0), "sigma_space": (0.1, 20.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigma_color, sigma_space = self.params["sigma_color"], self.params["sigma_space"]
        height, width = images.shape[-2:]
        radius = min(math.ceil(2 * sigma_space), min(height, width) - 1)  # reflect padding must fit
        if sigma_color <= 0 or radius < 1:
            return images
        size = 2 * radius + 1
        return kornia.filters.bilateral_blur(images, (size, size), sigma_color, (sigma_space, sigma_space))


def _odd(value: int) -> int:
    return value | 1


@register("nlm", "non-local-means")
class NonLocalMeans(Attack):
    """Non-local means denoising (OpenCV ``fastNlMeansDenoisingColored``: luminance and colour in Lab).

    ``h`` is the filter strength in 0-255 units for both luminance and colour (default 10; 0 is the
    identity; about the noise std it removes); ``strength`` maps it 0 -> 20. ``template`` (default 7)
    and ``search`` (default 21) are the odd patch and search window sides. Works on the 8-bit image,
    like a saved file. Needs OpenCV (the ``baselines`` extra, ``pip install "photoshield[baselines]"``,
    or ``pip install opencv-python-headless``); without it the call raises an AttackError saying so.
    Not differentiable; ``straight_through=true`` passes gradients through unchanged (BPDA).
    Registered as ``nlm`` (alias ``non-local-means``).

    Keyword Args:
        h (float): filter strength in 0-255 units (default 10); ``strength`` maps it 0 -> 20.
        template (int): odd patch side, 3-15 (default 7).
        search (int): odd search window side, 3-51 (default 21).
        straight_through (bool): pass gradients through unchanged (BPDA).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> from photoshield import attacks
        >>> nlm = attacks.get("nlm", strength=0.75, template=4)  # even sides round up
        >>> nlm.describe(), nlm.differentiable
        ('nlm:h=15,template=5', False)
    """

    defaults = {"h": 10.0, "template": 7, "search": 21, "straight_through": False}
    strength_range = {"h": (0.0, 20.0)}
    bounds = {"h": (0.0, 100.0), "template": (3, 15), "search": (3, 51)}

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return bool(self.params["straight_through"])

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        params["template"], params["search"] = _odd(params["template"]), _odd(params["search"])
        return params

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        h = self.params["h"]
        if h <= 0:
            return images
        try:
            import cv2
        except ImportError:
            raise AttackError(
                "nlm: needs OpenCV for non-local means; install the baselines extra "
                '(pip install "photoshield[baselines]") or opencv-python-headless'
            ) from None
        array = images.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        template, search = self.params["template"], self.params["search"]
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in array]  # OpenCV's channel order
        out = np.stack([cv2.fastNlMeansDenoisingColored(im, None, h, h, template, search)[..., ::-1] for im in bgr])
        result = torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255.0
        if self.params["straight_through"]:
            result = images + (result - images).detach()
        return result


def tv_denoise(images: torch.Tensor, weight: float, steps: int, eps: float = 0.01) -> torch.Tensor:
    """Approximately minimise ``0.5 * ||x - y||^2 + weight * TV(x)`` over x, starting from y = ``images``.

    ``TV(x) = sum over pixels of sqrt(|dx|^2 + |dy|^2 + eps^2)``, with forward differences summed over
    the colour channels (colour TV: edges are shared by the channels) and no difference across the
    border. ``steps`` accelerated (Nesterov) gradient steps of size ``1 / (1 + 8 weight / eps)``
    (the inverse Lipschitz constant of the gradient), written out in plain torch ops, so the result
    is differentiable in ``images``. (B, C, H, W) -> (B, C, H, W).
    """
    if weight <= 0 or steps <= 0:
        return images
    lr = 1.0 / (1.0 + 8.0 * weight / eps)
    x = previous = images
    for k in range(steps):
        z = x + (k / (k + 3)) * (x - previous)
        dx = F.pad(z[..., :, 1:] - z[..., :, :-1], (0, 1))
        dy = F.pad(z[..., 1:, :] - z[..., :-1, :], (0, 0, 0, 1))
        norm = (dx.square() + dy.square()).sum(1, keepdim=True).add(eps * eps).sqrt()
        px, py = dx / norm, dy / norm
        divergence = px - F.pad(px[..., :, :-1], (1, 0)) + py - F.pad(py[..., :-1, :], (0, 0, 1, 0))
        previous, x = x, z - lr * ((z - images) - weight * divergence)
    return x


@register("tv", "tv-denoise", "total-variation")
class TotalVariation(Attack):
    """Total-variation minimisation (Rudin-Osher-Fatemi): the image nearest the input with little total variation.

    Runs :func:`tv_denoise`: ``steps`` (default 30) accelerated gradient steps on
    ``0.5 ||x - y||^2 + weight * TV_eps(x)``. ``weight`` >= 0 (default 0.05; 0 is the identity),
    ``strength`` maps it 0 -> 0.15; ``eps`` (default 0.01, [0, 1] units) smooths TV where the image is
    flat. Differentiable (the steps are unrolled), so memory under autograd grows with ``steps``.
    Registered as ``tv`` (aliases ``tv-denoise``, ``total-variation``).

    Keyword Args:
        weight (float): the TV weight, >= 0 (default 0.05; 0 is the identity).
        steps (int): gradient steps, 1-1000 (default 30).
        eps (float): TV smoothing in [0, 1] units (default 0.01).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> noisy = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> smooth = attacks.TotalVariation(weight=0.1)(noisy)
        >>> bool(smooth.std() < noisy.std())
        True
    """

    defaults = {"weight": 0.05, "steps": 30, "eps": 0.01}
    strength_range = {"weight": (0.0, 0.15)}
    bounds = {"weight": (0.0, 10.0), "steps": (1, 1000), "eps": (1e-4, 1.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return tv_denoise(images, self.params["weight"], self.params["steps"], self.params["eps"])


def _lanczos(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL Lanczos resampling of each float channel to ``size`` (h, w); not differentiable."""
    from PIL import Image

    array = images.detach().float().cpu().numpy()
    out = np.empty(array.shape[:2] + tuple(size), dtype=np.float32)
    for b in range(array.shape[0]):
        for c in range(array.shape[1]):
            resized = Image.fromarray(array[b, c]).resize((size[1], size[0]), Image.Resampling.LANCZOS)
            out[b, c] = np.asarray(resized)
    return torch.from_numpy(out).to(images.device, images.dtype)


@register("noisy-upscale", "noisy-upscaling")
class NoisyUpscale(Attack):
    """Noisy upscaling (Hönig et al. 2025): Gaussian noise, downscale by ``scale``, upscale back to full size.

    Hönig et al. upscale with the Stable Diffusion x4 upscaler, whose weights no registry package
    ships; the best upscaler available here is classical interpolation. ``mode``: "bicubic"
    (default; torch, antialiased downscale; differentiable), "bilinear" (differentiable) or
    "lanczos" (PIL Lanczos-3 both ways, on float channels; not differentiable). ``sigma`` in [0, 1]
    pixel units (default 0.05), ``scale`` in (0, 1] (default 0.5); ``strength`` maps sigma 0 -> 0.1
    and scale 1 -> 0.25 (s = 0 is the identity). Randomised. Registered as ``noisy-upscale`` (alias
    ``noisy-upscaling``).

    Keyword Args:
        sigma (float): noise std in [0, 1] pixel units (default 0.05).
        scale (float): downscale factor in (0, 1] (default 0.5).
        mode (str): "bicubic" (default), "bilinear" or "lanczos".
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> upscale = attacks.NoisyUpscale(strength=1.0, seed=0)
        >>> upscale.describe(), upscale(torch.rand(1, 3, 32, 24)).shape
        ('noisy-upscale:sigma=0.1,scale=0.25,seed=0', torch.Size([1, 3, 32, 24]))
    """

    defaults = {"sigma": 0.05, "scale": 0.5, "mode": "bicubic"}
    strength_range = {"sigma": (0.0, 0.1), "scale": (1.0, 0.25)}
    bounds = {"sigma": (0.0, 1.0), "scale": (0.01, 1.0)}
    choices = {"mode": ("bicubic", "bilinear", "lanczos")}
    randomized = True

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return self.params["mode"] != "lanczos"

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noisy = _gaussian(images, self.params["sigma"], generator)
        height, width = images.shape[-2:]
        scale, mode = self.params["scale"], self.params["mode"]
        small = (max(1, round(height * scale)), max(1, round(width * scale)))
        if small == (height, width):
            return noisy
        if mode == "lanczos":
            return _lanczos(_lanczos(noisy, small), (height, width))
        down = F.interpolate(noisy, size=small, mode=mode, align_corners=False, antialias=True)
        return F.interpolate(down, size=(height, width), mode=mode, align_corners=False)


# --------------------------------------------------------------------------- model purifiers


class _ModelPurifier(Attack):
    """A purifier that runs a model: ``model`` is a registry name, path / hub id, or an object.

    ``model=""`` (the default) means ``default_model``. A name or path is kept in ``params`` (so
    ``describe`` names it); an object is used as given and not named.
    """

    default_model: ClassVar[str] = ""

    def __init__(self, model: Any = None, strength: float | str | None = None, seed: int | str | None = None, **params):
        named = model is None or isinstance(model, (str, os.PathLike))
        spelled = os.fspath(model).strip() if named and model is not None else ""
        super().__init__(strength=strength, seed=seed, model=spelled, **params)
        self._model = (spelled or self.default_model) if named else model
        self.last_report: dict[str, Any] = {}


_AUTOENCODERS: dict[tuple[str, str], torch.nn.Module] = {}


def _autoencoder(model: Any, device: torch.device, owner: str) -> torch.nn.Module:
    """A frozen autoencoder: a registry name loaded on ``device`` (cached), else as regeneration resolves it."""
    from ..models.registry import checkpoints

    if isinstance(model, str) and model in {checkpoint.name for checkpoint in checkpoints()}:
        key = (model, str(device))
        if key not in _AUTOENCODERS:
            from ..models import load

            _AUTOENCODERS[key] = resolve_autoencoder(load(model, device=device), owner)  # an editor's: its VAE
        return _AUTOENCODERS[key]
    return resolve_autoencoder(model, owner)


def impress_losses(
    purified: torch.Tensor, protected: torch.Tensor, round_trip: Attack, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image IMPRESS terms, each (B,): consistency ``mean (x' - D(E(x')))^2`` and the weighted fidelity.

    ``round_trip`` is the autoencoder round trip ``D(E(.))`` (a ``vae`` attack, differentiable).
    Fidelity stands in for LPIPS (no LPIPS weights can be had here): ``weight * (mean (x' - x)^2 +
    (1 - SSIM(x', x)) / 100)`` with kornia's SSIM (11 px Gaussian window), both against the protected
    photo x. The SSIM term keeps structure while the L2 term keeps colour; 1/100 brings one SSIM
    point to the size of a 20 dB change of the L2 term.
    """
    consistency = (purified - round_trip(purified)).square().flatten(1).mean(1)
    l2 = (purified - protected).square().flatten(1).mean(1)
    ssim = kornia.metrics.ssim(purified, protected, 11).flatten(1).mean(1)
    return consistency, weight * (l2 + (1 - ssim) / 100)


@register("impress")
class Impress(_ModelPurifier):
    """IMPRESS (Cao et al., NeurIPS 2023): find x' near the protected photo x whose autoencoder round trip is itself.

    Protective perturbations make ``D(E(x))`` differ from x; IMPRESS minimises
    ``||x' - D(E(x'))||^2 + fidelity(x', x)`` over x' with Adam, starting at x, pixels kept in [0, 1].
    LPIPS (the paper's fidelity) needs weights no registry ships: the stand-in is L2 + SSIM against x
    (:func:`impress_losses`). ``model``: a diffusers ``AutoencoderKL`` object, a pipeline or Editor
    holding one, a path, or a registry name (default ``autoencoder-small``). ``steps`` (default 50;
    ``strength`` maps it 0 -> 100, s = 0 is the identity), ``lr`` Adam step in [0, 1] pixel units
    (default 0.002), ``weight`` of the fidelity term (default 1). Not differentiable (an inner
    optimisation; the engine cannot optimise through it). ``last_report`` holds the consistency
    loss before and after, per image.

    Keyword Args:
        model (str | AutoencoderKL): the autoencoder, or a name or path (default ``autoencoder-small``).
        steps (int): Adam steps, 0-10000 (default 50).
        lr (float): Adam step in [0, 1] pixel units (default 0.002).
        weight (float): weight of the fidelity term (default 1).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> impress = attacks.Impress(steps=3)  # the shipped autoencoder-small
        >>> out = impress(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
        >>> report = impress.last_report
        >>> out.shape, bool(report["consistency_after"] < report["consistency_before"])
        (torch.Size([1, 3, 32, 32]), True)
    """

    defaults = {"model": "", "steps": 50, "lr": 0.002, "weight": 1.0}
    strength_range = {"steps": (0, 100)}
    bounds = {"steps": (0, 10000), "lr": (0.0, 1.0), "weight": (0.0, 1e6)}
    default_model = "autoencoder-small"

    def round_trip(self, device: torch.device) -> VAERoundTrip:
        """The differentiable autoencoder round trip ``D(E(.))`` this attack makes consistent (loaded on first use)."""
        return VAERoundTrip(model=_autoencoder(self._model, device, self.name))

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        steps = self.params["steps"]
        if steps <= 0:
            return images
        round_trip = self.round_trip(images.device)
        protected = images.detach()
        purified = protected.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([purified], lr=self.params["lr"])
        history = []
        with torch.enable_grad():  # also under the caller's no_grad (the evaluation runner's)
            for _ in range(steps):
                consistency, fidelity = impress_losses(purified, protected, round_trip, self.params["weight"])
                history.append(consistency.detach())
                optimizer.zero_grad(set_to_none=True)
                (consistency + fidelity).sum().backward()
                optimizer.step()
                with torch.no_grad():
                    purified.clamp_(0.0, 1.0)
        with torch.no_grad():
            final, _ = impress_losses(purified, protected, round_trip, self.params["weight"])
        self.last_report = {
            "attack": self.describe(),
            "model": type(round_trip.loaded()).__name__,
            "consistency_before": history[0].cpu(),
            "consistency_after": final.cpu(),
        }
        return purified.detach()


class _Diffusion(_ModelPurifier):
    """Shared DiffPure step: an unconditional SDEdit through an img2img editor at a small noise level."""

    default_model = "editor-unet-small"
    randomized = True

    def editor(self) -> Any:
        """The img2img Editor this attack uses (a registry name or path is loaded once per process)."""
        return resolve_editor(self._model, ("sd-img2img",), self.name)

    def schedule(self) -> int:
        """The pipeline's full schedule length; it runs ``int(schedule * noise)`` >= 1 denoising steps."""
        return max(self.params["steps"], math.ceil(1.0 / self.params["noise"]))

    def purify(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """One DiffPure pass of (N, 3, h, w) images: latents noised to t = noise * T, then denoised to 0."""
        with torch.no_grad():
            return self.editor().edit(
                images.float(), "", seed=seed, num_inference_steps=self.schedule(), strength=self.params["noise"],
                guidance_scale=1.0,
            )


@register("diffpure")
class DiffPure(_Diffusion):
    """DiffPure (Nie et al., ICML 2022) in a latent diffusion model: noise to a small t, denoise with no prompt.

    The photo is encoded by the pipeline's autoencoder, its latents noised to ``t = noise * T`` and
    denoised by the pipeline's scheduler with the empty prompt (no guidance), then decoded: an
    unconditional SDEdit at small noise. ``model``: a Stable Diffusion img2img pipeline (object,
    photoshield ``Editor``, folder or hub id) or a registry name (default ``editor-unet-small``).
    ``noise`` in (0, 1] (default 0.1), ``strength`` maps it 0.02 -> 0.3; ``steps`` (default 50) is the
    full schedule, of which about ``steps * noise`` run. The pipeline works on the largest size its
    latent grid accepts and the result is resized back. Randomised; not differentiable.

    Keyword Args:
        model (str | Editor): the img2img pipeline, or a name or path (default ``editor-unet-small``).
        noise (float): the noise level t / T in (0, 1] (default 0.1).
        steps (int): the full schedule, 1-1000 (default 50).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> diffpure = attacks.DiffPure(noise=0.1, steps=20, seed=0)  # the shipped editor-unet-small
        >>> diffpure(torch.rand(1, 3, 64, 64)).shape, diffpure.last_report["steps_run"]
        (torch.Size([1, 3, 64, 64]), 2)
    """

    defaults = {"model": "", "noise": 0.1, "steps": 50}
    strength_range = {"noise": (0.02, 0.3)}
    bounds = {"noise": (0.001, 1.0), "steps": (1, 1000)}

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        seed = draw_seed(generator)
        out = self.purify(images, seed)
        steps_run = int(self.schedule() * self.params["noise"])
        self.last_report = {"attack": self.describe(), "seed": seed, "steps_run": steps_run}
        return out.to(images)


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets covering ``length`` with ``tile``-long windows ``stride`` apart; the last one ends at the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _tile_weight(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, 1, h, w) blending weight: a tent, highest in the middle, 1/(side) at the edges (never zero)."""

    def ramp(n: int) -> torch.Tensor:
        position = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
        return 1.0 - (2.0 * position - 1.0).abs()

    return (ramp(height)[:, None] * ramp(width)[None, :])[None, None]


@register("gridpure")
class GrIDPure(_Diffusion):
    """GrIDPure (Zhao et al., CVPR 2024): DiffPure on overlapping square tiles, blended, repeated ``iterations`` times.

    A diffusion model purifies best at the size it was trained at; GrIDPure cuts the photo into
    ``tile`` x ``tile`` tiles ``tile * (1 - overlap)`` apart, purifies each with DiffPure at a small
    ``noise`` and blends them back with tent weights (highest in each tile's centre), and feeds the
    result to the next iteration. ``tile`` in pixels (default 0: the editor's training size,
    ``sample_size`` x its autoencoder factor: 128 px for ``editor-unet-small``, 512 for SD 1.5);
    ``overlap`` in [0, 0.9] (default 0.5); ``iterations`` 1-50 (default 2), ``strength`` maps it
    1 -> 8; ``noise`` (default 0.1) and ``steps`` as in ``diffpure``. The paper also blends in a
    purified whole-image copy; this version does not. Randomised (one seed per iteration); not
    differentiable.

    Keyword Args:
        model (str | Editor): the img2img pipeline, or a name or path (default ``editor-unet-small``).
        noise (float): the noise level t / T in (0, 1] (default 0.1).
        steps (int): the full schedule, 1-1000 (default 50).
        iterations (int): 1-50 (default 2).
        tile (int): tile side in pixels (default 0: the editor's training size).
        overlap (float): in [0, 0.9] (default 0.5).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> gridpure = attacks.GrIDPure(tile=32, iterations=1, steps=20, seed=0)
        >>> gridpure(torch.rand(1, 3, 32, 64)).shape, gridpure.last_report["tiles"]
        (torch.Size([1, 3, 32, 64]), 3)
    """

    defaults = {"model": "", "noise": 0.1, "steps": 50, "iterations": 2, "tile": 0, "overlap": 0.5}
    strength_range = {"iterations": (1, 8)}
    bounds = {
        "noise": (0.001, 1.0), "steps": (1, 1000), "iterations": (1, 50), "tile": (0, 8192), "overlap": (0.0, 0.9)
    }
    chunk: ClassVar[int] = 16  # tiles per pipeline call

    def tile_size(self) -> int:
        """The tile side in pixels (``tile``, or the editor's training size when 0)."""
        if self.params["tile"]:
            return self.params["tile"]
        editor = self.editor()
        sample = getattr(editor.denoiser.config, "sample_size", None) or 64
        sample = sample[0] if isinstance(sample, (list, tuple)) else sample
        return int(sample) * editor.vae_scale_factor

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        batch, _, height, width = images.shape
        tile = self.tile_size()
        tile_h, tile_w = min(tile, height), min(tile, width)
        stride = max(1, round(tile * (1 - self.params["overlap"])))
        rows, columns = _tile_starts(height, tile_h, stride), _tile_starts(width, tile_w, stride)
        boxes = [(top, left) for top in rows for left in columns]
        weight = _tile_weight(tile_h, tile_w, images.device).to(images.dtype)
        seeds = []
        current = images
        for _ in range(self.params["iterations"]):
            seeds.append(draw_seed(generator))
            tiles = torch.cat([current[:, :, top : top + tile_h, left : left + tile_w] for top, left in boxes])
            chunks = tiles.split(self.chunk)  # bounded memory; each chunk its own seed, so noise is not repeated
            purified = torch.cat([self.purify(chunk, seeds[-1] + i) for i, chunk in enumerate(chunks)])
            purified = purified.to(images).view(len(boxes), batch, 3, tile_h, tile_w)
            total = torch.zeros_like(images)
            mass = torch.zeros_like(images[:, :1])
            for (top, left), part in zip(boxes, purified):
                total[:, :, top : top + tile_h, left : left + tile_w] += weight * part
                mass[:, :, top : top + tile_h, left : left + tile_w] += weight
            current = total / mass
        self.last_report = {"attack": self.describe(), "seeds": seeds, "tile": tile, "tiles": len(boxes)}
        return current
