"""Plain-language verdicts and previews of a protection (photoshield.protect.verdicts, .preview)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from photoshield.data import sample
from photoshield.image import resize_to
from photoshield.io import read_image
from photoshield.protect import protect
from photoshield.protect.facial import SAME_PERSON_COSINE
from photoshield.protect.preview import difference_image, face_box, face_previews, write_previews
from photoshield.protect.verdicts import JudgeVerdict, judge_verdicts, score_verdicts, summary


@pytest.fixture(scope="module")
def protected(one_thread):
    """(original, result) of one light protection step on a small real portrait."""
    photo = resize_to(sample("obama"), (240, 192))
    return photo, protect(photo, method="facial", preset="light", steps=2, progress=False, judges=("sface",))


def test_summary_of_a_real_protection_names_every_model_its_threshold_and_the_psnr(protected):
    photo, result = protected
    text = result.summary()
    assert text == summary(result.report)
    lines = text.splitlines()
    assert lines[0].startswith("protected (facial, preset light, budget PSNR >= 35 dB, pixels <= 12/255, 2 steps, ")
    assert "computed against: dlib ResNet, FaceRes, FaceRes-deep" in lines
    for name, label in (("dlib-resnet", "dlib ResNet"), ("faceres", "FaceRes"), ("faceres-deep", "FaceRes-deep")):
        cosine = result.report["protected"][f"{name}_cosine"][0]
        state = "still recognised" if cosine >= SAME_PERSON_COSINE[name] else "no longer recognised"
        assert f"  {label}: {state} (cosine {cosine:.2f}, same person at or above {SAME_PERSON_COSINE[name]:.2f})" in lines
    sface = result.report["protected"]["sface_cosine"][0]
    assert any(line.startswith("  SFace, never seen by the protection: ") and f"(cosine {sface:.2f}, same person at or "
               "above 0.36)" in line for line in lines)
    face_psnr = result.report["protected"]["face_psnr_db"][0]
    assert lines[-1].startswith(f"quality: PSNR {face_psnr:.1f} dB on the face region, "
                                f"{result.report['psnr_db'][0]:.1f} dB on the whole photo")


def test_verdicts_count_what_the_report_says(protected):
    _, result = protected
    verdicts = judge_verdicts(result.report)
    assert [v.model for v in verdicts] == ["dlib-resnet", "faceres", "faceres-deep", "sface"]
    assert [v.attacked for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].recognised == result.report["protected"]["sface_still_recognised"][0]
    head = next(line for line in result.summary().splitlines() if line.startswith("face:"))
    assert head.startswith(f"face: recognised by {sum(v.recognised for v in verdicts)} of 4 face models")


def _report(**after):
    """A facial report of a batch of two photos: two faces in the first, one in the second."""
    return {"method": "facial", "status": "protected", "preset": "standard", "epsilon_255": 8.0, "steps": 60,
            "ensemble": ["dlib-resnet", "faceres"], "faces": 3, "faces_per_image": [2, 1],
            "boxes": [[10, 10, 50, 60], [100, 20, 200, 140], [5, 5, 40, 40]], "psnr_db": [44.0, 45.5],
            "protected": {"faces": 3, "dlib-resnet_cosine": [0.5, 0.95, 0.2], "faceres_cosine": [0.9, 0.1, 0.6],
                          "sface_cosine": [0.2, 0.5], "sface_still_recognised": [False, True],
                          "dlib_judge_distance": [None, 0.3], "dlib_still_recognised": [None, True],
                          "face_psnr_db": [36.0, 37.25], **after}}


def test_every_face_of_each_photo_of_a_batch_gets_its_own_verdicts():
    report = _report()
    first = summary(report, image=0).splitlines()
    assert "face 1: recognised by 1 of 2 face models (FaceRes)" in first
    assert "  dlib ResNet: no longer recognised (cosine 0.50, same person at or above 0.93)" in first
    assert "face 2: recognised by 1 of 2 face models (dlib ResNet)" in first
    assert "largest face, as the independent judges find it:" in first
    assert "  SFace, never seen by the protection: no longer recognised (cosine 0.20, same person at or above 0.36)" in first
    assert not any("dlib:" in line for line in first)  # real dlib found no face on the original: nothing to say
    second = summary(report, image=1).splitlines()
    assert "face: recognised by 3 of 4 face models (FaceRes, SFace, dlib)" in second
    assert ("  dlib, never seen by the protection, but the same network as dlib ResNet: still recognised "
            "(distance 0.30, same person below 0.60)") in second
    assert second[-1].startswith("quality: PSNR 37.2 dB on the face region, 45.5 dB on the whole photo")


def test_an_unchanged_photo_says_why_and_has_no_verdicts():
    report = {"method": "facial", "preset": "light", "epsilon_255": 8.0, "faces": 0, "faces_per_image": [0],
              "ensemble": ["dlib-resnet"], "status": "unchanged", "reason": "no face found: the facial method changes nothing"}
    assert judge_verdicts(report) == []
    assert summary(report).splitlines()[:2] == ["unchanged (facial, preset light, budget 8/255)",
                                                "note: no face found: the facial method changes nothing"]
    assert "computed against" not in summary(report)  # nothing was computed


def test_close_scores_get_enough_digits_and_a_lost_face_is_said():
    close = JudgeVerdict("mobilefacenet", 0.99993, False, "cosine", 0.99996)
    assert str(close) == "MobileFaceNet: no longer recognised (cosine 0.99993, same person at or above 0.99996)"
    lost = score_verdicts({"sface": (math.nan, False)})[0]
    assert str(lost) == "SFace, independent judge: no face found (counts as not recognised)"
    dlib = score_verdicts({"dlib": (0.71, False)}, attacked=("faceres",))[0]
    assert str(dlib) == "dlib, never seen by the protection: no longer recognised (distance 0.71, same person below 0.60)"
    assert dlib.attacked is False and dlib.measure == "distance" and dlib.threshold == 0.6


def test_face_box_picks_the_largest_face_of_the_image():
    report = _report()
    assert face_box(report, 0) == (100, 20, 200, 140)
    assert face_box(report, 1) == (5, 5, 40, 40)
    assert face_box({"faces_per_image": [0], "boxes": []}) is None


def test_previews_zoom_the_face_twice_and_make_the_change_visible(protected, tmp_path):
    photo, result = protected
    box = face_box(result.report)
    previews = face_previews(photo, result.image, box=box)
    side = previews.box[2] - previews.box[0]
    assert previews.box[3] - previews.box[1] == side and side >= box[2] - box[0]
    assert previews.comparison.size == (4 * side + 8, 2 * side)
    assert previews.difference.size == (2 * side, 2 * side)
    left = np.asarray(previews.comparison.crop((0, 0, 2 * side, 2 * side)))
    assert left.std() > 10  # the photo, not an empty panel
    change = np.asarray(previews.difference)
    assert change.min() <= 1 or change.max() >= 254  # the largest change reaches black or white
    assert previews.gain == pytest.approx(0.5 / float((result.image - photo)[..., previews.box[1]:previews.box[3],
                                                                                 previews.box[0]:previews.box[2]].abs().max()))
    stem = tmp_path / "portrait"
    comparison, difference = write_previews(photo, result.image, stem, box=box)
    assert comparison.name == "portrait.preview.png" and difference.name == "portrait.difference.png"
    assert read_image(comparison).shape[-2:] == (2 * side, 4 * side + 8)


def test_difference_of_identical_photos_is_flat_grey_and_sizes_must_match():
    image = Image.new("RGB", (20, 10), (30, 60, 90))
    picture, gain = difference_image(image, image)
    assert gain == 1.0 and (np.asarray(picture) == 128).all()
    with pytest.raises(ValueError, match="differ in size"):
        difference_image(image, Image.new("RGB", (10, 10)))


def test_a_large_face_is_zoomed_less_than_twice():
    big = torch.rand(1, 3, 900, 900)
    previews = face_previews(big, big, box=(100, 100, 800, 800))
    assert max(previews.comparison.size[1], previews.difference.size[0]) <= 1024
