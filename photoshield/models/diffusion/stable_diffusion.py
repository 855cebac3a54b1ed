"""Stable Diffusion editors: img2img (SDEdit), inpainting and InstructPix2Pix, one class per kind.

All three run a UNet over spatial latents (B, 4, h, w) with CLIP text embeddings in its
cross-attention, a variance-preserving scheduler (epsilon or v prediction) and classifier-free
guidance against the empty prompt. They differ in what the UNet sees besides the noisy latents:

* :class:`StableDiffusionImg2ImgEditor` (``sd-img2img``): nothing; ``strength`` sets how far the photo is noised.
* :class:`StableDiffusionInpaintEditor` (``sd-inpaint``): the latent-size mask and the masked-image latents.
* :class:`InstructPix2PixEditor` (``instruct-pix2pix``): the photo's unscaled latents.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .editor import Editor, PromptEmbeds, resize

__all__ = ["InstructPix2PixEditor", "StableDiffusionEditor", "StableDiffusionImg2ImgEditor", "StableDiffusionInpaintEditor"]


class StableDiffusionEditor(Editor):
    """What the Stable Diffusion kinds share: a UNet, CLIP prompts, a variance-preserving scheduler."""

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet."""
        return self.pipe.unet

    @property
    def text_length(self) -> int:
        """CLIP tokens per prompt."""
        return int(self.pipe.tokenizer.model_max_length)

    def _encode_new(self, prompts: list[str]) -> PromptEmbeds:
        tokenizer, encoder = self.pipe.tokenizer, self.pipe.text_encoder
        tokens = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        use_mask = getattr(encoder.config, "use_attention_mask", False)
        mask = tokens.attention_mask.to(encoder.device) if use_mask else None
        embeds = encoder(tokens.input_ids.to(encoder.device), attention_mask=mask)[0]
        return PromptEmbeds(embeds.to(device=self.device, dtype=self.dtype))

    def _edit_kwargs(self, embeds: PromptEmbeds, size: tuple[int, int], mask: torch.Tensor | None) -> dict[str, Any]:
        negative = self.encode_prompt([""] * len(embeds)).to(self.device, self.dtype).embeds
        return {"negative_prompt_embeds": negative}

    def _alphas(self, t: torch.Tensor, device: torch.device) -> torch.Tensor:
        alphas = self.pipe.scheduler.alphas_cumprod.to(device)
        return alphas[t.long().flatten()].reshape(-1, 1, 1, 1)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The noisy latents at timestep ``t`` (variance preserving: sqrt(a) x + sqrt(1 - a) noise)."""
        t = torch.as_tensor(t, device=latents.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        alphas = self._alphas(t, latents.device).to(latents.dtype)
        return alphas.sqrt() * latents + (1 - alphas).sqrt() * noise

    def predict_original(self, noisy: torch.Tensor, prediction: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate from an epsilon or v prediction (the scheduler's ``prediction_type``)."""
        t = torch.as_tensor(t, device=noisy.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        alphas = self._alphas(t, noisy.device)
        a, s = alphas.sqrt().to(noisy.dtype), (1 - alphas).sqrt().to(noisy.dtype)
        if self.pipe.scheduler.config.prediction_type == "v_prediction":
            return a * noisy - s * prediction
        return (noisy - s * prediction) / a

    def _denoise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        embeds: PromptEmbeds,
        condition: torch.Tensor | None,
        guidance_scale: float,
    ) -> torch.Tensor:
        x = latents
        if condition is not None:
            x = torch.cat([latents, condition.to(latents).expand(latents.shape[0], -1, -1, -1)], dim=1)
        return self.denoiser(x, t, encoder_hidden_states=embeds.embeds, return_dict=False)[0]


class StableDiffusionImg2ImgEditor(StableDiffusionEditor):
    """A ``StableDiffusionImg2ImgPipeline`` (SDEdit): the photo's latents are noised to ``strength`` and denoised."""

    kind = "sd-img2img"
    edit_settings = ("num_inference_steps", "guidance_scale", "strength")
    needs_condition = False

    def encode_condition(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """None: the img2img UNet sees only the noisy latents."""
        return None


class StableDiffusionInpaintEditor(StableDiffusionEditor):
    """A ``StableDiffusionInpaintPipeline``: repaints inside a mask (1 = repaint), which edit() requires."""

    kind = "sd-inpaint"
    edit_settings = ("num_inference_steps", "guidance_scale", "strength")
    mask_required = True

    def _edit_kwargs(self, embeds: PromptEmbeds, size: tuple[int, int], mask: torch.Tensor | None) -> dict[str, Any]:
        kwargs = super()._edit_kwargs(embeds, size, mask)
        mask_image = resize(mask.float(), size, "nearest").to(self.device)
        kwargs.update(mask_image=mask_image, height=size[0], width=size[1])
        return kwargs

    def encode_condition(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """Latent-size mask and masked-image latents (B, 1 + 4, h, w) of images (B, 3, H, W), mask 1 = repaint."""
        if mask is None:
            raise ValueError("sd-inpaint conditioning needs a mask (B, 1, H, W), 1 = repaint")
        binary = (mask.to(images) >= 0.5).to(images.dtype)
        masked = images * (1 - binary) + 0.5 * binary  # the pipeline zeroes masked pixels in [-1, 1]
        latents = self.encode_latents(masked)
        small = F.interpolate(binary, size=latents.shape[-2:], mode="nearest").expand(latents.shape[0], -1, -1, -1)
        return torch.cat([small.to(latents), latents], dim=1)


class InstructPix2PixEditor(StableDiffusionEditor):
    """A ``StableDiffusionInstructPix2PixPipeline``: edits by instruction, conditioned on the photo's latents."""

    kind = "instruct-pix2pix"

    def encode_condition(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The unscaled VAE latents (B, 4, h, w) of images (B, 3, H, W), as the pipeline concatenates them."""
        return self._vae_mean(images)
