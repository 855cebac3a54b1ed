"""photoshield: protect photos before they are shared.

Three jobs, one library: ``protect`` (adversarial perturbations), ``watermark``
(robust ownership marks) and ``attacks`` (simulations used to measure both).
"""

from photoshield.errors import ImageError, ModelNotFoundError, PhotoshieldError

__version__ = "0.1.0"

__all__ = ["ImageError", "ModelNotFoundError", "PhotoshieldError", "__version__"]
