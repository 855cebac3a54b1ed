"""What a protection method hands to the engine: a loss, where the perturbation may go, and a judge.

Every method (facial, encoder, attention, deformation) builds an :class:`Objective`
for a batch of clean images; :func:`photoshield.protect.protect` runs the shared
engine on it and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from photoshield.protect.optim import LossFn


@dataclass
class Objective:
    """A protection objective for one batch of clean images.

    ``loss_fn(x_adv)`` returns one loss per image (lower is better for the protector);
    ``mask`` (B, 1, H, W) in [0, 1] limits the perturbation (None: everywhere);
    ``measure(x) -> dict`` gives human-readable figures for the report (e.g. identity
    distance to the clean face); ``target_loss`` lets the engine stop early; ``skip``
    marks images the method cannot protect (e.g. no face), which are left unchanged.
    """

    loss_fn: LossFn
    mask: torch.Tensor | None = None
    measure: Callable[[torch.Tensor], dict[str, Any]] | None = None
    target_loss: float | None = None
    skip: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
