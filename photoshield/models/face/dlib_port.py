"""Faces, differentiably: 68-point landmarks, dlib-style alignment and 128-d identity embeddings.

The networks are PyTorch ports of the trained models in ``@vladmandic/face-api`` 1.7.15 (MIT):
the dlib ResNet face-recognition net (dlib's ``dlib_face_recognition_resnet_model_v1``) and
face-api's 68-point landmark net. Alignment follows dlib's ``get_face_chip_details`` /
``extract_image_chips`` (150 px chips, padding 0.25) so descriptors agree with dlib's, and the
dlib convention holds for distances: the same person is below 0.6 (Euclidean, unnormalised).

Everything from image pixels to descriptors is differentiable (the alignment transform itself
is computed from detached landmarks). Face detection lives in :mod:`.detect` (MTCNN); the
black-box SFace judge in :mod:`.judge`. :mod:`photoshield.models.face` re-exports this module's names::

    from photoshield.models import face

    descriptors = face.embed_faces(images)            # (N, 128), the main face of each image
    same = face.identity_distance(descriptors[0], descriptors[1]) < face.SAME_PERSON_DISTANCE
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from kornia.geometry.transform import pyrdown, warp_affine
from torch import nn

from ...errors import PhotoshieldError
from ..registry import Checkpoint, load, load_state_dict, register
from .detect import detect_faces

FACE_API_SOURCE = "npm @vladmandic/face-api 1.7.15"
MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's / face-api's per-channel means, 0-255 units
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance of two descriptors

__all__ = [
    "ARCFACE_TEMPLATE",
    "FaceEmbedder",
    "FaceLandmarks68",
    "SAME_PERSON_DISTANCE",
    "align_faces",
    "build_embedder",
    "build_landmarks",
    "cached_model",
    "dequantize",
    "embed_faces",
    "face_template",
    "identity_cosine",
    "identity_distance",
    "landmarks68",
    "similarity_transform",
]


# --------------------------------------------------------------------------- weights


def dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn tfjs-style uint8 codes (``key``, ``key.qscale``, ``key.qmin``) into float32 ``codes * scale + min``."""
    out = {}
    for key, tensor in state.items():
        if key.endswith((".qscale", ".qmin")):
            continue
        if tensor.dtype == torch.uint8:
            scale, minimum = state[key + ".qscale"], state[key + ".qmin"]
            tensor = tensor.double() * scale.double() + minimum.double()
        out[key] = tensor.float()
    return out


# --------------------------------------------------------------------------- recognition net


class _ConvScale(nn.Module):
    """Convolution with bias, then dlib's per-channel affine layer (its frozen batch norm)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0)
        self.scale = _Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.conv(x))


class _Affine(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class _Residual(nn.Module):
    """dlib's residual block; the downsampling form adds an average-pooled, zero-padded shortcut."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = _ConvScale(cin, cout, 3, 2 if down else 1)
        self.conv2 = _ConvScale(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            # dlib's add_prev: the smaller tensor is zero-padded (rows/cols at the end, extra channels).
            out = F.pad(out, (0, x.shape[3] - out.shape[3], 0, x.shape[2] - out.shape[2]))
            x = F.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))
        return F.relu(out + x)


class FaceEmbedder(nn.Module):
    """dlib's ResNet face-recognition net: aligned 150x150 RGB chips in [0, 1] -> 128-d descriptors.

    Descriptors are unnormalised, as dlib's: two faces are the same person when their Euclidean
    distance is below 0.6. ``input_divisor`` is dlib's 256 (face-api uses 255).
    """

    input_size = 150

    def __init__(self, input_divisor: float = 256.0):
        super().__init__()
        self.input_divisor = input_divisor
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.conv32_down = _ConvScale(3, 32, 7, 2)
        blocks = [("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
                  ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
                  ("conv64_3", 64, 64, False), ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False),
                  ("conv128_2", 128, 128, False), ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False),
                  ("conv256_2", 256, 256, False), ("conv256_down_out", 256, 256, True)]  # fmt: skip
        self.block_names = [name for name, *_ in blocks]
        for name, cin, cout, down in blocks:
            self.add_module(name, _Residual(cin, cout, down))
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"FaceEmbedder expects 150x150 aligned chips (see align_faces), got {tuple(chips.shape[-2:])}")
        x = (chips - self.mean) * (255.0 / self.input_divisor)
        x = F.max_pool2d(F.relu(self.conv32_down(x)), 3, 2)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- landmark net


def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow 'same' padding for a 3x3 kernel: with stride 2 the extra row/column goes bottom/right."""
    if stride == 1:
        return F.pad(x, (1, 1, 1, 1))
    return F.pad(x, (x.shape[3] % 2, 1, x.shape[2] % 2, 1))


class _SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_same_pad(x, self.stride))) + self.bias[:, None, None]


class _Conv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.stride[0]))


class _DenseBlock(nn.Module):
    """face-api's dense block: a strided conv, then three separable convs fed by the running sum."""

    def __init__(self, cin: int, cout: int, first: bool):
        super().__init__()
        self.conv0 = _Conv(cin, cout, 3, 2) if first else _SeparableConv(cin, cout, 2)
        self.conv1 = _SeparableConv(cout, cout, 1)
        self.conv2 = _SeparableConv(cout, cout, 1)
        self.conv3 = _SeparableConv(cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class FaceLandmarks68(nn.Module):
    """face-api's 68-point landmark net: 112x112 face crops in [0, 1] -> (N, 68, 2) in crop units [0, 1]."""

    input_size = 112

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.dense0 = _DenseBlock(3, 32, first=True)
        self.dense1 = _DenseBlock(32, 64, first=False)
        self.dense2 = _DenseBlock(64, 128, first=False)
        self.dense3 = _DenseBlock(128, 256, first=False)
        self.fc = nn.Linear(256, 136)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops - self.mean
        for block in (self.dense0, self.dense1, self.dense2, self.dense3):
            x = block(x)
        x = F.avg_pool2d(x, 7, 2).flatten(1)
        return self.fc(x).view(-1, 68, 2)


def build_embedder(path: str | Path, device: str | torch.device = "cpu", **kwargs: Any) -> FaceEmbedder:
    """Build :class:`FaceEmbedder` from a (quantized or float) safetensors file."""
    model = FaceEmbedder(**kwargs)
    model.load_state_dict(dequantize(load_state_dict(path)))
    return model.to(device).eval()


def build_landmarks(path: str | Path, device: str | torch.device = "cpu", **kwargs: Any) -> FaceLandmarks68:
    """Build :class:`FaceLandmarks68` from a (quantized or float) safetensors file."""
    model = FaceLandmarks68(**kwargs)
    model.load_state_dict(dequantize(load_state_dict(path)))
    return model.to(device).eval()


# --------------------------------------------------------------------------- alignment

# dlib's mean face shape (points 17..67 of the 68-point layout, unit square), from get_face_chip_details.
_DLIB_MEAN_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004,
    0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
    0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751,
    0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127,
    0.42689,
)  # fmt: skip
_DLIB_MEAN_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326,
    0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423,
    0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182,
    0.831803, 0.824182,
)  # fmt: skip
# The 68 points dlib aligns with: nose, eyes, outer lips and the upper inner lip (no jaw, brows, lower lip).
DLIB_ALIGN_POINTS = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))


# ArcFace's 5-point template for a 112x112 chip: eye centres, nose tip, mouth corners (image-left
# first); used by ArcFace-style embedders and by OpenCV's alignCrop for SFace.
ARCFACE_TEMPLATE = torch.tensor(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=torch.float64,
)


def _mean_face(index: int) -> tuple[float, float]:
    return _DLIB_MEAN_X[index - 17], _DLIB_MEAN_Y[index - 17]


def face_template(num_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-square template points and the landmark indices they pair with, for 68 or 5 (MTCNN) points.

    The 5-point template (eye centres, nose tip, mouth corners: the MTCNN layout, image-left first)
    is derived from dlib's mean face, so both paths produce the same chip framing.
    """
    if num_points == 68:
        points = [_mean_face(i) for i in DLIB_ALIGN_POINTS]
        return torch.tensor(points, dtype=torch.float64), torch.tensor(DLIB_ALIGN_POINTS)
    if num_points == 5:
        def centre(indices: range) -> tuple[float, float]:
            xs, ys = zip(*(_mean_face(i) for i in indices))
            return sum(xs) / len(xs), sum(ys) / len(ys)

        points = [centre(range(36, 42)), centre(range(42, 48)), _mean_face(30), _mean_face(48), _mean_face(54)]
        return torch.tensor(points, dtype=torch.float64), torch.arange(5)
    raise ValueError(f"alignment needs 68 or 5 landmarks per face, got {num_points}")


def similarity_transform(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (Umeyama, no reflection) mapping (N, K, 2) source points onto target: (N, 2, 3)."""
    source, target = source.double(), target.double()
    mu_s, mu_t = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    s, t = source - mu_s, target - mu_t
    covariance = t.transpose(1, 2) @ s / source.shape[1]
    u, sigma, vh = torch.linalg.svd(covariance)
    d = torch.ones_like(sigma)
    d[:, 1] = torch.sign(torch.det(u @ vh))
    rotation = u @ torch.diag_embed(d) @ vh
    variance = s.pow(2).sum((1, 2)) / source.shape[1]
    scale = (sigma * d).sum(1) / variance
    linear = scale[:, None, None] * rotation
    shift = mu_t.transpose(1, 2) - linear @ mu_s.transpose(1, 2)
    return torch.cat([linear, shift], dim=2)


def _chip_to_image(landmarks: torch.Tensor, size: int, padding: float) -> torch.Tensor:
    """dlib's chip geometry: the (N, 3, 3) map from chip pixel indices to image pixel coordinates."""
    template, indices = face_template(landmarks.shape[1])
    chip_points = (padding + template) / (2 * padding + 1) * size
    points = landmarks.detach().cpu().double()[:, indices]  # geometry in float64 on the CPU (MPS has no float64)
    tform = similarity_transform(chip_points.expand(len(points), -1, -1), points)
    # dlib keeps the similarity's centre, angle and scale, but spans size*scale - 1 pixels over size - 1 steps.
    linear = tform[:, :, :2]
    scale = linear[:, :, 0].norm(dim=1)
    centre = tform[:, :, 2] + linear @ torch.full((2,), size / 2.0, dtype=torch.float64)
    step = (size * scale - 1) / (size - 1) / scale
    linear = linear * step[:, None, None]
    shift = centre - linear @ torch.full((2,), (size - 1) / 2.0, dtype=torch.float64)
    matrix = torch.eye(3, dtype=torch.float64).repeat(len(points), 1, 1)
    matrix[:, :2, :2], matrix[:, :2, 2] = linear, shift
    return matrix


def align_faces(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    size: int = 150,
    padding: float = 0.25,
    image_index: torch.Tensor | Sequence[int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Cut dlib-style aligned face chips (N, 3, size, size) from images, differentiably.

    ``landmarks`` is (N, 68, 2) or (N, 5, 2) (MTCNN layout) in pixels; face ``i`` is taken from
    ``images[image_index[i]]`` (default: face i from image i). As in dlib, large faces are first
    reduced by a Gaussian pyramid (``antialias``) so the chip is not aliased.
    """
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (N, K, 2), got {tuple(landmarks.shape)}")
    index = _image_index(images, len(landmarks), image_index)
    chip_to_image = _chip_to_image(landmarks, size, padding)
    chips = []
    for number in range(len(landmarks)):
        image = images[int(index[number]) : int(index[number]) + 1]
        matrix = chip_to_image[number]
        # Work on a crop around the chip (as dlib does) so the pyramid stays cheap on large photos.
        corners = matrix @ torch.tensor([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1], [1, 1, 1, 1]],
                                        dtype=torch.float64)  # fmt: skip
        scale = float(matrix[:2, 0].norm())
        levels = max(0, math.ceil(math.log2(scale)) - 1) if antialias and scale > 2 else 0
        margin = 4 * 2**levels
        x0 = max(int(math.floor(corners[0].min())) - margin, 0)
        y0 = max(int(math.floor(corners[1].min())) - margin, 0)
        x1 = min(int(math.ceil(corners[0].max())) + margin + 1, image.shape[3])
        y1 = min(int(math.ceil(corners[1].max())) + margin + 1, image.shape[2])
        if x1 <= x0 or y1 <= y0:  # the chip lies entirely outside the image
            chips.append(image.new_zeros(1, image.shape[1], size, size))
            continue
        crop = image[:, :, y0:y1, x0:x1]
        to_crop = torch.eye(3, dtype=torch.float64)
        to_crop[0, 2], to_crop[1, 2] = -x0, -y0
        matrix = to_crop @ matrix
        for _ in range(levels):
            if min(crop.shape[2:]) < 4:
                break
            height, width = crop.shape[2:]
            crop = pyrdown(crop)
            # bilinear downsampling: x_down = (x + 0.5) * (W_down / W) - 0.5
            sx, sy = crop.shape[3] / width, crop.shape[2] / height
            down = torch.tensor([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=torch.float64)
            matrix = down @ matrix
        image_to_chip = torch.linalg.inv(matrix)[:2].to(device=crop.device, dtype=crop.dtype)
        chips.append(warp_affine(crop, image_to_chip[None], (size, size), align_corners=True))
    if not chips:
        return images.new_zeros(0, images.shape[1], size, size)
    return torch.cat(chips)


def _image_index(images: torch.Tensor, count: int, image_index: Any) -> torch.Tensor:
    if image_index is None:
        if count != len(images):
            raise ValueError(f"{count} faces for {len(images)} images: pass image_index (the image of each face)")
        return torch.arange(count)
    index = torch.as_tensor(image_index, dtype=torch.long).flatten().cpu()
    if len(index) != count or (count and (index.min() < 0 or index.max() >= len(images))):
        raise ValueError(f"image_index must give one image (0..{len(images) - 1}) for each of the {count} faces")
    return index


# --------------------------------------------------------------------------- convenience pipeline

_MODELS: dict[tuple[str, str], nn.Module] = {}


def cached_model(name: str, device: torch.device) -> nn.Module:
    """A registry model loaded once per (name, device): repeated protections do not re-read weights."""
    key = (name, str(device))
    if key not in _MODELS:
        _MODELS[key] = load(name, device=device)
    return _MODELS[key]


def landmarks68(
    images: torch.Tensor,
    boxes: torch.Tensor,
    image_index: torch.Tensor | Sequence[int] | None = None,
    model: FaceLandmarks68 | None = None,
    refine: int = 1,
) -> torch.Tensor:
    """68 landmarks (N, 68, 2) in pixels for face boxes (N, 4) ``x1, y1, x2, y2`` in pixels.

    As in face-api, each box is padded to a centred square with black and resized to 112x112.
    Each of the ``refine`` passes re-runs the net on a box built from the previous landmarks,
    which makes the result independent of the detector's box convention.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=images.device).reshape(-1, 4)
    model = model or cached_model("face-landmarks", images.device)
    index = _image_index(images, len(boxes), image_index)
    points = _landmarks_in_boxes(images, boxes, index, model)
    for _ in range(refine):
        points = _landmarks_in_boxes(images, _box_from_points(points.detach()), index, model)
    return points


def _box_from_points(points: torch.Tensor, scale: float = 1.2) -> torch.Tensor:
    """A square box around 68 landmarks, ``scale`` times their extent: the framing the net works best in."""
    low, high = points.min(dim=1).values, points.max(dim=1).values
    centre, half = (low + high) / 2, (high - low).max(dim=1).values[:, None] * scale / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _landmarks_in_boxes(
    images: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor, model: FaceLandmarks68
) -> torch.Tensor:
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height).clamp_min(1.0)
    origin = torch.stack([boxes[:, 0] - (side - width) / 2, boxes[:, 1] - (side - height) / 2], dim=1)
    n = model.input_size
    step = side / n  # tfjs resizeBilinear without half-pixel centres: source = origin + j * side / n
    image_to_crop = torch.zeros(len(boxes), 2, 3, device=images.device)
    image_to_crop[:, 0, 0], image_to_crop[:, 1, 1] = 1 / step, 1 / step
    image_to_crop[:, :, 2] = -origin / step[:, None]
    crops = images.new_zeros(len(boxes), images.shape[1], n, n)
    for number in index.unique().tolist():  # one image at a time, expanded rather than copied per face
        faces = (index == number).nonzero().flatten().to(images.device)
        source = images[number : number + 1].expand(len(faces), -1, -1, -1)
        crops[faces] = warp_affine(source, image_to_crop[faces].detach(), (n, n), align_corners=True)
    # face-api pads the box to a square with black, so the network never sees the surroundings.
    grid = torch.arange(n, device=images.device, dtype=torch.float32)[None]
    low, high = (boxes[:, :2] - origin) / step[:, None], (boxes[:, 2:] - origin) / step[:, None]
    inside_x = (grid >= low[:, :1]) & (grid < high[:, :1])
    inside_y = (grid >= low[:, 1:]) & (grid < high[:, 1:])
    crops = crops * (inside_y[:, None, :, None] & inside_x[:, None, None, :]).to(crops.dtype)
    return model(crops) * side[:, None, None] + origin[:, None, :]


def _main_faces(images: torch.Tensor) -> torch.Tensor:
    """The highest-scoring detected face box per image (N, 4); an error names images without a face."""
    boxes = []
    for number, found in enumerate(detect_faces(images)):
        if len(found["boxes"]) == 0:
            raise PhotoshieldError(f"no face found in image {number} of the batch")
        boxes.append(found["boxes"][found["scores"].argmax()])
    return torch.stack(boxes).to(images.device, torch.float32)


def embed_faces(
    images: torch.Tensor,
    boxes: torch.Tensor | None = None,
    landmarks: torch.Tensor | None = None,
    image_index: torch.Tensor | Sequence[int] | None = None,
    embedder: FaceEmbedder | None = None,
    landmarker: FaceLandmarks68 | None = None,
) -> torch.Tensor:
    """128-d dlib descriptors (N, 128) of faces, differentiable with respect to ``images``.

    Give ``landmarks`` (N, 68|5, 2) or ``boxes`` (N, 4) in pixels; with neither, the main
    (highest-scoring) detected face of each image is used. Landmarks are found on detached pixels.
    """
    if landmarks is None:
        if boxes is None:
            boxes, image_index = _main_faces(images.detach()), None
        with torch.no_grad():
            landmarks = landmarks68(images.detach(), boxes, image_index, model=landmarker)
    embedder = embedder or cached_model("face-embedder", images.device)
    return embedder(align_faces(images, landmarks, image_index=image_index))


def identity_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of descriptors (dlib: same person below 0.6)."""
    return (a - b).norm(dim=-1)


def identity_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of descriptors."""
    return F.cosine_similarity(a, b, dim=-1)


# --------------------------------------------------------------------------- registry

_HOW_TO_GET = "python tools/convert_face_api.py"

register(
    Checkpoint(
        name="face-embedder",
        task="face identity embedding (128-d)",
        filename="face_recognition_dlib.safetensors",
        loader=build_embedder,
        source=f"{FACE_API_SOURCE} model/face_recognition_model.bin",
        license="MIT",
        sha256="1e4e4b403165a06c9be21b499f2879d831a77b727d0dffda7c4f52c84c6d5468",
        how_to_get=_HOW_TO_GET,
        description="dlib ResNet face recognition (dlib_face_recognition_resnet_model_v1) as ported to tfjs by "
        "face-api, stored with its uint8 quantization; 150x150 dlib chips, same person below 0.6.",
    )
)
register(
    Checkpoint(
        name="face-landmarks",
        task="68-point face landmarks",
        filename="face_landmarks_68.safetensors",
        loader=build_landmarks,
        source=f"{FACE_API_SOURCE} model/face_landmark_68_model.bin",
        license="MIT",
        sha256="625fb732952c734b3d67a51e40184ec20c761e78d7c00782d06952bb820f7062",
        how_to_get=_HOW_TO_GET,
        description="face-api's depthwise-separable 68-point landmark net on 112x112 face crops.",
    )
)
