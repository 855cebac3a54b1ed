"""Compatibility alias: segmentation prompts and agreement live in :mod:`photoshield.models.sam.prompts`.

protect/ (the deformation method's measure) and evaluate/ both use them, so they sit in the models layer.
"""

from ..models.sam.prompts import (  # noqa: F401
    Prompts,
    __all__,
    draw_prompts,
    mask_iou,
    predict_prompts,
    propose_masks,
    segmentation_agreement,
    supports_points,
)
