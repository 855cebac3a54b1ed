"""Facial-feature protection on real photos with the bundled face models."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from photoshield.io import read_image
from photoshield.models import face
from photoshield.protect import protect
from photoshield.protect.facial import FacialAttack, face_region_mask, find_faces

pytest.importorskip("photoshield.models.face_detect")
FACES = Path(__file__).parent / "fixtures" / "faces"


def _photo(name: str, size: int = 320) -> torch.Tensor:
    image = read_image(FACES / name)
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def obama() -> torch.Tensor:
    from photoshield.image import quantize

    return quantize(_photo("obama.jpg"))


def test_default_preset_pushes_the_identity_past_dlibs_threshold(obama):
    result = protect(obama, method="facial", epsilon=8 / 255, progress=False)
    report = result.report
    assert report["status"] == "protected" and report["faces"] == 1
    assert report["clean"]["dlib_distance"][0] < 1e-4
    assert report["protected"]["dlib_distance"][0] > 0.6, report["protected"]
    assert (result.image - obama).abs().max() <= 8 / 255 + 1e-6
    assert report["psnr_db"][0] > 32
    # The embedder's verdict holds for a fresh detection + alignment of the saved pixels.
    fresh = face.embed_faces(result.image)
    clean = face.embed_faces(obama)
    assert float(face.identity_distance(fresh, clean)) > 0.6


def test_perturbation_stays_inside_the_face_region(obama):
    faces = find_faces(obama)
    mask = face_region_mask(obama, faces)
    result = protect(obama, method="facial", steps=3, preset="light", progress=False)
    assert result.delta[:, :, mask[0, 0] == 0].abs().max() == 0
    assert result.delta.abs().max() > 0


def test_every_face_of_a_two_face_photo_is_protected():
    pair = torch.cat([_photo("obama.jpg", 256), _photo("biden.jpg", 256)], dim=-1)
    objective = FacialAttack().objective(pair)
    assert objective.info["faces_per_image"] == [2]
    mask = objective.mask[0, 0]
    assert mask[:, :256].sum() > 0 and mask[:, 256:].sum() > 0
    result = protect(pair, method="facial", steps=4, preset="light", progress=False)
    assert result.delta[..., :256].abs().sum() > 0 and result.delta[..., 256:].abs().sum() > 0


def test_photo_without_a_face_is_left_unchanged():
    flat = torch.full((1, 3, 128, 160), 0.5)
    result = protect(flat, method="facial", progress=False)
    assert result.report["status"] == "unchanged"
    assert "no face" in result.report["reason"]
    assert torch.equal(result.image, flat)


def test_same_seed_same_result(obama):
    first = protect(obama, method="facial", steps=3, preset="light", seed=3, progress=False)
    second = protect(obama, method="facial", steps=3, preset="light", seed=3, progress=False)
    assert torch.equal(first.image, second.image)
