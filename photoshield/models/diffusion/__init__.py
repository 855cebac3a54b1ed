"""Diffusion editors: one adapter class per pipeline kind, how to load them, attention capture, the small editors.

==========================  ===================================================================
module                      holds
==========================  ===================================================================
:mod:`.editor`              :class:`Editor`, the shared adapter (edit, encode, denoise, attention)
:mod:`.stable_diffusion`    the sd-img2img, sd-inpaint and instruct-pix2pix editors (UNet)
:mod:`.flux_kontext`        the flux-kontext editor (in-context DiT)
:mod:`.loading`             :func:`load_editor`, :func:`resolve_editor`: from a folder, hub id or name
:mod:`.attention_capture`   attention maps through diffusers attention processors
:mod:`.small_editors`       ``editor-kontext-small`` and ``editor-unet-small``, trained here
:mod:`.edits`               the colour grades the small editors are trained to make
:mod:`.text_encoders`       in-memory tokenizers and small text encoders
==========================  ===================================================================

Example::

    from photoshield.models.diffusion import load_editor

    editor = load_editor("path/to/pipeline", "sd-img2img")   # a StableDiffusionImg2ImgEditor
    edited = editor.edit(images, "make it snowy")            # (B, 3, H, W) in [0, 1]
"""

from .attention_capture import AttentionCapture, TokenLayout
from .editor import KINDS, Editor, PromptEmbeds, editor_class, pipeline_class
from .flux_kontext import FluxKontextEditor
from .loading import as_editor, bf16_supported, editor_kind_of, load_editor, resolve_editor
from .stable_diffusion import (
    InstructPix2PixEditor,
    StableDiffusionEditor,
    StableDiffusionImg2ImgEditor,
    StableDiffusionInpaintEditor,
)

__all__ = [
    "KINDS",
    "AttentionCapture",
    "Editor",
    "FluxKontextEditor",
    "InstructPix2PixEditor",
    "PromptEmbeds",
    "StableDiffusionEditor",
    "StableDiffusionImg2ImgEditor",
    "StableDiffusionInpaintEditor",
    "TokenLayout",
    "as_editor",
    "bf16_supported",
    "editor_class",
    "editor_kind_of",
    "load_editor",
    "pipeline_class",
    "resolve_editor",
]
