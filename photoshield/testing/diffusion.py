"""Tiny random diffusers pipelines for tests and examples, built offline from configs (production code never imports this).

They follow the diffusers test suite's ``get_dummy_components()``: the real pipeline
classes with tiny random UNet / Flux transformer, VAE and text encoders, plus tokenizers
built in memory (no hub files). Outputs are noise-like, but every code path is real.
"""

from __future__ import annotations

import torch

from ..models.diffusion import KINDS, Editor, pipeline_class
from ..models.diffusion.text_encoders import CLIP_LENGTH, T5_LENGTH
from ..models.diffusion.text_encoders import clip_tokenizer as tiny_clip_tokenizer
from ..models.diffusion.text_encoders import small_clip_text_encoder as tiny_clip_text_encoder
from ..models.diffusion.text_encoders import small_t5_encoder as tiny_t5_encoder
from ..models.diffusion.text_encoders import t5_tokenizer as tiny_t5_tokenizer

__all__ = [
    "CLIP_LENGTH",
    "T5_LENGTH",
    "tiny_clip_text_encoder",
    "tiny_clip_tokenizer",
    "tiny_components",
    "tiny_editor",
    "tiny_flux_transformer",
    "tiny_flux_vae",
    "tiny_sd_vae",
    "tiny_t5_encoder",
    "tiny_t5_tokenizer",
    "tiny_unet",
]


def tiny_unet(seed: int, in_channels: int):
    """A two-level UNet2DConditionModel with cross-attention at both levels (8 heads, text width 32)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
    ).eval()


def tiny_sd_vae(seed: int):
    """A 2-level AutoencoderKL with 4 latent channels (downsampling factor 2)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=32,
    ).eval()


def tiny_flux_vae(seed: int):
    """A 2-level AutoencoderKL with Flux's 16 latent channels, shift and scale, no quant convs."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=16,
        norm_num_groups=8,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    ).eval()


def tiny_flux_transformer(seed: int):
    """A Flux transformer with one double- and one single-stream block, 2 heads of 16, guidance embedding."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()


def _sd_scheduler(kind: str):
    from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler

    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    if kind == "instruct-pix2pix":
        return EulerAncestralDiscreteScheduler(**betas)
    return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **betas)


def tiny_components(kind: str, seed: int = 0) -> dict:
    """The components of a tiny random pipeline of ``kind``, as keyword arguments of its class."""
    if kind not in KINDS:
        raise ValueError(f"unknown editor kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "flux-kontext":
        from diffusers import FlowMatchEulerDiscreteScheduler

        return {
            "scheduler": FlowMatchEulerDiscreteScheduler(
                use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, shift=3.0
            ),
            "vae": tiny_flux_vae(seed),
            "text_encoder": tiny_clip_text_encoder(seed),
            "tokenizer": tiny_clip_tokenizer(),
            "text_encoder_2": tiny_t5_encoder(seed),
            "tokenizer_2": tiny_t5_tokenizer(),
            "transformer": tiny_flux_transformer(seed),
            "image_encoder": None,
            "feature_extractor": None,
        }
    in_channels = {"sd-img2img": 4, "sd-inpaint": 9, "instruct-pix2pix": 8}[kind]
    return {
        "unet": tiny_unet(seed, in_channels),
        "scheduler": _sd_scheduler(kind),
        "vae": tiny_sd_vae(seed),
        "text_encoder": tiny_clip_text_encoder(seed),
        "tokenizer": tiny_clip_tokenizer(),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def tiny_editor(kind: str, seed: int = 0, device: str | torch.device | None = None) -> Editor:
    """An :class:`Editor` over a tiny random pipeline of ``kind``; runs a full edit on CPU in about a second."""
    pipe = pipeline_class(kind)(**tiny_components(kind, seed))
    pipe.set_progress_bar_config(disable=True)
    editor = Editor.from_pipeline(pipe, kind, device=device or "cpu")
    if kind == "flux-kontext":
        editor.max_sequence_length = T5_LENGTH
    return editor
