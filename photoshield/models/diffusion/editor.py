"""Thin adapters over diffusers editing pipelines: edit, encode, one denoiser call, attention capture.

One :class:`Editor` wraps one pipeline of a known kind:

==================  ==========================================  ========================
kind                pipeline class                              denoiser input
==================  ==========================================  ========================
sd-img2img          StableDiffusionImg2ImgPipeline              noisy latents
sd-inpaint          StableDiffusionInpaintPipeline              latents + mask + masked-image latents
instruct-pix2pix    StableDiffusionInstructPix2PixPipeline      latents + image latents (unscaled)
flux-kontext        FluxKontextPipeline                         target tokens + context-image tokens
==================  ==========================================  ========================

protect/ uses the differentiable parts (``encode_latents``, ``encode_condition``,
``denoise``, ``capture_attention``); attacks/ uses ``edit``. Latents are always spatial
(B, C, h, w) in the denoiser's scaled space; Flux packing into tokens happens inside
``denoise`` with the pipeline's own helpers. Timesteps are in scheduler units (0..1000;
for Flux that is sigma * 1000, as in the pipeline loop).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from photoshield.errors import ModelNotFoundError, PhotoshieldError
from photoshield.models import attention_capture as _capture
from photoshield.models.attention_capture import AttentionCapture, StopForward, TokenLayout

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

KINDS = ("sd-img2img", "sd-inpaint", "instruct-pix2pix", "flux-kontext")
_PIPELINES = {
    "sd-img2img": "StableDiffusionImg2ImgPipeline",
    "sd-inpaint": "StableDiffusionInpaintPipeline",
    "instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline",
    "flux-kontext": "FluxKontextPipeline",
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

__all__ = [
    "KINDS",
    "AttentionCapture",
    "Editor",
    "PromptEmbeds",
    "TokenLayout",
    "as_editor",
    "editor_kind_of",
    "load_editor",
    "pipeline_class",
    "bf16_supported",
    "resolve_editor",
]


def pipeline_class(kind: str) -> type:
    """The diffusers pipeline class of an editor kind."""
    if kind not in _PIPELINES:
        raise ValueError(f"unknown editor kind {kind!r}; choose one of {', '.join(KINDS)}")
    import diffusers

    return getattr(diffusers, _PIPELINES[kind])


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


def _missing_message(path_or_id: str, kind: str, cause: str = "") -> str:
    return (
        f"cannot load a {kind} pipeline from {path_or_id!r}{': ' + cause if cause else ''}\n"
        f"Point load_editor() at a local folder holding a diffusers pipeline of class {_PIPELINES[kind]} "
        "(model_index.json plus one folder per component, as written by pipe.save_pretrained()), "
        "or pass a Hugging Face hub id (e.g. 'org/model') on a machine with network access "
        "or with that model already in the hub cache."
    )


def load_editor(
    path_or_id: str | os.PathLike,
    kind: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> "Editor":
    """Load a pipeline of ``kind`` with diffusers ``from_pretrained`` (local folder or hub id) as an Editor.

    Extra keyword arguments go to ``from_pretrained`` (e.g. ``safety_checker=None``, ``variant="fp16"``).
    """
    from huggingface_hub.errors import HFValidationError

    from photoshield.models.registry import default_device

    cls = pipeline_class(kind)
    name = os.fspath(path_or_id)
    local = Path(name).expanduser()
    if not local.exists() and not _HUB_ID.fullmatch(name):
        raise ModelNotFoundError(_missing_message(name, kind, "no such folder"))
    source = str(local) if local.exists() else name
    if dtype is not None:
        from diffusers.utils import deprecation_utils

        # diffusers 0.42 renamed torch_dtype to dtype (the old name still works, with a warning)
        kwargs["dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"] = dtype
    try:
        pipe = cls.from_pretrained(source, **kwargs)
    except (OSError, HFValidationError) as error:
        raise ModelNotFoundError(_missing_message(name, kind, str(error).splitlines()[0])) from error
    return Editor.from_pipeline(pipe, kind, device=device if device is not None else default_device())


def editor_kind_of(path: str | os.PathLike) -> str | None:
    """The editor kind a saved pipeline folder holds, read from its ``model_index.json`` (None if unknown)."""
    index = Path(path).expanduser() / "model_index.json"
    if not index.is_file():
        return None
    name = json.loads(index.read_text()).get("_class_name", "")
    return next((kind for kind, cls in _PIPELINES.items() if cls == name), None)


@functools.lru_cache(maxsize=4)
def _load_cached(source: str, kind: str, device: str | None, dtype: torch.dtype | None) -> "Editor":
    return load_editor(source, kind, device=device, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _load_registered(name: str, device: str | None) -> "Editor":
    from photoshield.models.registry import load

    return load(name, device=device)


def as_editor(
    model: Any,
    kinds: Sequence[str] = KINDS,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    owner: str = "editor",
    error: type[Exception] = PhotoshieldError,
) -> "Editor":
    """An :class:`Editor` of one of ``kinds`` from an Editor, a pipeline object, a folder / hub id, or a registry name.

    The one place protect/, attacks/ and evaluate/ turn a user's ``editor=``/``model=`` into an
    Editor: a path or a registered small editor (``editor-kontext-small``, ``editor-unet-small``) is loaded
    once per process (cached), a path's kind read from ``model_index.json``
    or taken as the first of ``kinds``; argument errors are raised as ``error`` prefixed by ``owner``.
    """
    kinds = tuple(kinds)
    if isinstance(model, Editor):
        if model.kind not in kinds:
            raise error(f"{owner}: needs a {' or '.join(kinds)} editor, got a {model.kind} editor")
        return model
    if isinstance(model, str) and _registered_editor(model):
        device_key = str(torch.empty(0, device=device).device) if device is not None else None
        editor = _load_registered(model, device_key)
        if editor.kind not in kinds:
            raise error(f"{owner}: needs a {' or '.join(kinds)} editor, {model} is a {editor.kind} editor")
        return editor
    if isinstance(model, (str, os.PathLike)):
        kind = editor_kind_of(model) if len(kinds) > 1 else kinds[0]
        if kind is None:
            raise error(
                f"{owner}: cannot tell the editor kind of {os.fspath(model)} (no model_index.json naming a known "
                f"pipeline); pass the kind, one of {', '.join(kinds)} (CLI: --editor-kind KIND)"
            )
        if kind not in kinds:
            raise error(f"{owner}: needs a {' or '.join(kinds)} editor, {os.fspath(model)} holds a {kind} pipeline")
        # "cuda" and "cuda:0" are one device: normalise so every caller shares one cached copy
        device_key = str(torch.empty(0, device=device).device) if device is not None else None
        return _load_cached(os.fspath(model), kind, device_key, dtype)
    for kind in kinds:
        if isinstance(model, pipeline_class(kind)):
            return Editor.from_pipeline(model, kind, device=device)
    names = ", ".join(pipeline_class(kind).__name__ for kind in kinds)
    raise error(f"{owner}: needs a {names}, a photoshield Editor or a path, got {type(model).__name__}")


def bf16_supported(device: torch.device | str) -> bool:
    """True on a CUDA device that computes in bfloat16 (where loaded editors run in bf16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def resolve_editor(
    editor: Any, editor_kind: str | None = None, device: torch.device | str | None = None, owner: str = "editor"
) -> tuple["Editor", bool]:
    """An :class:`Editor` from an Editor, a diffusers pipeline, a folder, a hub id or a registry name; True when loaded here.

    A path or hub id is loaded once per process (shared by every caller that asks for the same
    editor, kind and device: protect/'s attention method and evaluate/'s editing measure hold one
    copy), on the default device unless ``device`` is given, in bfloat16 where the device supports it.
    """
    if editor is None:
        raise PhotoshieldError(
            f"{owner}: needs a diffusion editor: a diffusers pipeline folder (save_pretrained()), a hub id, "
            "a registered small editor (editor-kontext-small, editor-unet-small), or a loaded pipeline / Editor"
        )
    if editor_kind is not None and editor_kind not in KINDS:
        raise PhotoshieldError(f"unknown editor kind {editor_kind!r}; choose one of {', '.join(KINDS)}")
    kinds = (editor_kind,) if editor_kind else KINDS
    owned = isinstance(editor, (str, os.PathLike))
    if owned and device is None:
        from photoshield.models.registry import default_device

        device = default_device()
    dtype = torch.bfloat16 if owned and bf16_supported(device) else None
    return as_editor(editor, kinds, device=device if owned else None, dtype=dtype, owner=owner), owned


def _registered_editor(name: str) -> bool:
    """True when ``name`` is a registry checkpoint whose loader builds an Editor (the small editors)."""
    from photoshield.models.registry import checkpoints

    return any(checkpoint.name == name and "editor_kind" in checkpoint.extra for checkpoint in checkpoints())


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode == "nearest":
        return F.interpolate(images, size=size, mode="nearest")
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)


class Editor:
    """One diffusers editing pipeline with the operations protect/ and attacks/ need.

    The pipeline's networks are put in eval mode with frozen parameters: gradients flow to
    inputs (images, latents), never into weights.
    """

    def __init__(self, pipe: "DiffusionPipeline", kind: str):
        cls = pipeline_class(kind)
        if not isinstance(pipe, cls):
            raise TypeError(f"a {kind} editor needs a {cls.__name__}, got {type(pipe).__name__}")
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.requires_grad_(False).eval()
        self.pipe = pipe
        self.kind = kind
        self.max_sequence_length = 512  # T5 tokens per prompt (Flux)
        self.defaults: dict[str, Any] = {}  # edit() settings used when a call leaves them unset
        self._prompts: dict[str, PromptEmbeds] = {}
        self._encoders_freed = False

    @classmethod
    def from_pipeline(cls, pipe: "DiffusionPipeline", kind: str, device: str | torch.device | None = None) -> "Editor":
        """Wrap an existing pipeline object, optionally moving it to ``device``."""
        if device is not None:
            pipe.to(device)
        return cls(pipe, kind)

    def __repr__(self) -> str:
        name = type(self.pipe).__name__
        return f"Editor(kind={self.kind!r}, pipeline={name}, device={self.device}, dtype={self.dtype})"

    # ----------------------------------------------------------------- properties
    @property
    def is_flux(self) -> bool:
        return self.kind == "flux-kontext"

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet or Flux transformer."""
        return self.pipe.transformer if self.is_flux else self.pipe.unet

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
        """Image height and width must be multiples of this for encode_latents (Flux packs 2x2 latents)."""
        return self.vae_scale_factor * (2 if self.is_flux else 1)

    @property
    def text_length(self) -> int:
        """Text tokens per prompt as the denoiser sees them (CLIP length, or the T5 length for Flux)."""
        return self.max_sequence_length if self.is_flux else int(self.pipe.tokenizer.model_max_length)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The largest (h, w) <= (height, width) that the pipeline accepts."""
        m = self.size_multiple
        h, w = height // m * m, width // m * m
        if h == 0 or w == 0:
            raise ValueError(f"image of {height}x{width} is smaller than the {self.kind} editor's minimum {m}x{m}")
        return h, w

    # ----------------------------------------------------------------- prompts
    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> PromptEmbeds:
        if self.is_flux:
            embeds, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts, prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length
            )
            return PromptEmbeds(embeds, pooled)
        tokenizer, encoder = self.pipe.tokenizer, self.pipe.text_encoder
        tokens = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        use_mask = getattr(encoder.config, "use_attention_mask", False)
        mask = tokens.attention_mask.to(encoder.device) if use_mask else None
        embeds = encoder(tokens.input_ids.to(encoder.device), attention_mask=mask)[0]
        return PromptEmbeds(embeds.to(device=self.device, dtype=self.dtype))

    def encode_prompt(self, prompts: str | Sequence[str]) -> PromptEmbeds:
        """Encode prompts once and cache them (the empty prompt too, for classifier-free guidance)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        wanted = list(dict.fromkeys(prompts + ([] if self.is_flux else [""])))
        missing = [p for p in wanted if p not in self._prompts]
        if missing and self._encoders_freed:
            raise PhotoshieldError(
                f"prompt {missing[0]!r} was not encoded before free_text_encoders(); "
                "call encode_prompt() with the whole prompt pool first"
            )
        if missing:
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
        if self.kind == "sd-inpaint" and mask is None:
            raise ValueError("the sd-inpaint editor needs a mask (B, 1, H, W) with 1 where to repaint")
        if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (height, width)):
            raise ValueError(f"mask must have shape (B, 1, {height}, {width}), got {tuple(mask.shape)}")
        size = self.working_size(height, width)
        embeds = self.encode_prompt(prompts).to(self.device, self.dtype)
        settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
        if self.kind in ("sd-img2img", "sd-inpaint"):
            settings["strength"] = strength
        settings = {k: self.defaults.get(k) if v is None else v for k, v in settings.items()}
        kwargs = {k: v for k, v in settings.items() if v is not None}
        kwargs.update(
            image=_resize(image.float(), size).to(self.device),
            prompt_embeds=embeds.embeds,
            generator=torch.Generator("cpu").manual_seed(int(seed)),
            output_type="pt",
        )
        if self.is_flux:
            height_w, width_w = size
            kwargs.update(
                pooled_prompt_embeds=embeds.pooled,
                height=height_w,
                width=width_w,
                max_area=height_w * width_w,
                max_sequence_length=self.max_sequence_length,
                _auto_resize=False,
            )
        else:
            kwargs["negative_prompt_embeds"] = self.encode_prompt([""] * batch).to(self.device, self.dtype).embeds
        if self.kind == "sd-inpaint":
            mask_image = _resize(mask.float(), size, "nearest").to(self.device)
            kwargs.update(mask_image=mask_image, height=size[0], width=size[1])
        kwargs.update(pipe_kwargs)
        try:
            out = self.pipe(**kwargs).images
        except StopForward as error:
            message = "edit() cannot run inside stop_after() or capture_attention(stop_early=True)"
            raise PhotoshieldError(message) from error
        out = _resize(out.float().cpu(), (height, width)).clamp(0, 1).to(image.device)
        if mask is not None and self.kind != "sd-inpaint":
            mask = mask.to(out)
            out = mask * out + (1 - mask) * image.to(out)
        return out

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
        if self.kind == "instruct-pix2pix":
            return self._vae_mean(images)
        if self.kind == "flux-kontext":
            return self.encode_latents(images)
        if self.kind == "sd-inpaint":
            if mask is None:
                raise ValueError("sd-inpaint conditioning needs a mask (B, 1, H, W), 1 = repaint")
            binary = (mask.to(images) >= 0.5).to(images.dtype)
            masked = images * (1 - binary) + 0.5 * binary  # the pipeline zeroes masked pixels in [-1, 1]
            latents = self.encode_latents(masked)
            small = F.interpolate(binary, size=latents.shape[-2:], mode="nearest").expand(latents.shape[0], -1, -1, -1)
            return torch.cat([small.to(latents), latents], dim=1)
        return None

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The noisy latents at timestep ``t`` the denoiser expects (variance preserving, or flow matching for Flux)."""
        t = torch.as_tensor(t, device=latents.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        if self.is_flux:
            sigma = (t / 1000).to(latents.dtype)
            return (1 - sigma) * latents + sigma * noise
        alphas = self.pipe.scheduler.alphas_cumprod.to(latents.device)[t.long().flatten()].reshape(-1, 1, 1, 1)
        alphas = alphas.to(latents.dtype)
        return alphas.sqrt() * latents + (1 - alphas).sqrt() * noise

    def predict_original(self, noisy: torch.Tensor, prediction: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate from a denoiser prediction (epsilon, v or flow velocity)."""
        t = torch.as_tensor(t, device=noisy.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        if self.is_flux:
            return noisy - (t / 1000).to(noisy.dtype) * prediction
        alphas = self.pipe.scheduler.alphas_cumprod.to(noisy.device)[t.long().flatten()].reshape(-1, 1, 1, 1)
        a, s = alphas.sqrt().to(noisy.dtype), (1 - alphas).sqrt().to(noisy.dtype)
        if self.pipe.scheduler.config.prediction_type == "v_prediction":
            return a * noisy - s * prediction
        return (noisy - s * prediction) / a

    def pack_latents(self, latents: torch.Tensor, context: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Flux only: spatial latents (B, C, h, w) to tokens (B, h/2 * w/2, 4C) and their RoPE ids (N, 3)."""
        if not self.is_flux:
            raise TypeError(f"{self.kind} latents are not packed into tokens")
        b, c, h, w = latents.shape
        if h % 2 or w % 2:
            raise ValueError(f"Flux latents need even height and width, got {h}x{w}")
        tokens = self.pipe._pack_latents(latents, b, c, h, w)
        ids = self.pipe._prepare_latent_image_ids(b, h // 2, w // 2, latents.device, latents.dtype)
        if context:
            ids[..., 0] = 1  # Kontext marks context-image tokens in the first id axis
        return tokens, ids

    def unpack_latents(self, tokens: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """Flux only: tokens back to spatial latents of ``latent_size`` (h, w)."""
        h, w = latent_size
        f = self.vae_scale_factor
        return self.pipe._unpack_latents(tokens, h * f, w * f, f)

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
        if self.kind in ("sd-inpaint", "instruct-pix2pix", "flux-kontext") and condition is None:
            raise ValueError(f"{self.kind} denoise needs condition=editor.encode_condition(images, ...)")
        try:
            if self.is_flux:
                return self._flux_denoise(latents, t, embeds, condition.to(self.device, self.dtype), guidance_scale)
            x = latents
            if condition is not None:
                x = torch.cat([latents, condition.to(latents).expand(batch, -1, -1, -1)], dim=1)
            return self.denoiser(x, t, encoder_hidden_states=embeds.embeds, return_dict=False)[0]
        except StopForward:
            return None

    def _flux_denoise(self, latents, t, embeds: PromptEmbeds, context, guidance_scale: float) -> torch.Tensor:
        batch = latents.shape[0]
        target, target_ids = self.pack_latents(latents)
        ctx, ctx_ids = self.pack_latents(context.expand(batch, -1, -1, -1), context=True)
        guidance = None
        if self.denoiser.config.guidance_embeds:
            guidance = torch.full([batch], float(guidance_scale), device=self.device, dtype=torch.float32)
        text_ids = torch.zeros(embeds.embeds.shape[1], 3, device=self.device, dtype=self.dtype)
        out = self.denoiser(
            hidden_states=torch.cat([target, ctx], dim=1),
            timestep=(t / 1000).to(self.dtype),
            guidance=guidance,
            pooled_projections=embeds.pooled,
            encoder_hidden_states=embeds.embeds,
            txt_ids=text_ids,
            img_ids=torch.cat([target_ids, ctx_ids], dim=0),
            return_dict=False,
        )[0]
        return self.unpack_latents(out[:, : target.shape[1]], tuple(latents.shape[-2:]))

    # ----------------------------------------------------------------- attention
    def token_layout(self, latent_size: tuple[int, int], context_size: tuple[int, int] | None = None) -> TokenLayout:
        """Flux only: the joint-attention token ranges for target latents (and context latents) of these sizes."""
        if not self.is_flux:
            raise TypeError(f"{self.kind} has no joint token sequence")
        target = (latent_size[0] // 2, latent_size[1] // 2)
        context = (context_size[0] // 2, context_size[1] // 2) if context_size is not None else (0, 0)
        text, n_target = self.text_length, target[0] * target[1]
        return TokenLayout(
            text=slice(0, text),
            target=slice(text, text + n_target),
            context=slice(text + n_target, text + n_target + context[0] * context[1]),
            target_grid=target,
            context_grid=context,
        )

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
        scale = 1000.0 if self.is_flux else 1.0
        return _capture.capture_attention(self.denoiser, blocks, timesteps, detach, reduce, stop_early, scale)

    def stop_after(self, block: str) -> contextlib.AbstractContextManager[None]:
        """Context manager that cuts the denoiser forward after submodule ``block`` (denoise returns None)."""
        return _capture.stop_after(self.denoiser, block)
