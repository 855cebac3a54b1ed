"""ArcFace-style identity models (insightface IResNet) that users supply as checkpoints.

No ArcFace weights can be bundled here, but users often have insightface ``arcface_torch``
backbones (``backbone.pth``: IR-18/34/50/100 trained on MS1MV3 or Glint360K). This module
builds the IResNet from the state dict itself (the depth is read off the keys), and cuts the
112x112 ArcFace chip differentiably from the 5-point template, so such a model joins the
facial protection's ensemble next to the bundled dlib ResNet::

    protect(photo, "facial", arcface=["glint360k_r100.safetensors"])

Checkpoints load through the registry's safe readers (safetensors, or ``torch.load`` with
``weights_only=True`` for ``.pth`` files).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
from kornia.geometry.transform import warp_affine

from ...errors import PhotoshieldError
from .dlib_port import ARCFACE_TEMPLATE, similarity_transform
from ..registry import Checkpoint, load_state_dict, register

CHIP_SIZE = 112


class _Block(nn.Module):
    """IResNet's pre-activation basic block: BN, conv, BN, PReLU, conv (strided), BN, plus shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """insightface's IResNet backbone: (N, 3, 112, 112) RGB in [0, 1] -> (N, embedding) features."""

    def __init__(self, layers: Sequence[int] = (3, 4, 14, 3), width: int = 64, embedding: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        channels = width
        for number, (count, planes) in enumerate(zip(layers, (width, 2 * width, 4 * width, 8 * width)), start=1):
            blocks = [_Block(channels if i == 0 else planes, planes, 2 if i == 0 else 1) for i in range(count)]
            setattr(self, f"layer{number}", nn.Sequential(*blocks))
            channels = planes
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.fc = nn.Linear(channels * 7 * 7, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(chips * 2.0 - 1.0)))  # arcface_torch normalises to [-1, 1]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))


def _architecture(state: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], int, int]:
    """Block counts per stage, stem width and embedding size, read off an IResNet state dict."""
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise PhotoshieldError("not an insightface IResNet state dict (no conv1.weight / fc.weight)")
    counts = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for key in state if (m := re.match(rf"layer{stage}\.(\d+)\.", key))}
        if not indices:
            raise PhotoshieldError(f"not an insightface IResNet state dict (no layer{stage} blocks)")
        counts.append(max(indices) + 1)
    return tuple(counts), state["conv1.weight"].shape[0], state["fc.weight"].shape[0]


def build_arcface(path: str | Path, device: str | torch.device = "cpu", **kwargs) -> IResNet:
    """Load an IResNet backbone (safetensors or a weights-only ``.pth``), its depth read from the keys."""
    state = {key.removeprefix("module."): value for key, value in load_state_dict(path).items()}
    layers, width, embedding = _architecture(state)
    model = IResNet(layers, width, embedding)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [key for key in unexpected if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise PhotoshieldError(f"{path}: IResNet weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval().requires_grad_(False)


def five_points(landmarks: torch.Tensor) -> torch.Tensor:
    """(N, 5, 2) eye centres, nose tip and mouth corners from (N, 68, 2) landmarks (or pass 5 through)."""
    if landmarks.shape[1] == 5:
        return landmarks
    if landmarks.shape[1] != 68:
        raise ValueError(f"need 68 or 5 landmarks per face, got {landmarks.shape[1]}")
    return torch.stack(
        [landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1), landmarks[:, 30], landmarks[:, 48], landmarks[:, 54]],
        dim=1,
    )


def align_arcface(images: torch.Tensor, landmarks: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
    """ArcFace chips (N, 3, 112, 112) cut differentiably from ``images`` at the faces' landmarks."""
    points = five_points(landmarks.detach()).cpu().double()
    index = torch.arange(len(points)) if image_index is None else torch.as_tensor(image_index).cpu()
    if len(points) == 0:
        return images.new_zeros(0, 3, CHIP_SIZE, CHIP_SIZE)
    image_to_chip = similarity_transform(points, ARCFACE_TEMPLATE.expand(len(points), -1, -1))
    return warp_affine(
        images[index.to(images.device)],
        image_to_chip.to(images.device, images.dtype),
        (CHIP_SIZE, CHIP_SIZE),
        align_corners=True,
    )


register(
    Checkpoint(
        name="face-arcface",
        task="face identity embedding (512-d, user-supplied)",
        filename="arcface_backbone.safetensors",
        loader=build_arcface,
        source="insightface arcface_torch IResNet backbone (not bundled)",
        license="as the checkpoint's own",
        how_to_get="pass path= to an insightface arcface_torch backbone (.pth or .safetensors), or copy it to "
        "$PHOTOSHIELD_HOME/weights/arcface_backbone.safetensors",
        description="IR-18/34/50/100 backbones; the depth is read from the state dict; 112x112 ArcFace chips.",
    )
)
