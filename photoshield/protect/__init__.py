"""Adversarial protections: make AI misuse of a photo fail.

``protect(image, method="facial" | "encoder" | "attention" | "deformation", epsilon=8/255, preset="standard")`` is the
one call; ``protect_file("me.jpg")``, or ``photoshield.protect("me.jpg")``, also writes ``me.protected.png``.
The engine (:mod:`.optim`), shaping (:mod:`.shaping`) and each method's objective live in their own modules.
"""

import importlib
import os
import sys
import types
from typing import Any

from ._renamed import RENAMED, warn_renamed
from .api import PRESETS, ProtectionResult, methods, protect, register_method
from .files import protect_file
from .objective import Objective
from .optim import PGDConfig, PGDResult, run_pgd

#: The protections, configured once and called per batch (``FacialProtection(...).objective(images)``),
#: imported from their modules on first use.
_PROTECTIONS = {
    "AttentionProtection": "attention",
    "DeformationProtection": "deformation",
    "EncoderProtection": "encoder",
    "FacialProtection": "facial",
}

__all__ = [
    "PRESETS",
    "AttentionProtection",
    "DeformationProtection",
    "EncoderProtection",
    "FacialProtection",
    "Objective",
    "PGDConfig",
    "PGDResult",
    "ProtectionResult",
    "methods",
    "protect",
    "protect_file",
    "register_method",
    "run_pgd",
]


def __getattr__(name: str) -> Any:
    """The protection classes, imported lazily; their old ``...Attack`` names with a DeprecationWarning."""
    if name in RENAMED and RENAMED[name] in _PROTECTIONS:
        name = warn_renamed(__name__, name)
    if name in _PROTECTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_PROTECTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``photoshield.protect`` itself is callable, so that ``import photoshield as ps; ps.protect("me.jpg")`` works:
    a path is protected and written next to itself (:func:`protect_file`, which returns the result with its
    ``path``); a tensor or PIL image is protected and returned, nothing written (:func:`protect`)."""

    def __call__(self, image: Any, *args: Any, **options: Any) -> ProtectionResult:
        if isinstance(image, (str, os.PathLike)):
            return protect_file(image, *args, **options)
        return protect(image, *args, **options)


sys.modules[__name__].__class__ = _CallableModule
