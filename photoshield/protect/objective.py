"""What a protection method hands to the engine: a loss, where the perturbation may go, and a judge.

Every method (facial, encoder, attention, deformation) builds an :class:`Objective`
for a batch of clean images; :func:`photoshield.protect.protect` runs the shared
engine on it and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .optim import LossFn


@dataclass
class Objective:
    """A protection objective for one batch of clean images.

    ``loss_fn(x_adv)`` returns one loss per image (lower is better for the protector);
    ``mask`` (B, 1, H, W) in [0, 1] limits the perturbation (None: everywhere);
    ``measure(x) -> dict`` gives human-readable figures for the report (e.g. identity
    distance to the clean face); ``target_loss`` lets the engine stop early; ``skip``
    marks images the method cannot protect (e.g. no face), which are left unchanged.

    Args:
        loss_fn: ``loss_fn(x_adv) -> (B,)`` losses, differentiable in ``x_adv``.
        mask: where the perturbation may go, and how much of the budget each pixel gets.
        measure: figures for the report, called on the clean and on the protected images.
        target_loss: stop once every image's loss is at or below it.
        skip: images to leave unchanged.
        info: extra report entries.
        steps_scale: the method's share of the preset's engine steps when the caller sets none (a method
            whose steps are costly and converge early, such as ``deformation``, uses fewer).
        engine: engine settings (:class:`PGDConfig` fields, e.g. ``momentum``) the method works best with:
            they replace the preset's, not the caller's own.
        region: where a PSNR budget (``protect(..., psnr=...)``) is measured, e.g. the face boxes; None: the
            whole image.

    Shapes:
        - loss_fn: (B, 3, H, W) -> (B,)
        - mask: (B or 1, 1, H, W) in [0, 1]
        - skip: (B,) bool
        - region: (B or 1, 1, H, W) in {0, 1}

    Examples:
        >>> import torch
        >>> from photoshield.protect import Objective, PGDConfig, run_pgd
        >>> top = torch.zeros(1, 1, 8, 8)
        >>> top[..., :4, :] = 1  # only the top half may change
        >>> objective = Objective(loss_fn=lambda x: x.mean(dim=(1, 2, 3)), mask=top)
        >>> result = run_pgd(objective.loss_fn, torch.full((1, 3, 8, 8), 0.5), PGDConfig(steps=3, progress=False),
        ...                  mask=objective.mask)
        >>> bool(result.delta[..., 4:, :].eq(0).all()), bool(result.delta[..., :4, :].lt(0).all())
        (True, True)
    """

    loss_fn: LossFn
    mask: torch.Tensor | None = None
    measure: Callable[[torch.Tensor], dict[str, Any]] | None = None
    target_loss: float | None = None
    skip: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    steps_scale: float = 1.0
    region: torch.Tensor | None = None
    engine: dict[str, Any] = field(default_factory=dict)
