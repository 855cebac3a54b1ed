"""How broken is the edit: run one editor, prompt and seed on the clean and the protected photo, compare.

Functional helpers returning dicts of floats (batch means), for the evaluation runner:

- :func:`edit_disruption` — PSNR / SSIM / RMSE between the edit of the clean photo and the
  edit of the protected photo (low PSNR = the protection changed the edit), the Flux
  context-attention mass of both photos, and, when the original has a face, the
  identity similarity of each edit's face to the original face.
- :func:`noise_baseline` — a random perturbation of the same L_inf budget, the control a
  protection must beat (same editor, prompt and seed).
- :func:`edit_photo` — one edit (the clean photo's edit, made once and passed back to
  :func:`edit_disruption` as ``edited_clean`` when many protected copies share it).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import PhotoshieldError
from ..metrics import psnr, rmse255, ssim

__all__ = ["edit_disruption", "edit_pair", "edit_photo", "identity_to_original", "noise_baseline"]


def noise_baseline(images: torch.Tensor, epsilon: float, seed: int = 0) -> torch.Tensor:
    """``images`` plus random +-epsilon (L_inf) sign noise, clamped to [0, 1] and rounded to the 8-bit grid."""
    from ..protect.api import quantize_within_budget

    generator = torch.Generator("cpu").manual_seed(seed)
    signs = torch.randint(0, 2, images.shape, generator=generator).to(images) * 2 - 1
    return quantize_within_budget(images, signs * epsilon, epsilon)


def _default_mask(images: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    mask = images.new_zeros(1, 1, height, width)
    mask[..., height // 4 : height - height // 4, width // 4 : width - width // 4] = 1
    return mask


@torch.no_grad()
def edit_photo(
    editor: Any,
    image: torch.Tensor,
    prompt: str | Sequence[str],
    seed: int = 0,
    mask: torch.Tensor | None = None,
    **edit_kwargs: Any,
) -> torch.Tensor:
    """One edit of ``image`` as :func:`edit_pair` makes it (sd-inpaint without a mask repaints the central box)."""
    if mask is None and editor.kind == "sd-inpaint":
        mask = _default_mask(image).expand(image.shape[0], -1, -1, -1)
    return editor.edit(image, prompt, seed=seed, mask=mask, **edit_kwargs)


@torch.no_grad()
def edit_pair(
    editor: Any,
    clean: torch.Tensor,
    protected: torch.Tensor,
    prompt: str | Sequence[str],
    seed: int = 0,
    mask: torch.Tensor | None = None,
    **edit_kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edits of ``clean`` and ``protected`` with the same editor, prompt, seed (and mask for sd-inpaint)."""
    if clean.shape != protected.shape:
        raise ValueError(f"clean and protected photos differ in shape: {tuple(clean.shape)} vs {tuple(protected.shape)}")
    return edit_photo(editor, clean, prompt, seed, mask, **edit_kwargs), edit_photo(editor, protected, prompt, seed, mask, **edit_kwargs)


@torch.no_grad()
def identity_to_original(original: torch.Tensor, edited: torch.Tensor) -> dict[str, float]:
    """dlib cosine / distance of the main face of each edit to the original's face; empty if the original has none."""
    from ..models import face

    try:
        reference = face.embed_faces(original)
    except PhotoshieldError:
        return {}
    figures: dict[str, float] = {"faces": float(reference.shape[0])}
    cosines, distances, lost = [], [], 0
    for i in range(edited.shape[0]):
        try:
            found = face.embed_faces(edited[i : i + 1])
        except PhotoshieldError:
            lost += 1
            continue
        cosines.append(float(face.identity_cosine(found, reference[i : i + 1])[0]))
        distances.append(float(face.identity_distance(found, reference[i : i + 1])[0]))
    figures["faces_lost_in_edit"] = float(lost)
    if cosines:
        figures["identity_cosine"] = sum(cosines) / len(cosines)
        figures["identity_distance"] = sum(distances) / len(distances)
    return figures


def edit_disruption(
    editor: Any,
    clean: torch.Tensor,
    protected: torch.Tensor,
    prompt: str | Sequence[str],
    seed: int = 0,
    mask: torch.Tensor | None = None,
    faces: bool = True,
    context_mass: bool = True,
    context_prompts: Sequence[str] | None = None,
    edited_clean: torch.Tensor | None = None,
    **edit_kwargs: Any,
) -> dict[str, float]:
    """How different the protected photo's edit is from the clean photo's edit, as a dict of floats.

    ``psnr_db`` / ``ssim`` / ``rmse255`` between the two edits (batch means); for Flux
    Kontext ``context_mass_clean`` / ``context_mass_protected`` (attention mass from the
    generated latent to the photo's tokens); with a face in ``clean``,
    ``identity_cosine_clean_edit`` / ``identity_cosine_protected_edit`` (and distances)
    of each edit's face to the original face. ``editor`` is a photoshield ``Editor``.
    ``edited_clean``: the clean photo's edit made before (:func:`edit_photo`, same prompt,
    seed and settings), reused instead of editing ``clean`` again.
    """
    if edited_clean is None:
        edited_clean, edited_protected = edit_pair(editor, clean, protected, prompt, seed, mask, **edit_kwargs)
    elif edited_clean.shape != protected.shape:
        raise ValueError(f"edited_clean and protected photos differ in shape: {tuple(edited_clean.shape)} vs {tuple(protected.shape)}")
    else:
        edited_protected = edit_photo(editor, protected, prompt, seed, mask, **edit_kwargs)
    figures = {
        "psnr_db": float(psnr(edited_clean, edited_protected).clamp(max=100).mean()),
        "ssim": float(ssim(edited_clean, edited_protected).mean()),
        "rmse255": float(rmse255(edited_clean, edited_protected).mean()),
        "input_psnr_db": float(psnr(clean, protected).clamp(max=100).mean()),
    }
    if context_mass and editor.is_flux:
        from ..protect.attention import AttentionProtection

        prompts = list(context_prompts) if context_prompts else ([prompt] if isinstance(prompt, str) else list(prompt))
        probe = AttentionProtection(editor, prompts=prompts, faces=False, gradient_checkpointing=False)
        before, after = probe.context_mass(clean), probe.context_mass(protected)
        figures["context_mass_clean"] = float(before.mean())
        figures["context_mass_protected"] = float(after.mean())
        figures["context_mass_ratio"] = float((after / before.clamp_min(1e-12)).mean())
    if faces:
        for label, edited in (("clean_edit", edited_clean), ("protected_edit", edited_protected)):
            for key, value in identity_to_original(clean, edited).items():
                figures[key if key == "faces" else f"{key}_{label}"] = value
    return figures
