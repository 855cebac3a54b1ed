"""The editor adapter over a diffusers editing pipeline: edit, encode, one denoiser call, attention capture.

:class:`Editor` holds what every kind shares; one subclass per kind holds what differs:

==================  ==========================================  ========================  ==============================
kind                pipeline class                              denoiser input            editor class
==================  ==========================================  ========================  ==============================
sd-img2img          StableDiffusionImg2ImgPipeline              noisy latents             `.StableDiffusionImg2ImgEditor`
sd-inpaint          StableDiffusionInpaintPipeline              latents + mask +          `.StableDiffusionInpaintEditor`
                                                                masked-image latents
instruct-pix2pix    StableDiffusionInstructPix2PixPipeline      latents + image latents   `.InstructPix2PixEditor`
                                                                (unscaled)
flux-kontext        FluxKontextPipeline                         target tokens +           `.FluxKontextEditor`
                                                                context-image tokens
==================  ==========================================  ========================  ==============================

protect/ uses the differentiable parts (``encode_latents``, ``encode_condition``,
``denoise``, ``capture_attention``); attacks/ uses ``edit``. Latents are always spatial
(B, C, h, w) in the denoiser's scaled space; Flux packing into tokens happens inside
``denoise`` with the pipeline's own helpers. Timesteps are in scheduler units (0..1000;
for Flux that is sigma * 1000, as in the pipeline loop).

``Editor.from_pipeline(pipe, kind)`` picks the subclass of ``kind``
(:mod:`.stable_diffusion`, :mod:`.flux_kontext`)::

    editor = Editor.from_pipeline(pipe, "sd-img2img", device="cuda")
    edited = editor.edit(images, "make it snowy")          # (B, 3, H, W) in [0, 1]
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence

import torch
import torch.nn.functional as F

from ...errors import PhotoshieldError
from . import attention_capture as _capture
from .attention_capture import AttentionCapture, StopForward, TokenLayout

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

KINDS = ("sd-img2img", "sd-inpaint", "instruct-pix2pix", "flux-kontext")
PIPELINES = {
    "sd-img2img": "StableDiffusionImg2ImgPipeline",
    "sd-inpaint": "StableDiffusionInpaintPipeline",
    "instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline",
    "flux-kontext": "FluxKontextPipeline",
}

__all__ = ["KINDS", "PIPELINES", "AttentionCapture", "Editor", "PromptEmbeds", "TokenLayout", "editor_class", "pipeline_class"]

_EDITOR_CLASSES: dict[str, type["Editor"]] = {}


def _check_kind(kind: str) -> None:
    if kind not in PIPELINES:
        raise ValueError(f"unknown editor kind {kind!r}; choose one of {', '.join(KINDS)}")


def pipeline_class(kind: str) -> type:
    """The diffusers pipeline class of an editor kind."""
    _check_kind(kind)
    import diffusers

    return getattr(diffusers, PIPELINES[kind])


def editor_class(kind: str) -> type["Editor"]:
    """The :class:`Editor` subclass of an editor kind (``"flux-kontext"`` -> ``FluxKontextEditor``)."""
    _check_kind(kind)
    return _EDITOR_CLASSES[kind]


@dataclass
class PromptEmbeds:
    """Encoded prompts, one row per prompt: token embeddings and (Flux) the pooled CLIP embedding."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def __getitem__(self, index: int | slice) -> "PromptEmbeds":
        index = slice(index, index + 1) if isinstance(index, int) else index
        return PromptEmbeds(self.embeds[index], None if self.pooled is None else self.pooled[index])

    @staticmethod
    def cat(parts: Sequence["PromptEmbeds"]) -> "PromptEmbeds":
        """Stack several encodings along the batch."""
        pooled = None if parts[0].pooled is None else torch.cat([p.pooled for p in parts])
        return PromptEmbeds(torch.cat([p.embeds for p in parts]), pooled)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "PromptEmbeds":
        """A copy on ``device`` / in ``dtype``."""
        pooled = None if self.pooled is None else self.pooled.to(device=device, dtype=dtype)
        return PromptEmbeds(self.embeds.to(device=device, dtype=dtype), pooled)

    def batch(self, size: int) -> "PromptEmbeds":
        """The encodings for a batch of ``size``: as is, or one prompt repeated."""
        if len(self) == size:
            return self
        if len(self) != 1:
            raise ValueError(f"{len(self)} prompt encodings for a batch of {size}")
        pooled = None if self.pooled is None else self.pooled.expand(size, -1)
        return PromptEmbeds(self.embeds.expand(size, -1, -1), pooled)


def resize(images: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Images (B, C, H, W) resized to ``size`` (h, w): antialiased bilinear, or nearest (for masks)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode == "nearest":
        return F.interpolate(images, size=size, mode="nearest")
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)


class Editor:
    """One diffusers editing pipeline with the operations protect/ and attacks/ need.

    The base of one subclass per kind; build one with :meth:`from_pipeline` (or ``load_editor``).
    The pipeline's networks are put in eval mode with frozen parameters: gradients flow to
    inputs (images, latents), never into weights.
    """

    #: The editor kind a subclass handles (one of :data:`KINDS`).
    kind: ClassVar[str] = ""
    #: True for the Flux Kontext editor (joint token attention, flow matching).
    is_flux: ClassVar[bool] = False
    #: Optional edit() settings this kind's pipeline takes (besides the prompt and image).
    edit_settings: ClassVar[tuple[str, ...]] = ("num_inference_steps", "guidance_scale")
    #: True where edit() needs a mask (the inpainting region) and does not blend the result with it.
    mask_required: ClassVar[bool] = False
    #: True where denoise() needs ``condition=encode_condition(images)``.
    needs_condition: ClassVar[bool] = True
    #: True where classifier-free guidance needs the empty prompt encoded.
    uses_empty_prompt: ClassVar[bool] = True
    #: Timesteps as capture_attention() filters see them, per denoiser timestep unit.
    timestep_scale: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _check_kind(cls.kind)
            _EDITOR_CLASSES[cls.kind] = cls

    def __init__(self, pipe: "DiffusionPipeline"):
        if not self.kind:
            raise TypeError("Editor is the base of one class per kind: use Editor.from_pipeline(pipe, kind)")
        cls = pipeline_class(self.kind)
        if not isinstance(pipe, cls):
            raise TypeError(f"a {self.kind} editor needs a {cls.__name__}, got {type(pipe).__name__}")
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.requires_grad_(False).eval()
        self.pipe = pipe
        self.max_sequence_length = 512  # T5 tokens per prompt (Flux)
        self.defaults: dict[str, Any] = {}  # edit() settings used when a call leaves them unset
        self._prompts: dict[str, PromptEmbeds] = {}
        self._encoders_freed = False

    @classmethod
    def from_pipeline(
        cls, pipe: "DiffusionPipeline", kind: str | None = None, device: str | torch.device | None = None
    ) -> "Editor":
        """Wrap an existing pipeline object as the editor of ``kind``, optionally moving it to ``device``.

        ``Editor.from_pipeline(pipe, "flux-kontext")`` gives a ``FluxKontextEditor``; on a subclass
        ``kind`` may be left out.
        """
        if kind is None and not cls.kind:
            raise TypeError(f"Editor.from_pipeline needs the kind, one of {', '.join(KINDS)}")
        target = editor_class(kind) if kind is not None else cls
        if not issubclass(target, cls):
            raise TypeError(f"{cls.__name__} cannot wrap a {kind} pipeline; use Editor.from_pipeline(pipe, {kind!r})")
        if device is not None:
            pipe.to(device)
        return target(pipe)

    def __repr__(self) -> str:
        name = type(self.pipe).__name__
        return f"{type(self).__name__}(kind={self.kind!r}, pipeline={name}, device={self.device}, dtype={self.dtype})"

    # ----------------------------------------------------------------- properties
    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet or Flux transformer."""
        raise NotImplementedError

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this for encode_latents."""
        return self.vae_scale_factor

    @property
    def text_length(self) -> int:
        """Text tokens per prompt as the denoiser sees them."""
        raise NotImplementedError

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The largest (h, w) <= (height, width) that the pipeline accepts."""
        m = self.size_multiple
        h, w = height // m * m, width // m * m
        if h == 0 or w == 0:
            raise ValueError(f"image of {height}x{width} is smaller than the {self.kind} editor's minimum {m}x{m}")
        return h, w

    # ----------------------------------------------------------------- prompts
    def _encode_new(self, prompts: list[str]) -> PromptEmbeds:
        raise NotImplementedError

    def encode_prompt(self, prompts: str | Sequence[str]) -> PromptEmbeds:
        """Encode prompts once and cache them (the empty prompt too, for classifier-free guidance)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        wanted = list(dict.fromkeys(prompts + ([""] if self.uses_empty_prompt else [])))
        missing = [p for p in wanted if p not in self._prompts]
        if missing and self._encoders_freed:
            raise PhotoshieldError(
                f"prompt {missing[0]!r} was not encoded before free_text_encoders(); "
                "call encode_prompt() with the whole prompt pool first"
            )
        if missing:
            with torch.no_grad():
                new = self._encode_new(missing)
            for i, prompt in enumerate(missing):
                pooled = None if new.pooled is None else new.pooled[i : i + 1]
                self._prompts[prompt] = PromptEmbeds(new.embeds[i : i + 1], pooled)
        return PromptEmbeds.cat([self._prompts[p] for p in prompts])

    def free_text_encoders(self) -> None:
        """Drop the text encoders (after encoding the prompt pool) to save memory; cached prompts still work."""
        for attr in ("text_encoder", "text_encoder_2"):
            if getattr(self.pipe, attr, None) is not None:
                setattr(self.pipe, attr, None)
        self._encoders_freed = True
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _embeds(self, prompt: "PromptEmbeds | torch.Tensor | str | Sequence[str]", batch: int) -> PromptEmbeds:
        if isinstance(prompt, torch.Tensor):
            prompt = PromptEmbeds(prompt)
        elif not isinstance(prompt, PromptEmbeds):
            prompt = self.encode_prompt(prompt)
        return prompt.to(self.device, self.dtype).batch(batch)

    # ----------------------------------------------------------------- full edit
    def edit(
        self,
        image: torch.Tensor,
        prompt: str | Sequence[str],
        seed: int = 0,
        num_inference_steps: int | None = None,
        strength: float | None = None,
        guidance_scale: float | None = None,
        mask: torch.Tensor | None = None,
        **pipe_kwargs: Any,
    ) -> torch.Tensor:
        """Run the real pipeline on (B, 3, H, W) images in [0, 1]; returns edited images of the same size.

        ``None`` settings take ``self.defaults`` (the small editors' measured settings), else the
        pipeline's. ``mask`` (B or 1, 1, H, W), 1 = edit: the
        inpainting region for sd-inpaint (required there); for the other kinds the edit is blended
        back only inside it. ``strength`` does not apply to instruct-pix2pix and flux-kontext.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        batch, _, height, width = image.shape
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        if len(prompts) != batch:
            raise ValueError(f"{len(prompts)} prompts for {batch} images")
        if self.mask_required and mask is None:
            raise ValueError(f"the {self.kind} editor needs a mask (B, 1, H, W) with 1 where to repaint")
        if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (height, width)):
            raise ValueError(f"mask must have shape (B, 1, {height}, {width}), got {tuple(mask.shape)}")
        size = self.working_size(height, width)
        embeds = self.encode_prompt(prompts).to(self.device, self.dtype)
        given = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale, "strength": strength}
        settings = {k: self.defaults.get(k) if given[k] is None else given[k] for k in self.edit_settings}
        kwargs = {k: v for k, v in settings.items() if v is not None}
        kwargs.update(
            image=resize(image.float(), size).to(self.device),
            prompt_embeds=embeds.embeds,
            generator=torch.Generator("cpu").manual_seed(int(seed)),
            output_type="pt",
        )
        kwargs.update(self._edit_kwargs(embeds, size, mask))
        kwargs.update(pipe_kwargs)
        try:
            out = self.pipe(**kwargs).images
        except StopForward as error:
            message = "edit() cannot run inside stop_after() or capture_attention(stop_early=True)"
            raise PhotoshieldError(message) from error
        out = resize(out.float().cpu(), (height, width)).clamp(0, 1).to(image.device)
        if mask is not None and not self.mask_required:
            mask = mask.to(out)
            out = mask * out + (1 - mask) * image.to(out)
        return out

    def _edit_kwargs(self, embeds: PromptEmbeds, size: tuple[int, int], mask: torch.Tensor | None) -> dict[str, Any]:
        """The pipeline call's kind-specific keyword arguments for an edit at working size ``size``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- differentiable parts
    def _check_size(self, images: torch.Tensor) -> None:
        m = self.size_multiple
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % m or images.shape[-1] % m:
            raise ValueError(
                f"{self.kind} needs height and width multiples of {m}, got {tuple(images.shape[-2:])}; "
                f"resize or crop to editor.working_size(H, W) = {self.working_size(*images.shape[-2:])}"
            )

    def _vae_mean(self, images: torch.Tensor) -> torch.Tensor:
        self._check_size(images)
        x = images.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1
        return self.vae.encode(x).latent_dist.mean

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable VAE encoding of [0, 1] images to the denoiser's latent space: (mean - shift) * scale."""
        config = self.vae.config
        return (self._vae_mean(images) - (config.shift_factor or 0.0)) * config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Differentiable VAE decoding of scaled latents back to [0, 1] images."""
        config = self.vae.config
        z = latents.to(device=self.vae.device, dtype=self.vae.dtype)
        z = z / config.scaling_factor + (config.shift_factor or 0.0)
        return ((self.vae.decode(z).sample + 1) / 2).clamp(0, 1)

    def encode_condition(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The image conditioning ``denoise`` concatenates, computed as the pipeline does, differentiably.

        instruct-pix2pix: unscaled VAE latents (B, 4, h, w); sd-inpaint: latent-size mask and
        masked-image latents (B, 1 + 4, h, w), mask 1 = repaint; flux-kontext: context latents
        (B, C, h, w) (same as encode_latents); sd-img2img: None.
        """
        raise NotImplementedError

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The noisy latents at timestep ``t`` the denoiser expects (variance preserving, or flow matching for Flux)."""
        raise NotImplementedError

    def predict_original(self, noisy: torch.Tensor, prediction: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate from a denoiser prediction (epsilon, v or flow velocity)."""
        raise NotImplementedError

    def pack_latents(self, latents: torch.Tensor, context: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Flux only: spatial latents (B, C, h, w) to tokens (B, h/2 * w/2, 4C) and their RoPE ids (N, 3)."""
        raise TypeError(f"{self.kind} latents are not packed into tokens")

    def unpack_latents(self, tokens: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """Flux only: tokens back to spatial latents of ``latent_size`` (h, w)."""
        raise TypeError(f"{self.kind} latents are not packed into tokens")

    def denoise(
        self,
        latents: torch.Tensor,
        t: float | torch.Tensor,
        prompt_embeds: "PromptEmbeds | torch.Tensor | str | Sequence[str]",
        condition: torch.Tensor | None = None,
        guidance_scale: float = 3.5,
    ) -> torch.Tensor | None:
        """One differentiable denoiser call on noisy latents (B, C, h, w) at timestep ``t``; returns the prediction.

        ``condition`` is what :meth:`encode_condition` returns (required for sd-inpaint, pix2pix
        and flux-kontext). ``guidance_scale`` feeds Flux's guidance embedding (when the model has
        one). Returns None when a stop_after()/stop_early capture cut the forward short.
        """
        batch = latents.shape[0]
        embeds = self._embeds(prompt_embeds, batch)
        t = torch.as_tensor(t, device=self.device, dtype=torch.float32).flatten()
        t = t.expand(batch) if t.numel() == 1 else t
        latents = latents.to(device=self.device, dtype=self.dtype)
        if self.needs_condition and condition is None:
            raise ValueError(f"{self.kind} denoise needs condition=editor.encode_condition(images, ...)")
        try:
            return self._denoise(latents, t, embeds, condition, guidance_scale)
        except StopForward:
            return None

    def _denoise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        embeds: PromptEmbeds,
        condition: torch.Tensor | None,
        guidance_scale: float,
    ) -> torch.Tensor:
        """The denoiser forward on latents (B, C, h, w) at timesteps ``t`` (B,), prompts already batched."""
        raise NotImplementedError

    # ----------------------------------------------------------------- attention
    def token_layout(self, latent_size: tuple[int, int], context_size: tuple[int, int] | None = None) -> TokenLayout:
        """Flux only: the joint-attention token ranges for target latents (and context latents) of these sizes."""
        raise TypeError(f"{self.kind} has no joint token sequence")

    def attention_blocks(self) -> list[str]:
        """Names of the denoiser's attention modules (UNet: ...attn1 self, ...attn2 cross; Flux: joint)."""
        return _capture.attention_blocks(self.denoiser)

    def capture_attention(
        self,
        blocks: str | Sequence[str] = "all",
        timesteps: Iterable[float] | Callable[[float], bool] | None = None,
        detach: bool = False,
        reduce: Callable[[torch.Tensor, TokenLayout | None], torch.Tensor] | None = None,
        stop_early: bool = False,
    ) -> contextlib.AbstractContextManager[AttentionCapture]:
        """Context manager recording attention probabilities (B, heads, Q, K) of ``blocks`` in the denoiser.

        ``blocks``: "all", exact names, prefixes ("up_blocks.1", "single_transformer_blocks") or globs
        ("*attn2"). Works for ``denoise`` and for ``edit`` (every pipeline step). For Flux,
        ``capture.layout`` gives the text / target / context token ranges. ``stop_early`` ends the
        forward after the last chosen block (denoise then returns None).
        """
        return _capture.capture_attention(
            self.denoiser, blocks, timesteps, detach, reduce, stop_early, self.timestep_scale
        )

    def stop_after(self, block: str) -> contextlib.AbstractContextManager[None]:
        """Context manager that cuts the denoiser forward after submodule ``block`` (denoise returns None)."""
        return _capture.stop_after(self.denoiser, block)
