"""Facial-feature protection on real photos with the bundled face models."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from photoshield.io import read_image
from photoshield.models import face
from photoshield.protect import protect
from photoshield.protect.facial import FacialProtection, face_region_mask, find_faces

pytest.importorskip("photoshield.models.face.detect")
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


def test_default_budget_keeps_the_face_psnr_and_moves_identity_further_than_an_even_budget(obama):
    result = protect(obama, method="facial", progress=False)  # default: face PSNR >= 35 dB, pixels <= 12/255
    report = result.report
    assert report["budget"] == "PSNR >= 35 dB over the face boxes, no pixel beyond 12/255"
    face_psnr = report["protected"]["face_psnr_db"][0]
    assert 35.0 <= face_psnr <= 36.5, face_psnr  # the floor holds after 8-bit rounding, and the budget is used
    assert (result.image - obama).abs().max() <= 12 / 255 + 1e-6
    # An L_inf budget of the same face PSNR spreads the change evenly and moves every member less.
    even = protect(obama, method="facial", epsilon=5 / 255, progress=False).report
    assert even["protected"]["face_psnr_db"][0] <= face_psnr + 0.5
    for model in ("dlib-resnet", "faceres", "faceres-deep"):
        assert report["protected"][f"{model}_cosine"][0] < even["protected"][f"{model}_cosine"][0], model


def test_perturbation_stays_inside_the_face_region(obama):
    faces = find_faces(obama)
    mask = face_region_mask(obama, faces)
    result = protect(obama, method="facial", steps=3, preset="light", progress=False)
    assert result.delta[:, :, mask[0, 0] == 0].abs().max() == 0
    assert result.delta.abs().max() > 0


def test_every_face_of_a_two_face_photo_is_protected():
    pair = torch.cat([_photo("obama.jpg", 256), _photo("biden.jpg", 256)], dim=-1)
    objective = FacialProtection().objective(pair)
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


def test_the_ensemble_objective_lowers_every_members_similarity(obama):
    from photoshield.protect.facial import DEFAULT_ENSEMBLE

    result = protect(obama, method="facial", steps=8, preset="light", progress=False)
    report = result.report
    assert report["ensemble"] == list(DEFAULT_ENSEMBLE) and len(DEFAULT_ENSEMBLE) >= 3
    for name in DEFAULT_ENSEMBLE:
        assert report["protected"][f"{name}_cosine"][0] < report["clean"][f"{name}_cosine"][0] - 0.02, name
    assert report["protected"]["face_psnr_db"][0] < report["psnr_db"][0]  # the change sits on the face


def test_sface_and_dlib_are_never_attacked():
    from photoshield.errors import PhotoshieldError
    from photoshield.protect.facial import DEFAULT_ENSEMBLE, JUDGES_ONLY, identity_models

    assert not (set(DEFAULT_ENSEMBLE) | set(identity_models())) & JUDGES_ONLY
    for name in ("sface", "face-judge-sface", "dlib"):
        with pytest.raises(PhotoshieldError, match="independent judge"):
            FacialProtection(models=["dlib-resnet", name])
    with pytest.raises(PhotoshieldError, match="empty"):
        FacialProtection(models=["faceres"], exclude="faceres")
    assert FacialProtection(exclude=["faceres"]).models == [m for m in DEFAULT_ENSEMBLE if m != "faceres"]


def test_leaving_a_model_out_removes_it_from_the_objective(obama):
    faces = find_faces(obama)
    objective = FacialProtection(exclude=["dlib-resnet"]).objective(obama, faces)
    assert "dlib-resnet" not in objective.info["ensemble"]
    clean = objective.measure(obama)
    assert "dlib-resnet_cosine" not in clean and clean["faceres_cosine"][0] > 0.999


def test_alignment_jitter_moves_faces_a_little_and_repeatably(obama):
    faces = find_faces(obama)
    first = faces.jittered(0.05, torch.Generator().manual_seed(1))
    again = faces.jittered(0.05, torch.Generator().manual_seed(1))
    assert torch.equal(first.landmarks, again.landmarks) and torch.equal(first.boxes, again.boxes)
    size = float((faces.boxes[0, 2:] - faces.boxes[0, :2]).max())
    moved = (first.landmarks - faces.landmarks).norm(dim=-1)
    assert 0 < float(moved.max()) < 0.25 * size


def test_judges_see_the_clean_face_as_the_same_person(obama):
    from photoshield.protect.facial import IdentityJudges

    judges = IdentityJudges(["dlib-resnet", "faceres", "sface"])
    reference = judges.reference(obama)
    scores = judges.score(reference, obama)
    assert all(same for _, same in scores.values()), scores
    flat = judges.score(reference, torch.full_like(obama, 0.5))
    assert all(not same for _, same in flat.values())


def test_robust_preset_optimises_through_the_cheap_purifications(obama):
    from photoshield.protect.api import PRESETS

    names = [spec.split(":")[0] for spec in PRESETS["robust"]["eot"]]
    assert {"noise-jpeg", "tv", "noisy-upscale"} <= set(names)
    result = protect(obama, method="facial", epsilon=8 / 255, preset="robust", steps=6, progress=False)
    assert result.report["status"] == "protected"
    assert (result.image - obama).abs().max() <= 8 / 255 + 1e-6
