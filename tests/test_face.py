"""Face landmarks, alignment and identity embeddings against real photos, dlib and SFace.

Fixtures: four real portraits (tests/fixtures/faces, from the face_recognition 1.3.0 source archive)
and dlib's own results on them (dlib_reference.json), so the dlib comparisons also run without dlib.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import photoshield.models as models
from photoshield.io import read_image
from photoshield.models import face
from photoshield.models.registry import load_state_dict, resolve

FIXTURES = Path(__file__).parent / "fixtures" / "faces"
PEOPLE = {"obama": "obama", "obama2": "obama", "obama3": "obama", "biden": "biden"}
REFERENCE = json.loads((FIXTURES / "dlib_reference.json").read_text())


@lru_cache(maxsize=None)
def photo(name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(FIXTURES / f"{name}.jpg").convert("RGB"))).permute(2, 0, 1)[None].float() / 255


@lru_cache(maxsize=None)
def nets() -> tuple[face.FaceEmbedder, face.FaceLandmarks68]:
    return models.load("face-embedder", device="cpu"), models.load("face-landmarks", device="cpu")


def reference(name: str, key: str) -> torch.Tensor:
    return torch.tensor(REFERENCE[name][key], dtype=torch.float32)


@lru_cache(maxsize=None)
def our_descriptor(name: str) -> torch.Tensor:
    """Our full pipeline from dlib's face box: landmarks -> alignment -> descriptor."""
    embedder, landmarker = nets()
    with torch.no_grad():
        return face.embed_faces(photo(name), boxes=reference(name, "box")[None], embedder=embedder, landmarker=landmarker)[0]


def test_registry_loads_the_converted_weights_with_checksums():
    embedder, landmarker = nets()
    assert isinstance(embedder, face.FaceEmbedder) and not embedder.training
    assert sum(p.numel() for p in embedder.parameters()) == 5_614_592
    assert sum(p.numel() for p in landmarker.parameters()) == 356_840
    for name in ("face-embedder", "face-landmarks", "face-judge-sface", "face-detector-yunet"):
        checkpoint = [c for c in models.checkpoints() if c.name == name][0]
        assert checkpoint.sha256 and checkpoint.license and checkpoint.how_to_get.startswith("python tools/")


def test_stored_weights_are_the_exact_tfjs_quantization():
    """The files keep face-api's uint8 codes: every quantized tensor takes at most 256 values on its
    published grid, so nothing was lost in conversion (the fp16 question does not arise)."""
    state = load_state_dict(resolve("face-embedder"))
    quantized = [key for key, value in state.items() if value.dtype == torch.uint8]
    assert len(quantized) > 100  # all but the float32 conv64 filters
    weights = face.dequantize(state)
    key = "conv32_down.conv.weight"
    codes = (weights[key].double() - state[key + ".qmin"]) / state[key + ".qscale"]
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.round().min() >= 0 and codes.round().max() <= 255 and weights[key].unique().numel() <= 256
    assert weights[key].shape == (32, 3, 7, 7)  # tfjs HWIO -> OIHW


def test_float32_inference_matches_float64():
    """The port is numerically stable: float32 and float64 runs of the same weights agree closely."""
    embedder, _ = nets()
    chip = face.align_faces(photo("obama"), reference("obama", "landmarks")[None])
    with torch.no_grad():
        single = embedder(chip)[0]
        double = copy.deepcopy(embedder).double()(chip.double())[0]
    assert (single.double() - double).norm() < 1e-4


def test_embedder_reproduces_dlib_descriptors_on_dlib_landmarks():
    """Same landmarks as dlib, our alignment + net: descriptors match dlib's recorded ones."""
    embedder, _ = nets()
    for name in PEOPLE:
        with torch.no_grad():
            ours = face.embed_faces(photo(name), landmarks=reference(name, "landmarks")[None], embedder=embedder)[0]
        dlib_descriptor = reference(name, "descriptor")
        assert face.identity_cosine(ours, dlib_descriptor) > 0.998, name
        assert face.identity_distance(ours, dlib_descriptor) < 0.05, name


def test_landmarks_agree_with_dlib():
    _, landmarker = nets()
    for name in PEOPLE:
        with torch.no_grad():
            ours = face.landmarks68(photo(name), reference(name, "box")[None], model=landmarker)[0]
        truth = reference(name, "landmarks")
        eye_distance = (truth[36:42].mean(0) - truth[42:48].mean(0)).norm()
        assert (ours - truth).norm(dim=1).mean() / eye_distance < 0.12, name


def test_full_pipeline_agrees_with_dlib_and_separates_people():
    for name in PEOPLE:
        assert face.identity_cosine(our_descriptor(name), reference(name, "descriptor")) > 0.99, name
    names = list(PEOPLE)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            distance = float(face.identity_distance(our_descriptor(a), our_descriptor(b)))
            if PEOPLE[a] == PEOPLE[b]:
                assert distance < face.SAME_PERSON_DISTANCE, (a, b, distance)
            else:
                assert distance > face.SAME_PERSON_DISTANCE, (a, b, distance)


def test_five_point_alignment_frames_the_face_like_68_points():
    """The MTCNN-style 5-point template is derived from dlib's mean face: same identity either way."""
    embedder, _ = nets()
    points = reference("obama", "landmarks")
    five = torch.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
    with torch.no_grad():
        from_five = face.embed_faces(photo("obama"), landmarks=five[None], embedder=embedder)[0]
    assert face.identity_distance(from_five, reference("obama", "descriptor")) < 0.2
    assert face.identity_cosine(from_five, reference("obama", "descriptor")) > 0.97


def test_gradients_reach_pixels_and_one_signed_step_moves_identity():
    embedder, _ = nets()
    image = photo("obama").clone().requires_grad_(True)
    landmarks = reference("obama", "landmarks")[None]
    original = reference("obama", "descriptor")
    distance = face.identity_distance(face.embed_faces(image, landmarks=landmarks, embedder=embedder)[0], original)
    distance.backward()
    grad = image.grad[0].abs().sum(0)
    assert torch.isfinite(grad).all() and grad.sum() > 0
    x1, y1, x2, y2 = REFERENCE["obama"]["box"]
    face_share = grad[y1:y2, x1:x2].sum() / grad.sum()
    assert face_share > 0.5  # the gradient lives on the face, not the background
    assert grad[:20].sum() == 0  # nothing from rows far above the chip
    with torch.no_grad():
        stepped = (image + 4 / 255 * image.grad.sign()).clamp(0, 1)
        moved = face.identity_distance(face.embed_faces(stepped, landmarks=landmarks, embedder=embedder)[0], original)
    assert moved > distance + 0.1


def test_align_faces_batches_with_image_index_and_checks_shapes():
    images = torch.cat([photo("obama"), photo("biden")])
    landmarks = torch.stack([reference("biden", "landmarks"), reference("obama", "landmarks")])
    chips = face.align_faces(images, landmarks, image_index=[1, 0])
    assert chips.shape == (2, 3, 150, 150)
    alone = face.align_faces(photo("biden"), reference("biden", "landmarks")[None])
    assert torch.allclose(chips[0], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match="image_index"):
        face.align_faces(images, landmarks[:1])
    with pytest.raises(ValueError, match="150x150"):
        nets()[0](torch.rand(1, 3, 112, 112))


def test_sface_judge_separates_people():
    judge = models.load("face-judge-sface")
    found = judge.detect((photo("obama")[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    assert len(found["boxes"]) == 1 and found["landmarks"].shape == (1, 5, 2)
    x1, y1, x2, y2 = found["boxes"][0]
    dx1, dy1, dx2, dy2 = REFERENCE["obama"]["box"]
    assert x1 < (dx1 + dx2) / 2 < x2 and y1 < (dy1 + dy2) / 2 < y2  # the same face dlib found
    embeddings = {name: judge.embed(photo(name)) for name in PEOPLE}
    same = [float(embeddings["obama"] @ embeddings[n]) for n in ("obama2", "obama3")]
    different = [float(embeddings["biden"] @ embeddings[n]) for n in ("obama", "obama2", "obama3")]
    assert min(same) > judge.threshold > max(different)
    assert judge.similarity(photo("obama"), photo("obama2")) == pytest.approx(same[0], abs=1e-5)


@pytest.mark.judges
def test_against_live_dlib():
    """dlib itself (optional judge extra): same descriptors, same same/different decisions."""
    dlib = pytest.importorskip("dlib")
    dlib_models = pytest.importorskip("face_recognition_models")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(dlib_models.pose_predictor_model_location())
    recognizer = dlib.face_recognition_model_v1(dlib_models.face_recognition_model_location())
    embedder, _ = nets()
    live = {}
    for name in PEOPLE:
        pixels = np.array(Image.open(FIXTURES / f"{name}.jpg").convert("RGB"))
        rect = max(detector(pixels, 1), key=lambda r: r.area())
        shape = predictor(pixels, rect)
        live[name] = torch.tensor(list(recognizer.compute_face_descriptor(pixels, shape)), dtype=torch.float32)
        # dlib's own 150x150 chip through our net isolates the network port from the alignment.
        chip = torch.from_numpy(np.array(dlib.get_face_chip(pixels, shape, size=150, padding=0.25))).permute(2, 0, 1)[None] / 255
        with torch.no_grad():
            assert face.identity_cosine(embedder(chip.float())[0], live[name]) > 0.999, name
        assert face.identity_cosine(our_descriptor(name), live[name]) > 0.99, name
        assert torch.allclose(live[name], reference(name, "descriptor"), atol=1e-4)  # the fixture is current
    assert float(face.identity_distance(live["obama"], live["obama2"])) < 0.6 < float(face.identity_distance(live["obama"], live["biden"]))


@pytest.mark.judges
def test_dlib_judge_wrapper_separates_people():
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from photoshield.models.face.judge import DlibJudge

    judge = DlibJudge()
    tensor = lambda name: read_image(FIXTURES / f"{name}.jpg")  # noqa: E731  (a (1, 3, H, W) tensor, as protect() returns)
    assert judge.distance(tensor("obama"), tensor("obama2")) < judge.threshold < judge.distance(tensor("obama"), tensor("biden"))
