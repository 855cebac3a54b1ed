"""Adversarial protections: make AI misuse of a photo fail.

``protect(image, method="facial" | "encoder" | "attention" | "deformation", epsilon=8/255, preset="standard")`` is the
one call; the engine (:mod:`.optim`), shaping (:mod:`.shaping`) and each method's
objective live in their own modules.
"""

from photoshield.protect.api import PRESETS, ProtectionResult, methods, protect, register_method
from photoshield.protect.objective import Objective
from photoshield.protect.optim import PGDConfig, PGDResult, run_pgd

__all__ = [
    "PRESETS",
    "Objective",
    "PGDConfig",
    "PGDResult",
    "ProtectionResult",
    "methods",
    "protect",
    "register_method",
    "run_pgd",
]
