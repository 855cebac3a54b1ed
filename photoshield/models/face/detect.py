"""Face detection with MTCNN: boxes, scores and 5 landmarks per face, batched, in plain PyTorch.

MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", 2016) is a cascade of three small nets: P-Net scans an image pyramid for candidate
windows, R-Net rejects most of them on 24x24 crops, O-Net scores 48x48 crops and places five
landmarks (eye centres, nose tip, mouth corners). The weights are the original MTCNN models as
shipped by ``facenet-pytorch`` 2.6.0 (MIT); the networks and the cascade here are photoshield's own
(no torchvision): an image pyramid with factor 0.709, greedy NMS written in torch, bounding-box
regression, squaring, and zero-padded area-resampled crops taken from a summed-area table so
that every stage is one batched forward pass.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``,
so a box ``x1, y1, x2, y2`` spans ``x2 - x1`` pixels. Detection is not differentiable (it runs
under ``torch.no_grad``); the landmark and embedding nets in :mod:`photoshield.models.face` are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PhotoshieldError
from ..registry import Checkpoint, load, register

__all__ = ["FaceDetector", "ONet", "PNet", "RNet", "build_detector", "detect_faces", "nms"]

MTCNN_SOURCE = "PyPI facenet-pytorch 2.6.0 facenet_pytorch/data/{pnet,rnet,onet}.pt"
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)


# --------------------------------------------------------------------------- networks
# Parameter names follow facenet-pytorch's state dicts. Its nets take RGB images in (N, C, H, W)
# scaled by (x * 255 - 127.5) / 128; the dense layers were converted from a model that saw
# transposed images, so their input is flattened in (W, H, C) order.


def _normalize(pixels255: torch.Tensor) -> torch.Tensor:
    """MTCNN's input scaling of 0-255 pixels: (x - 127.5) / 128."""
    return (pixels255 - 127.5) * 0.0078125


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """MTCNN proposal net: fully convolutional, one 12x12 window per output cell (stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized images (B, 3, H, W) -> face probability (B, H', W') and box offsets (B, 4, H', W')."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """MTCNN refinement net on 24x24 crops."""

    input_size = 24

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized crops (N, 3, 24, 24) -> face probability (N,) and box offsets (N, 4)."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_1(x).softmax(dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """MTCNN output net on 48x48 crops: score, box offsets and 5 landmarks."""

    input_size = 48

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalized crops (N, 3, 48, 48) -> probability (N,), box offsets (N, 4), landmarks (N, 5, 2) in [0, 1] of the crop."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        points = self.dense6_3(x)  # five x values, then five y values, each relative to the crop
        points = torch.stack([points[:, :5], points[:, 5:]], dim=2)
        return self.dense6_1(x).softmax(dim=1)[:, 1], self.dense6_2(x), points


# --------------------------------------------------------------------------- box helpers


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    groups: torch.Tensor | None = None,
    mode: str = "union",
) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    A box is dropped when its overlap with a better kept box exceeds ``threshold``; the overlap is
    intersection over union (``mode="union"``) or over the smaller area (``"min"``, MTCNN's last
    stage). Boxes of different ``groups`` (e.g. image indices) never suppress each other.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order].double()
    groups = groups[order] if groups is not None else torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
    solve = _nms_matrix if len(boxes) <= _NMS_MATRIX_LIMIT else _nms_sweep
    return order[solve(boxes, groups, threshold, mode)]


_NMS_MATRIX_LIMIT = 2000  # above this many boxes the N x N overlap matrices cost too much memory


def _overlap(box: torch.Tensor, others: torch.Tensor, mode: str) -> torch.Tensor:
    """Overlap of boxes (..., 4) with boxes (..., 4), broadcast: IoU or intersection over the smaller area."""
    low = torch.maximum(box[..., :2], others[..., :2])
    high = torch.minimum(box[..., 2:], others[..., 2:])
    inter = (high - low).clamp_min(0).prod(dim=-1)
    area = lambda b: (b[..., 2:] - b[..., :2]).clamp_min(0).prod(dim=-1)  # noqa: E731
    if mode == "union":
        return inter / (area(box) + area(others) - inter).clamp_min(1e-12)
    return inter / torch.minimum(area(box), area(others)).clamp_min(1e-12)


def _nms_matrix(boxes: torch.Tensor, groups: torch.Tensor, threshold: float, mode: str) -> torch.Tensor:
    """Greedy NMS on score-sorted boxes as a fixed point: keep[j] = no kept i < j suppresses j.

    keep[j] depends only on keep[:j], so iterating from all-kept fixes one more leading entry per
    step at least, and the (unique) fixed point is the greedy result; real detections converge in a
    few matrix-vector products.
    """
    n, boxes = len(boxes), boxes.float()
    suppresses = _overlap(boxes[:, None], boxes[None], mode) > threshold
    suppresses &= groups[:, None] == groups[None]
    suppresses = torch.triu(suppresses, diagonal=1).to(boxes.dtype)
    keep = torch.ones(n, dtype=boxes.dtype, device=boxes.device)
    for _ in range(n):
        updated = ((keep @ suppresses) == 0).to(boxes.dtype)
        if torch.equal(updated, keep):
            break
        keep = updated
    return keep.bool().nonzero().flatten()


def _nms_sweep(boxes: torch.Tensor, groups: torch.Tensor, threshold: float, mode: str) -> torch.Tensor:
    """Greedy NMS on score-sorted boxes, one kept box at a time (memory linear in the number of boxes)."""
    remaining = torch.arange(len(boxes), device=boxes.device)
    keep = []
    while remaining.numel() > 0:
        best, rest = remaining[0], remaining[1:]
        keep.append(best)
        overlap = _overlap(boxes[best], boxes[rest], mode)
        remaining = rest[(overlap <= threshold) | (groups[rest] != groups[best])]
    return torch.stack(keep)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply MTCNN box regression: each edge moves by its offset times the box width or height."""
    size = torch.cat([boxes[:, 2:] - boxes[:, :2]] * 2, dim=1)
    return boxes + offsets * size


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """The square of side max(width, height) with the same centre as each box."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _pixel_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes rounded to whole pixels, at least one pixel wide and high (regression can collapse a box)."""
    boxes = boxes.round()
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], dim=1)


def _integral(images: torch.Tensor) -> torch.Tensor:
    """Summed-area tables (B, H+1, W+1, C) in float64 (exact for 0-255 pixel sums)."""
    device = images.device if images.device.type != "mps" else torch.device("cpu")  # MPS has no float64
    table = F.pad(images.to(device=device, dtype=torch.float64).cumsum(3).cumsum(2), (1, 0, 1, 0))
    return table.permute(0, 2, 3, 1).contiguous()


def _crop_resize(table: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resampled crops (N, C, size, size) of integer boxes, zero outside the image.

    Each output cell averages the input pixels ``[floor(i*h/size), ceil((i+1)*h/size))`` of its
    crop, exactly as ``F.interpolate(mode="area")`` does, with pixels outside the image counted as 0.
    """
    device = table.device
    boxes, image_index = boxes.to(device), image_index.to(device)
    height, width = table.shape[1] - 1, table.shape[2] - 1
    cells = torch.arange(size, device=device)

    def edges(start: torch.Tensor, length: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = start[:, None] + torch.div(cells[None] * length[:, None], size, rounding_mode="floor")
        high = start[:, None] + torch.div((cells[None] + 1) * length[:, None] + size - 1, size, rounding_mode="floor")
        return low.clamp(0, limit), high.clamp(0, limit), (high - low)

    x0, y0 = boxes[:, 0], boxes[:, 1]
    c0, c1, cw = edges(x0, boxes[:, 2] - x0, width)
    r0, r1, rh = edges(y0, boxes[:, 3] - y0, height)
    flat = table.reshape(-1, table.shape[3])  # one gather per corner on linear indices
    base = image_index[:, None, None] * (height + 1) * (width + 1)
    r0, r1 = base + r0[:, :, None] * (width + 1), base + r1[:, :, None] * (width + 1)
    c0, c1 = c0[:, None, :], c1[:, None, :]
    sums = flat[r1 + c1] - flat[r0 + c1] - flat[r1 + c0] + flat[r0 + c0]
    counts = (rh[:, :, None] * cw[:, None, :]).to(sums.dtype)
    return (sums / counts[..., None]).permute(0, 3, 1, 2).float()


def _empty(device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.zeros(0, 4, device=device),
        "scores": torch.zeros(0, device=device),
        "landmarks": torch.zeros(0, 5, 2, device=device),
    }


# --------------------------------------------------------------------------- detector


class FaceDetector(nn.Module):
    """MTCNN face detector: images (B, 3, H, W) in [0, 1] RGB -> per image boxes, scores, 5 landmarks.

    ``min_face_size`` (pixels), ``thresholds`` (P-, R-, O-Net), ``factor`` (pyramid step) and
    ``max_size`` (images whose long side exceeds it are detected on a downscaled copy; None: never)
    are defaults that :meth:`detect` can override per call.
    """

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        factor: float = 0.709,
        max_size: int | None = 1280,
    ):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.min_face_size, self.thresholds = min_face_size, tuple(thresholds)
        self.factor, self.max_size = factor, max_size

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Same as :meth:`detect` with the detector's default settings."""
        return self.detect(images)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        min_face_size: float | None = None,
        thresholds: Sequence[float] | None = None,
        factor: float | None = None,
        max_size: int | None | str = "default",
    ) -> list[dict[str, torch.Tensor]]:
        """Detect faces in each image; returns per image ``boxes`` (N, 4) ``x1, y1, x2, y2``, ``scores`` (N,)
        and ``landmarks`` (N, 5, 2) ``x, y`` (left eye, right eye, nose, mouth left, mouth right, as seen
        in the image), in pixels of the input, sorted by score, highest first.

        ``images`` is a (B, 3, H, W) float tensor in [0, 1] (or a list of (3, H, W) tensors of any sizes).
        Arguments left as None use the detector's defaults (20 px, (0.6, 0.7, 0.7), 0.709, 1280).
        """
        min_face_size = self.min_face_size if min_face_size is None else min_face_size
        thresholds = self.thresholds if thresholds is None else tuple(thresholds)
        factor = self.factor if factor is None else factor
        max_size = self.max_size if max_size == "default" else max_size
        _check_settings(min_face_size, thresholds, factor, max_size)
        if isinstance(images, (list, tuple)):
            results = []
            for number, image in enumerate(images):
                if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or (image.ndim == 4 and len(image) != 1):
                    raise ValueError(f"image {number} of the list must be a (3, H, W) tensor")
                results += self.detect(image.reshape(1, *image.shape[-3:]), min_face_size, thresholds, factor, max_size)
            return results
        images = _check_images(images)
        if len(images) == 0:
            return []
        device = images.device
        if self.pnet.conv1.weight.device != device:
            where = self.pnet.conv1.weight.device
            raise ValueError(f"images are on {device} but the detector is on {where}: move one of them")
        height, width = images.shape[2:]
        pixels = images.to(self.pnet.conv1.weight.dtype).clamp(0, 1) * 255
        scale_x = scale_y = 1.0
        if max_size is not None and max(height, width) > max_size:
            ratio = max_size / max(height, width)
            small = (max(1, round(height * ratio)), max(1, round(width * ratio)))
            pixels = F.interpolate(pixels, size=small, mode="area")
            scale_y, scale_x = small[0] / height, small[1] / width
        boxes, index = self._propose(pixels, min_face_size, thresholds[0], factor)
        table = _integral(pixels) if len(boxes) else None
        if len(boxes):
            boxes, index = self._refine(table, boxes, index, thresholds[1])
        results = [_empty(device) for _ in range(len(images))]
        if len(boxes):
            boxes, scores, points, index = self._output(table, boxes, index, thresholds[2])
            unscale = boxes.new_tensor([scale_x, scale_y])
            boxes = boxes / unscale.repeat(2)
            points = points / unscale
            for number in index.unique().tolist():
                chosen = (index == number).nonzero().flatten()  # already sorted by score
                results[number] = {
                    "boxes": boxes[chosen].float().to(device),
                    "scores": scores[chosen].float().to(device),
                    "landmarks": points[chosen].float().to(device),
                }
        return results

    def _propose(
        self, pixels: torch.Tensor, min_face_size: float, threshold: float, factor: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the pyramid; NMS per scale (0.5) and across scales (0.7); regressed, squared boxes."""
        height, width = pixels.shape[2:]
        scale = 12.0 / min_face_size
        side = min(height, width) * scale
        found: list[tuple[torch.Tensor, ...]] = []
        while side >= 12:
            size = (int(height * scale + 1), int(width * scale + 1))
            level = F.interpolate(pixels, size=size, mode="area")
            probs, offsets = self.pnet(_normalize(level))
            # Output cell (i, j) sees level pixels [2j, 2j + 12) x [2i, 2i + 12).
            image, row, col = (probs >= threshold).nonzero(as_tuple=True)
            if len(image):
                sy, sx = size[0] / height, size[1] / width
                x1, y1 = 2 * col / sx, 2 * row / sy
                boxes = torch.stack([x1, y1, x1 + 12 / sx, y1 + 12 / sy], dim=1).double()
                scores, offsets = probs[image, row, col], offsets[image, :, row, col].double()
                keep = nms(boxes, scores, 0.5, groups=image)  # within this scale of each image
                found.append((boxes[keep], scores[keep], offsets[keep], image[keep]))
            scale *= factor
            side *= factor
        if not found:
            none = torch.zeros(0, 4, dtype=torch.float64, device=pixels.device)
            return none, torch.zeros(0, dtype=torch.long, device=pixels.device)
        boxes, scores, offsets, index = (torch.cat(parts) for parts in zip(*found))
        keep = nms(boxes, scores, 0.7, groups=index)  # across scales
        return _square(_regress(boxes[keep], offsets[keep])), index[keep]

    def _refine(
        self, table: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net on 24x24 crops; keep confident ones, NMS (0.7), regress, square."""
        boxes = _pixel_boxes(boxes)
        crops = _crop_resize(table, boxes.long(), index, RNet.input_size).to(boxes.device, self.rnet.conv1.weight.dtype)
        probs, offsets = self.rnet(_normalize(crops))
        passed = probs > threshold
        boxes, probs, offsets, index = boxes[passed], probs[passed], offsets[passed].double(), index[passed]
        keep = nms(boxes, probs, 0.7, groups=index)
        return _square(_regress(boxes[keep], offsets[keep])), index[keep]

    def _output(
        self, table: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: O-Net on 48x48 crops: scores, landmarks, regressed boxes, NMS by the smaller area (0.7)."""
        boxes = _pixel_boxes(boxes)
        crops = _crop_resize(table, boxes.long(), index, ONet.input_size).to(boxes.device, self.onet.conv1.weight.dtype)
        probs, offsets, points = self.onet(_normalize(crops))
        passed = probs > threshold
        boxes, probs, index = boxes[passed], probs[passed], index[passed]
        points = boxes[:, None, :2] + points[passed].double() * (boxes[:, None, 2:] - boxes[:, None, :2])
        boxes = _regress(boxes, offsets[passed].double())
        keep = nms(boxes, probs, 0.7, groups=index, mode="min")
        return boxes[keep], probs[keep], points[keep], index[keep]


def _check_settings(min_face_size: float, thresholds: tuple, factor: float, max_size: int | None) -> None:
    if not min_face_size > 0:
        raise ValueError(f"min_face_size must be positive (pixels), got {min_face_size}")
    if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
        raise ValueError(f"thresholds must be three probabilities in [0, 1) (P-, R-, O-Net), got {thresholds}")
    if not 0 < factor < 1:
        raise ValueError(f"factor (the pyramid step) must be in (0, 1), got {factor}")
    if max_size is not None and max_size < 48:
        raise ValueError(f"max_size must be at least 48 pixels or None, got {max_size}")


def _check_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a (B, 3, H, W) tensor in [0, 1], got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got {images.dtype} (divide 8-bit pixels by 255)")
    if images.numel() and float(images.max()) > 1.5:
        raise ValueError(f"images must be in [0, 1], got values up to {float(images.max()):.1f} (divide by 255)")
    return images


# --------------------------------------------------------------------------- loading


def build_detector(path: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: Any) -> FaceDetector:
    """Build a :class:`FaceDetector` from ``mtcnn.safetensors`` (keys ``pnet.*``, ``rnet.*``, ``onet.*``).

    ``kwargs`` set the detector's defaults (``min_face_size``, ``thresholds``, ``factor``, ``max_size``).
    """
    path = Path(path)
    model = FaceDetector(**kwargs)
    try:
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type for files it cannot parse
        raise PhotoshieldError(f"{path}: not a readable safetensors file ({error})") from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            problems.append(f"wrong shape of {wrong[0]}: {tuple(state[wrong[0]].shape)} != {tuple(expected[wrong[0]].shape)}")
        raise PhotoshieldError(f"{path}: not MTCNN weights ({'; '.join(problems)}); run python tools/convert_mtcnn.py")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device).eval().requires_grad_(False)


_DETECTORS: dict[str, FaceDetector] = {}


def detect_faces(
    images: torch.Tensor, detector: FaceDetector | None = None, **kwargs: Any
) -> list[dict[str, torch.Tensor]]:
    """Detect faces (MTCNN) in a batch; per image a dict of ``boxes`` (N, 4), ``scores`` (N,), ``landmarks`` (N, 5, 2).

    Without a ``detector``, the registry's ``face-detector`` is loaded once per device and reused.
    ``kwargs`` go to :meth:`FaceDetector.detect`.
    """
    if detector is None:
        device = images[0].device if isinstance(images, (list, tuple)) and images else getattr(images, "device", "cpu")
        key = str(device)
        if key not in _DETECTORS:
            _DETECTORS[key] = load("face-detector", device=device)
        detector = _DETECTORS[key]
    return detector.detect(images, **kwargs)


register(
    Checkpoint(
        name="face-detector",
        task="face detection (boxes, 5 landmarks)",
        filename="mtcnn.safetensors",
        loader=build_detector,
        source=MTCNN_SOURCE,
        license="MIT",
        sha256="6f54e6de6bef5a1f19de8d4e066bf3669fe8828a04b31faeb7182a8e75d21967",
        how_to_get="python tools/convert_mtcnn.py",
        description="MTCNN (Zhang et al. 2016) P-/R-/O-Net cascade as shipped by facenet-pytorch; float32, 2 MB.",
    )
)
