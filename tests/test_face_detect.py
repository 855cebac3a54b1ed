"""MTCNN face detection on real photos: one face per portrait, landmarks that agree with the 68-point net.

Fixtures: four 480x480 portraits (tests/fixtures/faces, from the face_recognition 1.3.0 source
archive). The weights are the bundled ``mtcnn.safetensors`` (facenet-pytorch 2.6.0's MTCNN nets).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import photoshield.models.face.detect as face_detect  # registers "face-detector"
from photoshield.errors import PhotoshieldError
from photoshield.io import read_image
from photoshield.models import face, registry
from photoshield.models.face.detect import FaceDetector, build_detector, detect_faces, nms

FIXTURES = Path(__file__).parent / "fixtures" / "faces"
NAMES = ("obama", "obama2", "obama3", "biden")
WEIGHTS = registry.BUNDLED_DIR / "mtcnn.safetensors"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares 2 cores with other workers
    yield
    torch.set_num_threads(threads)


@lru_cache(maxsize=None)
def photo(name: str) -> torch.Tensor:
    return read_image(FIXTURES / f"{name}.jpg")


@lru_cache(maxsize=None)
def detector() -> FaceDetector:
    return registry.load("face-detector", device="cpu")


@lru_cache(maxsize=None)
def found(name: str) -> dict[str, torch.Tensor]:
    return detector().detect(photo(name))[0]


def test_registry_entry_matches_the_bundled_file_and_loads():
    checkpoint = registry.get_checkpoint("face-detector")
    assert checkpoint.filename == "mtcnn.safetensors" and checkpoint.license == "MIT"
    assert "facenet-pytorch 2.6.0" in checkpoint.source and checkpoint.how_to_get == "python tools/convert_mtcnn.py"
    assert registry.resolve("face-detector") == WEIGHTS
    assert registry.sha256_of(WEIGHTS) == checkpoint.sha256
    model = detector()
    assert isinstance(model, FaceDetector) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    state = registry.load_state_dict(WEIGHTS)
    assert {key.split(".")[0] for key in state} == {"pnet", "rnet", "onet"}
    assert all(t.dtype == torch.float32 for t in state.values())
    assert sum(t.numel() for t in state.values()) == sum(p.numel() for p in model.parameters()) == 495_850
    # The nets run the stored weights (no silently re-initialised layer).
    assert torch.equal(model.onet.dense6_3.weight, state["onet.dense6_3.weight"])


@pytest.mark.parametrize("name", NAMES)
def test_one_confident_face_with_plausible_landmarks(name):
    result = found(name)
    assert set(result) == {"boxes", "scores", "landmarks"}
    boxes, scores, points = result["boxes"], result["scores"], result["landmarks"]
    assert boxes.dtype == scores.dtype == points.dtype == torch.float32
    assert boxes.shape == (len(scores), 4) and points.shape == (len(scores), 5, 2)
    assert torch.all(scores[:-1] >= scores[1:]), "sorted by score, highest first"
    assert int((scores > 0.95).sum()) == 1
    box, (left_eye, right_eye, nose, mouth_left, mouth_right) = boxes[0], points[0]
    width, height = float(box[2] - box[0]), float(box[3] - box[1])
    assert 80 < width < 300 and 0.9 < height / width < 1.6  # a portrait face in a 480 px crop
    inside = (points[0] >= box[:2]) & (points[0] <= box[2:])
    assert inside.all(), f"landmarks {points[0].tolist()} outside box {box.tolist()}"
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.parametrize("name", NAMES)
def test_five_landmarks_agree_with_the_68_point_net(name):
    result = found(name)
    points68 = face.landmarks68(photo(name), result["boxes"][:1])[0]
    expected = torch.stack([points68[36:42].mean(0), points68[42:48].mean(0), points68[30], points68[48], points68[54]])
    width = float(result["boxes"][0, 2] - result["boxes"][0, 0])
    error = (result["landmarks"][0] - expected).norm(dim=1) / width
    assert error.max() < 0.06, f"landmark errors {error.tolist()} (fraction of face width)"
    assert error.mean() < 0.035


def test_noise_and_flat_images_have_no_face():
    generator = torch.Generator().manual_seed(0)
    images = torch.stack([torch.rand(3, 240, 320, generator=generator), torch.full((3, 240, 320), 0.5)])
    for result in detector().detect(images):
        assert len(result["boxes"]) == len(result["scores"]) == len(result["landmarks"]) == 0
        assert result["boxes"].shape == (0, 4) and result["landmarks"].shape == (0, 5, 2)


def test_batch_gives_the_same_results_as_single_images():
    batch = torch.cat([photo("obama"), photo("biden"), torch.full_like(photo("obama"), 0.3)])
    results = detector().detect(batch)
    assert len(results) == 3 and len(results[2]["boxes"]) == 0
    for result, name in zip(results, ("obama", "biden")):
        single = found(name)
        assert len(result["boxes"]) == len(single["boxes"])
        torch.testing.assert_close(result["boxes"], single["boxes"], atol=1e-2, rtol=0)
        torch.testing.assert_close(result["landmarks"], single["landmarks"], atol=1e-2, rtol=0)
    assert (results[0]["boxes"][0] - results[1]["boxes"][0]).abs().max() > 10  # different faces


def test_flipped_photo_mirrors_box_and_swaps_sides():
    image = photo("obama3")
    width = image.shape[3]
    original, flipped = found("obama3"), detector().detect(image.flip(3))[0]
    assert int((flipped["scores"] > 0.95).sum()) == 1
    box, mirrored = original["boxes"][0], flipped["boxes"][0]
    expected = torch.stack([width - box[2], box[1], width - box[0], box[3]])
    face_width = float(box[2] - box[0])
    assert (mirrored - expected).abs().max() < 0.1 * face_width  # MTCNN's box regression is not exactly symmetric
    # The subject's eye that was on the left of the image is now on the right.
    swapped = flipped["landmarks"][0][[1, 0, 2, 4, 3]]
    swapped[:, 0] = width - swapped[:, 0]
    assert (swapped - original["landmarks"][0]).norm(dim=1).max() < 0.04 * face_width


def test_two_faces_side_by_side():
    pair = torch.cat([photo("obama"), photo("biden")], dim=3)  # 480 x 960
    result = detector().detect(pair)[0]
    confident = result["scores"] > 0.95
    assert int(confident.sum()) == 2
    boxes = result["boxes"][confident]
    left, right = boxes[boxes[:, 0].argsort()]
    shift = torch.tensor([480.0, 0, 480, 0])
    assert (left - found("obama")["boxes"][0]).abs().max() < 8
    assert (right - shift - found("biden")["boxes"][0]).abs().max() < 8


def test_large_images_are_detected_on_a_downscaled_copy():
    image = photo("obama")
    result = detector().detect(image, max_size=240)[0]  # detected at half size, reported in input pixels
    assert len(result["boxes"]) >= 1 and result["scores"][0] > 0.95
    reference = found("obama")
    width = float(reference["boxes"][0, 2] - reference["boxes"][0, 0])
    assert (result["boxes"][0] - reference["boxes"][0]).abs().max() < 0.08 * width
    assert (result["landmarks"][0] - reference["landmarks"][0]).norm(dim=1).max() < 0.05 * width
    # Non-square: a wide strip is scaled per axis and mapped back.
    wide = F.pad(image, (240, 240), value=0.5)  # 480 x 960
    strip = detector().detect(wide, max_size=480)[0]
    assert (strip["boxes"][0] - reference["boxes"][0] - torch.tensor([240.0, 0, 240, 0])).abs().max() < 0.08 * width


def test_images_of_any_size_and_lists():
    tiny = F.interpolate(photo("obama"), size=(40, 40), mode="area")
    assert len(detector().detect(tiny)) == 1  # runs; a 40 px image may or may not hold a findable face
    assert detector().detect(torch.rand(1, 3, 16, 16))[0]["boxes"].shape == (0, 4)  # smaller than min_face_size
    crop = photo("biden")[0, :, 40:440, 20:470]
    results = detector().detect([photo("obama")[0], crop])  # different sizes: one result each
    assert len(results) == 2 and all(int((r["scores"] > 0.95).sum()) == 1 for r in results)
    torch.testing.assert_close(results[1]["boxes"][0] + torch.tensor([20.0, 40, 20, 40]), found("biden")["boxes"][0], atol=6, rtol=0)
    assert detector().detect(torch.zeros(0, 3, 64, 64)) == []


def test_thresholds_and_min_face_size_change_what_is_found():
    image = photo("obama")
    assert len(detector().detect(image, min_face_size=500)[0]["boxes"]) == 0  # the face is ~140 px wide
    assert len(detector().detect(image, min_face_size=60)[0]["boxes"]) == 1
    assert len(detector().detect(image, thresholds=(0.6, 0.7, 0.99999))[0]["boxes"]) == 0
    loose = detector().detect(image, thresholds=(0.5, 0.5, 0.3))[0]
    assert len(loose["boxes"]) >= 1 and torch.allclose(loose["boxes"][0], found("obama")["boxes"][0], atol=5)


def test_bad_input_gets_a_clear_error():
    model = detector()
    with pytest.raises(ValueError, match="float"):
        model.detect((photo("obama") * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.detect(photo("obama") * 255)
    with pytest.raises(ValueError, match="RGB"):
        model.detect(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match="thresholds"):
        model.detect(photo("obama"), thresholds=(0.6, 0.7))
    with pytest.raises(ValueError, match="min_face_size"):
        model.detect(photo("obama"), min_face_size=0)


def test_loader_refuses_files_that_are_not_mtcnn_weights(tmp_path):
    with pytest.raises(PhotoshieldError, match="not MTCNN weights"):
        build_detector(registry.BUNDLED_DIR / "face_landmarks_68.safetensors")
    garbage = tmp_path / "mtcnn.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(PhotoshieldError, match="not a readable safetensors"):
        build_detector(garbage)
    with pytest.raises(PhotoshieldError, match="not a readable safetensors"):
        registry.load("face-detector", path=garbage, verify=False)  # checksum off: the format check speaks


def test_detect_faces_loads_once_per_device_and_face_wrapper_delegates():
    face_detect._DETECTORS.clear()
    first = detect_faces(photo("obama"))
    cached = face_detect._DETECTORS["cpu"]
    second = face.detect_faces(photo("obama"))  # the lazy wrapper in photoshield.models.face
    assert face_detect._DETECTORS["cpu"] is cached
    torch.testing.assert_close(first[0]["boxes"], second[0]["boxes"])
    torch.testing.assert_close(first[0]["boxes"], found("obama")["boxes"])
    assert face.FaceDetector is FaceDetector
    given = detect_faces(photo("obama"), detector=detector(), thresholds=(0.6, 0.7, 0.99))
    assert len(given[0]["boxes"]) == 1


def test_nms_matrix_and_sweep_agree_with_a_plain_greedy_reference():
    generator = torch.Generator().manual_seed(1)
    corner = torch.rand(250, 2, generator=generator) * 100
    boxes = torch.cat([corner, corner + 5 + torch.rand(250, 2, generator=generator) * 30], dim=1).double()
    scores = torch.rand(250, generator=generator)
    groups = torch.randint(0, 3, (250,), generator=generator)
    for mode in ("union", "min"):
        expected = _greedy(boxes, scores, groups, 0.4, mode)
        assert nms(boxes, scores, 0.4, groups=groups, mode=mode).tolist() == expected
        order = torch.sort(scores, descending=True, stable=True).indices
        sweep = face_detect._nms_sweep(boxes[order], groups[order], 0.4, mode)
        assert order[sweep].tolist() == expected
    assert nms(boxes[:0], scores[:0], 0.5).shape == (0,)


def _greedy(boxes, scores, groups, threshold, mode):
    order, kept = sorted(range(len(boxes)), key=lambda i: -float(scores[i])), []
    for i in order:
        if all(groups[i] != groups[k] or _overlap(boxes[i], boxes[k], mode) <= threshold for k in kept):
            kept.append(i)
    return kept


def _overlap(a, b, mode):
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    area = lambda box: float((box[2] - box[0]) * (box[3] - box[1]))  # noqa: E731
    return w * h / (area(a) + area(b) - w * h) if mode == "union" else w * h / min(area(a), area(b))


def test_crops_equal_area_resampling_of_zero_padded_regions():
    image = photo("obama")[:, :, :100, :120] * 255
    table = face_detect._integral(image.repeat(2, 1, 1, 1))
    boxes = torch.tensor([[10, 20, 50, 60], [-15, -5, 30, 40], [90, 70, 140, 120], [5, 5, 17, 17]])
    crops = face_detect._crop_resize(table, boxes, torch.tensor([0, 1, 1, 0]), 24)
    for crop, (x0, y0, x1, y1) in zip(crops, boxes.tolist()):
        padded = F.pad(image, (20, 40, 20, 40))[:, :, y0 + 20 : y1 + 20, x0 + 20 : x1 + 20]
        torch.testing.assert_close(crop[None], F.interpolate(padded, size=(24, 24), mode="area"), atol=1e-3, rtol=0)
