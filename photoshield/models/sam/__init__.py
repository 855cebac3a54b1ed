"""Promptable segmentation (SAM family): the segmenters, their networks and how prompts are drawn.

===================  =======================================================================
module               holds
===================  =======================================================================
:mod:`.segmenter`    the :class:`Segmenter` interface, LiteMedSAM, transformers ``SamModel``
:mod:`.tinyvit`      LiteMedSAM's TinyViT image encoder
:mod:`.heads`        SAM's prompt encoder and two-way-transformer mask decoder
:mod:`.prompts`      box / point prompts from clean masks, and clean-vs-protected agreement
===================  =======================================================================

The package re-exports :mod:`.segmenter`::

    from photoshield.models.sam import load_segmenter

    sam = load_segmenter("sam-litemedsam")
    logits = sam.predict(images, boxes=boxes)   # images (B, 3, H, W) in [0, 1]; mask logits, > 0 is the mask
"""

from .segmenter import LITEMEDSAM_SHA256, LiteMedSAM, Segmenter, SegmenterFeatures, TransformersSam, load_sam, load_segmenter

__all__ = [
    "LITEMEDSAM_SHA256",
    "LiteMedSAM",
    "Segmenter",
    "SegmenterFeatures",
    "TransformersSam",
    "load_sam",
    "load_segmenter",
]
