"""The Flux Kontext editor: an in-context DiT over joint text, target and context-image tokens.

The photo is encoded to context latents, packed 2x2 into tokens whose RoPE ids are marked 1 in the
first axis (as Kontext does) and appended to the target tokens; the transformer attends jointly over
text, target and context tokens. The scheduler is flow matching: timesteps are sigma * 1000.
"""

from __future__ import annotations

from typing import Any

import torch

from .attention_capture import TokenLayout
from .editor import Editor, PromptEmbeds

__all__ = ["FluxKontextEditor"]


class FluxKontextEditor(Editor):
    """A ``FluxKontextPipeline``: edits by prompt, the photo given as context-image tokens."""

    kind = "flux-kontext"
    is_flux = True
    uses_empty_prompt = False
    timestep_scale = 1000.0

    @property
    def denoiser(self) -> torch.nn.Module:
        """The Flux transformer."""
        return self.pipe.transformer

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this for encode_latents (Flux packs 2x2 latents)."""
        return self.vae_scale_factor * 2

    @property
    def text_length(self) -> int:
        """T5 tokens per prompt."""
        return self.max_sequence_length

    def _encode_new(self, prompts: list[str]) -> PromptEmbeds:
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length
        )
        return PromptEmbeds(embeds, pooled)

    def _edit_kwargs(self, embeds: PromptEmbeds, size: tuple[int, int], mask: torch.Tensor | None) -> dict[str, Any]:
        height, width = size
        return {
            "pooled_prompt_embeds": embeds.pooled,
            "height": height,
            "width": width,
            "max_area": height * width,
            "max_sequence_length": self.max_sequence_length,
            "_auto_resize": False,
        }

    def encode_condition(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The context latents (B, C, h, w) of images (B, 3, H, W): the same as encode_latents."""
        return self.encode_latents(images)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The noisy latents at timestep ``t`` (flow matching: (1 - sigma) x + sigma noise, sigma = t / 1000)."""
        t = torch.as_tensor(t, device=latents.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        sigma = (t / 1000).to(latents.dtype)
        return (1 - sigma) * latents + sigma * noise

    def predict_original(self, noisy: torch.Tensor, prediction: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate from a flow-velocity prediction."""
        t = torch.as_tensor(t, device=noisy.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        return noisy - (t / 1000).to(noisy.dtype) * prediction

    def pack_latents(self, latents: torch.Tensor, context: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial latents (B, C, h, w) to tokens (B, h/2 * w/2, 4C) and their RoPE ids (N, 3)."""
        b, c, h, w = latents.shape
        if h % 2 or w % 2:
            raise ValueError(f"Flux latents need even height and width, got {h}x{w}")
        tokens = self.pipe._pack_latents(latents, b, c, h, w)
        ids = self.pipe._prepare_latent_image_ids(b, h // 2, w // 2, latents.device, latents.dtype)
        if context:
            ids[..., 0] = 1  # Kontext marks context-image tokens in the first id axis
        return tokens, ids

    def unpack_latents(self, tokens: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """Tokens back to spatial latents of ``latent_size`` (h, w)."""
        h, w = latent_size
        f = self.vae_scale_factor
        return self.pipe._unpack_latents(tokens, h * f, w * f, f)

    def _denoise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        embeds: PromptEmbeds,
        condition: torch.Tensor | None,
        guidance_scale: float,
    ) -> torch.Tensor:
        batch = latents.shape[0]
        context = condition.to(self.device, self.dtype)
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

    def token_layout(self, latent_size: tuple[int, int], context_size: tuple[int, int] | None = None) -> TokenLayout:
        """The joint-attention token ranges for target latents (and context latents) of these sizes."""
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
