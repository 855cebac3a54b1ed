"""Regeneration attacks: an autoencoder round trip, diffusion regeneration (SDEdit) and repeated rinsing.

They run a generative model the user points at (``model=``): a loaded diffusers object, a
photoshield :class:`~photoshield.models.diffusion.Editor`, or a local folder / hub id (loaded on
first use through :mod:`photoshield.models`). On the CLI: ``photoshield attack IN -o OUT --name
sdedit --model PATH``. Tests use the tiny random models of :mod:`photoshield.testing`.

Each attack keeps what it did in ``last_report`` (one dict per call: settings, seed, model).
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .base import Attack, AttackError, randn, register

__all__ = ["ModelAttack", "Rinse", "SDEdit", "VAERoundTrip", "draw_seed", "resolve_autoencoder", "resolve_editor"]

_AUTOENCODERS: dict[str, torch.nn.Module] = {}


def draw_seed(generator: torch.Generator | None) -> int:
    """A pipeline seed drawn from ``generator`` (the global RNG without one), so runs repeat under a seed."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=_device_of(generator)).item())


def _device_of(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def resolve_editor(model: Any, kinds: tuple[str, ...], owner: str) -> Any:
    """An Editor of one of ``kinds`` from an Editor, a diffusers pipeline object, or a path / hub id."""
    from ..models.diffusion import as_editor

    return as_editor(model, kinds, owner=owner, error=AttackError)


def resolve_autoencoder(model: Any, owner: str) -> torch.nn.Module:
    """The autoencoder inside an Editor or pipeline, a bare autoencoder module, or one loaded from a path."""
    from ..models.autoencoder import load_autoencoder
    from ..models.diffusion import Editor

    if isinstance(model, (str, os.PathLike)):
        key = os.fspath(model)
        if key not in _AUTOENCODERS:
            _AUTOENCODERS[key] = load_autoencoder(model)
        return _AUTOENCODERS[key]
    if isinstance(model, Editor):
        return model.vae
    vae = getattr(model, "vae", model)  # a diffusers pipeline holds it as .vae
    if isinstance(vae, torch.nn.Module) and hasattr(vae, "encode") and hasattr(vae, "decode"):
        return vae.requires_grad_(False).eval()
    raise AttackError(
        f"{owner}: model must be a diffusers autoencoder (AutoencoderKL), a pipeline or Editor holding one, "
        f"or a path; got {type(model).__name__}"
    )


class ModelAttack(Attack):
    """An attack that runs a generative model given as ``model=`` (object, Editor, local folder or hub id).

    Objects are kept as they are; a path is kept in ``params["model"]`` (so ``describe`` names it) and
    loaded on first use. Without a model the constructor raises an error saying how to give one.
    """

    model_help: ClassVar[str] = "a diffusers pipeline"
    randomized = True

    def __init__(self, model: Any = None, strength: float | str | None = None, seed: int | str | None = None, **params):
        owner = self.name or type(self).__name__
        if model is None or (isinstance(model, str) and not model.strip()):
            raise AttackError(
                f"{owner}: needs a model: pass model= {self.model_help} (a loaded object, a photoshield Editor, "
                f"a local folder or a hub id). On the command line: photoshield attack IN -o OUT --name {owner} "
                "--model PATH"
            )
        named = isinstance(model, (str, os.PathLike))
        super().__init__(strength=strength, seed=seed, model=os.fspath(model) if named else "", **params)
        self._model = model
        self._loaded: Any = None
        self.last_report: dict[str, Any] = {}

    def loaded(self) -> Any:
        """The model, loaded or wrapped on first use."""
        if self._loaded is None:
            self._loaded = self.load(self._model)
        return self._loaded

    def load(self, model: Any) -> Any:
        raise NotImplementedError


@register("vae", "autoencoder")
class VAERoundTrip(ModelAttack):
    """Encode to the autoencoder's latents and decode back: what a latent diffusion editor does to every pixel.

    ``model``: a diffusers ``AutoencoderKL`` (or a pipeline / Editor, whose VAE is used, or a path).
    ``noise`` (default 0): std of Gaussian noise added to the scaled latents (unit variance for SD);
    ``strength`` maps it 0 -> 1. ``sample``: draw from the posterior instead of taking its mean.
    Sizes that are not multiples of the VAE's factor are reflect-padded and cropped back.
    Differentiable (the autoencoder is frozen; gradients reach the input). Registered as ``vae``
    (alias ``autoencoder``).

    Keyword Args:
        model (AutoencoderKL | str): the autoencoder (or a pipeline or Editor holding one, or a path).
        noise (float): latent noise std, 0-10 (default 0).
        sample (bool): sample the posterior instead of taking its mean (default false).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks, models
        >>> vae = models.load("autoencoder-small", device="cpu")  # a shipped AutoencoderKL
        >>> round_trip = attacks.VAERoundTrip(model=vae)
        >>> images = torch.rand(1, 3, 30, 44, requires_grad=True)  # padded to the factor and cropped back
        >>> round_trip(images).mean().backward()
        >>> images.grad.shape, round_trip.last_report["latent_shape"]
        (torch.Size([1, 3, 30, 44]), (1, 4, 8, 11))
    """

    defaults = {"model": "", "noise": 0.0, "sample": False}
    strength_range = {"noise": (0.0, 1.0)}
    bounds = {"noise": (0.0, 10.0)}
    differentiable = True
    model_help = "a diffusers AutoencoderKL"

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.params["noise"] > 0 or self.params["sample"]

    def load(self, model: Any) -> torch.nn.Module:
        return resolve_autoencoder(model, self.name)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        from ..models.autoencoder import scale_factor

        vae = self.loaded()
        parameter = next(vae.parameters())
        height, width = images.shape[-2:]
        factor = scale_factor(vae)
        pad_h, pad_w = -height % factor, -width % factor
        x = images.to(device=parameter.device, dtype=parameter.dtype) * 2 - 1
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        encoded = vae.encode(x)
        config = vae.config
        shift, scale = getattr(config, "shift_factor", None) or 0.0, getattr(config, "scaling_factor", 1.0)
        if hasattr(encoded, "latent_dist"):
            dist = encoded.latent_dist
            if self.params["sample"]:
                latents = dist.mean + dist.std * randn(dist.mean.shape, generator, dist.mean.device).to(dist.mean)
            else:
                latents = dist.mean
        else:  # AutoencoderTiny gives latents directly
            latents = encoded.latents
        latents = (latents - shift) * scale
        if self.params["noise"] > 0:
            latents = latents + self.params["noise"] * randn(latents.shape, generator, latents.device).to(latents)
        decoded = vae.decode(latents / scale + shift).sample[..., :height, :width]
        self.last_report = {
            "attack": self.describe(),
            "model": type(vae).__name__,
            "latent_shape": tuple(latents.shape),
            "padded": (pad_h, pad_w),
        }
        return ((decoded + 1) / 2).to(device=images.device, dtype=images.dtype)


@register("sdedit", "diffusion-regen")
class SDEdit(ModelAttack):
    """Diffusion regeneration (SDEdit, Meng et al. 2022): noise the image to a level and denoise it back.

    ``model``: a Stable Diffusion img2img pipeline (``StableDiffusionImg2ImgPipeline``, an
    ``sd-img2img`` Editor, or a path / hub id). ``noise`` in (0, 1] (default 0.3): the pipeline's
    ``strength``, the fraction of the schedule re-run; ``strength`` maps it 0.05 -> 0.6.
    ``steps`` (default 50): the full schedule (about ``steps * noise`` are run); ``prompt`` (default
    empty: unconditional regeneration) and ``guidance`` (default 1: no classifier-free guidance).
    The pipeline works on the largest size that fits its latent grid and the result is resized back.
    Randomised. Registered as ``sdedit`` (alias ``diffusion-regen``).

    Keyword Args:
        model (Editor | str): the img2img pipeline, Editor, folder, hub id or registry name (required).
        noise (float): the fraction of the schedule re-run, in (0, 1] (default 0.3).
        steps (int): the full schedule, 1-1000 (default 50).
        prompt (str): the text prompt (default empty).
        guidance (float): classifier-free guidance, 0-50 (default 1).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> sdedit = attacks.SDEdit(model="editor-unet-small", noise=0.2, steps=10, seed=0)
        >>> sdedit(torch.rand(1, 3, 64, 64)).shape, sdedit.last_report["steps_run"]
        (torch.Size([1, 3, 64, 64]), 2)
    """

    defaults = {"model": "", "noise": 0.3, "steps": 50, "prompt": "", "guidance": 1.0}
    strength_range = {"noise": (0.05, 0.6)}
    bounds = {"noise": (0.001, 1.0), "steps": (1, 1000), "guidance": (0.0, 50.0)}
    model_help = "a StableDiffusionImg2ImgPipeline"

    def load(self, model: Any) -> Any:
        return resolve_editor(model, ("sd-img2img",), self.name)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        editor = self.loaded()
        noise = self.params["noise"]
        steps = max(self.params["steps"], math.ceil(1.0 / noise))  # the pipeline needs at least one step
        seed = draw_seed(generator)
        with torch.no_grad():
            out = editor.edit(
                images.float(),
                self.params["prompt"],
                seed=seed,
                num_inference_steps=steps,
                strength=noise,
                guidance_scale=self.params["guidance"],
            )
        self.last_report = {
            "attack": self.describe(),
            "model": type(editor.pipe).__name__,
            "seed": seed,
            "noise": noise,
            "steps_run": int(steps * noise),
        }
        return out.to(images)


@register("rinse", "rinsing")
class Rinse(ModelAttack):
    """Regenerate several times in a row ("rinsing", as in the WAVES benchmark): each pass feeds the next.

    ``via``: "sdedit" (default; the model is an img2img pipeline) or "vae" (an autoencoder).
    ``times`` 1-20 (default 2); ``strength`` maps it 1 -> 5. ``noise`` is each pass's noise
    (SDEdit strength, default 0.2; latent noise for "vae", where 0 is a plain round trip);
    ``steps`` and ``prompt`` as in ``sdedit``. Each pass draws its own seed from the generator.
    Registered as ``rinse`` (alias ``rinsing``).

    Keyword Args:
        model (Editor | AutoencoderKL | str): the img2img pipeline (via=sdedit) or autoencoder (via=vae).
        via (str): "sdedit" (default) or "vae".
        times (int): passes, 1-20 (default 2).
        noise (float): each pass's noise, in [0, 1] (default 0.2).
        steps (int): each SDEdit pass's full schedule (default 50).
        prompt (str): each SDEdit pass's prompt (default empty).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the passes repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> from photoshield.testing import tiny_editor
        >>> rinse = attacks.Rinse(model=tiny_editor("sd-img2img"), via="vae", times=3)
        >>> rinse(torch.rand(1, 3, 32, 32)).shape, len(rinse.last_report["passes"])
        (torch.Size([1, 3, 32, 32]), 3)
    """

    defaults = {"model": "", "via": "sdedit", "times": 2, "noise": 0.2, "steps": 50, "prompt": ""}
    strength_range = {"times": (1, 5)}
    bounds = {"times": (1, 20), "noise": (0.0, 1.0), "steps": (1, 1000)}
    choices = {"via": ("sdedit", "vae")}
    model_help = "a StableDiffusionImg2ImgPipeline (via=sdedit) or an AutoencoderKL (via=vae)"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["via"] == "sdedit" and params["noise"] <= 0:
            raise AttackError("rinse: noise must be > 0 for via=sdedit (it is the SDEdit strength)")
        return params

    def load(self, model: Any) -> Attack:
        p = self.params
        if p["via"] == "vae":
            return VAERoundTrip(model=model, noise=p["noise"])
        return SDEdit(model=model, noise=p["noise"], steps=p["steps"], prompt=p["prompt"])

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        inner = self.loaded()
        passes = []
        for _ in range(self.params["times"]):
            images = inner(images, generator=generator)
            passes.append(inner.last_report)
        self.last_report = {"attack": self.describe(), "passes": passes}
        return images
