"""photoshield: protect photos before they are shared.

Three jobs, one library: ``protect`` (adversarial perturbations), ``watermark``
(robust ownership marks) and ``attacks`` (simulations used to measure both).
"""

from photoshield.errors import ImageError, ModelNotFoundError, PhotoshieldError

__version__ = "0.1.0"

#: Modules above ``models/`` that register their checkpoints in ``photoshield.models.registry`` when
#: imported. The registry imports them (with its own providers) on its first lookup, so that
#: ``models.load(name)`` finds every shipped checkpoint without the caller importing anything first,
#: while ``models/`` itself names nothing above it. Listed here, in the package that holds every layer.
CHECKPOINT_PROVIDERS: tuple[str, ...] = ("photoshield.watermark.model",)

__all__ = ["ImageError", "ModelNotFoundError", "PhotoshieldError", "__version__"]
