"""photoshield: protect photos before they are shared.

Three jobs, one library: ``protect`` (adversarial perturbations), ``watermark``
(robust ownership marks) and ``attacks`` (simulations used to measure both).
"""

from . import progress  # noqa: F401  (first: loads tqdm.auto without its notebook warning, see progress.py)
from .errors import ImageError, ModelNotFoundError, PhotoshieldError

__version__ = "0.1.0"

#: Modules above ``models/`` that register their checkpoints in ``photoshield.models.registry`` when
#: imported. The registry imports them (with its own providers) on its first lookup, so that
#: ``models.load(name)`` finds every shipped checkpoint without the caller importing anything first,
#: while ``models/`` itself names nothing above it. Listed here, in the package that holds every layer.
CHECKPOINT_PROVIDERS: tuple[str, ...] = ("photoshield.watermark.model",)

__all__ = ["ImageError", "ModelNotFoundError", "PhotoshieldError", "__version__"]

#: Subpackages reachable as attributes, imported on first use: ``import photoshield as ps; ps.protect("me.jpg")``,
#: ``ps.watermark.embed("a.jpg", "ID-1", key=...)``, ``ps.attacks.get("jpeg", quality=50)``.
_SUBPACKAGES = ("attacks", "data", "evaluate", "image", "io", "metrics", "models", "protect", "watermark")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
