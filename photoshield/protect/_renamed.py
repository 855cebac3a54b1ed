"""Old names of renamed protect/ classes, served with a DeprecationWarning by module ``__getattr__`` hooks."""

from __future__ import annotations

import warnings
from typing import Any

#: Old name -> new name. The protections were called attacks; the shaping chain was a second ``Compose``.
RENAMED = {
    "FacialAttack": "FacialProtection",
    "EncoderAttack": "EncoderProtection",
    "AttentionAttack": "AttentionProtection",
    "DeformationAttack": "DeformationProtection",
    "Compose": "ComposeShapers",
}


def warn_renamed(module: str, old: str) -> str:
    """Warn that ``module.old`` is deprecated and return its new name."""
    new = RENAMED[old]
    warnings.warn(f"{module}.{old} is deprecated; use {module}.{new}", DeprecationWarning, stacklevel=3)
    return new


def renamed_getattr(module: str, namespace: dict[str, Any], old_names: tuple[str, ...]):
    """A module ``__getattr__`` serving each of ``old_names`` as its new name in ``namespace`` (with a warning).

    In a module that defines ``FacialProtection``::

        __getattr__ = renamed_getattr(__name__, globals(), ("FacialAttack",))
    """

    def __getattr__(name: str) -> Any:
        if name in old_names:
            return namespace[warn_renamed(module, name)]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
