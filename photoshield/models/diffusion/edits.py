"""The colour-grading edits the small editors are trained to make, as plain differentiable functions.

Each edit maps images (B, 3, H, W) in [0, 1] to graded copies of the same size. They are the training
targets of ``editor-kontext-small`` (one edit, ``warm``) and ``editor-unet-small`` (all of them, chosen
by prompt), and the reference that edit quality is measured against: an editor "does its edit" when its
output is close to ``apply_edit(photo, name)``. The empty name is the identity (no edit), which the UNet
editor learns as its unconditional prompt for classifier-free guidance.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["EDITS", "EDIT_PROMPTS", "apply_edit", "edit_names"]

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _luma(images: torch.Tensor) -> torch.Tensor:
    return (images * _LUMA.to(images)).sum(1, keepdim=True)


def _gains(images: torch.Tensor, gains: tuple[float, float, float], lift: tuple[float, float, float]) -> torch.Tensor:
    gain = torch.tensor(gains, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    offset = torch.tensor(lift, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return images * gain + offset


def warm(images: torch.Tensor) -> torch.Tensor:
    """Golden-hour grade: red/yellow up, blue down, shadows lifted warm, a gentle contrast curve."""
    graded = _gains(images, (1.12, 1.02, 0.80), (0.04, 0.02, 0.0))
    curved = graded + 0.25 * (graded - 0.5) * (1 - (2 * graded - 1).abs())  # soft S-curve
    return curved.clamp(0, 1)


def cool(images: torch.Tensor) -> torch.Tensor:
    """Blue-hour grade: blue and cyan up, red down, slightly darker."""
    return _gains(images, (0.82, 0.96, 1.12), (0.0, 0.02, 0.05)).mul(0.95).clamp(0, 1)


def mono(images: torch.Tensor) -> torch.Tensor:
    """Sepia toning: the luma, tinted brown."""
    luma = _luma(images)
    return (luma * torch.tensor([1.07, 0.86, 0.62], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
            + 0.04).clamp(0, 1)


def vivid(images: torch.Tensor) -> torch.Tensor:
    """Punchy grade: saturation x1.7 around the luma and contrast x1.2 around mid-grey."""
    luma = _luma(images)
    saturated = luma + 1.7 * (images - luma)
    return (0.5 + 1.2 * (saturated - 0.5)).clamp(0, 1)


EDITS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "": lambda images: images,
    "warm": warm,
    "cool": cool,
    "mono": mono,
    "vivid": vivid,
}

#: The prompt each edit is trained on (the UNet editor's text encoder learns these exact strings).
EDIT_PROMPTS: dict[str, str] = {
    "": "",
    "warm": "golden hour warm grade",
    "cool": "cool blue hour grade",
    "mono": "sepia toned photo",
    "vivid": "vivid saturated colours",
}


def edit_names(include_identity: bool = False) -> list[str]:
    """The edit names (without the identity unless asked)."""
    return [name for name in EDITS if name or include_identity]


def apply_edit(images: torch.Tensor, name: str) -> torch.Tensor:
    """The reference edit ``name`` of images in [0, 1]; a clear error for an unknown name."""
    if name not in EDITS:
        raise ValueError(f"unknown edit {name!r}; choose one of {', '.join(edit_names())}")
    return EDITS[name](images)
