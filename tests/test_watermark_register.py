"""FFT registration of the watermark read-out: crops and rotations read without the grid search.

The shipped model is bundled, so these run on its real weights.
"""

import random
import re

import pytest
import torch
import torch.nn.functional as F

from photoshield import attacks, data
from photoshield.image import resize_to
from photoshield.watermark import embed, load, register, sync, verify
from photoshield.watermark.model import high_pass

MESSAGE, KEY = "ID-7", "owner"


@pytest.fixture(scope="module")
def model():
    return load(device="cpu")


@pytest.fixture(scope="module")
def marked():
    return embed(data.sample("chelsea"), MESSAGE, key=KEY)


@pytest.fixture
def no_grid_search(monkeypatch):
    """Fail the test if anything falls back to the exhaustive grid search."""
    def refuse(*args, **kwargs):
        raise AssertionError("the exhaustive grid search ran")

    monkeypatch.setattr(sync, "search_logits", refuse)


def test_read_out_maps_equal_the_read_out_of_each_placed_window(model):
    """One FFT per scale gives every bit's logit at every offset: it matches placing the window by hand."""
    decoder = model.decoder
    square = resize_to(data.sample("coffee"), (128, 128))
    maps = register._read_out_maps(decoder, square, low=100, size=128)
    small = min(maps)
    window = high_pass(resize_to(square * 2 - 1, (small, small)))
    for top, left in ((0, 0), (3, 11), (64 - small, 64 - small)):
        placed = F.pad(window, (left, 64 - small - left, top, 64 - small - top))
        expected = decoder.linear(placed.flatten(1))[0]
        assert torch.allclose(maps[small][:, top, left], expected, atol=1e-4)


def test_a_crop_is_found_to_the_pixel_and_read_without_the_grid_search(model, marked, no_grid_search):
    side, top, left = 104, 9, 17  # a crop of 66 % of the area, placed on the 128 px canvas of the search
    height, width = marked.shape[-2:]
    rows = slice(round(top / 128 * height), round((top + side) / 128 * height))
    cols = slice(round(left / 128 * width), round((left + side) / 128 * width))
    copy = attacks.get("jpeg", quality=75)(marked[..., rows, cols])  # not zoomed back, then a JPEG
    assert not verify(copy, MESSAGE, key=KEY).detected
    found = verify(copy, MESSAGE, key=KEY, search=True)
    assert found.detected, found
    assert found.geometry.startswith("crop of"), found.geometry
    numbers = [int(v) for v in re.findall(r"\d+", found.geometry)]  # "crop of SIDE/128 side at (TOP, LEFT)"
    assert abs(numbers[0] - side) <= 1 and abs(numbers[2] - top) <= 1 and abs(numbers[3] - left) <= 1, found.geometry


def test_a_rotation_is_read_without_the_grid_search(model, marked, no_grid_search):
    copy = attacks.get("rotation", degrees=-12)(marked)
    assert not verify(copy, MESSAGE, key=KEY).detected
    found = verify(copy, MESSAGE, key=KEY, search=True)
    assert found.detected and found.geometry == "rotation by -12 degrees", found


@pytest.mark.slow
def test_searched_p_values_stay_calibrated_on_clean_crops(model):
    """Two hundred clean crops read with the search at a loose FPR: detections stay within what it promises."""
    rng = random.Random(0)
    photos = [data.sample(name) for name in ("kodim23", "coffee", "rocket", "sail", "tulips", "barbara")]
    fpr, count, hits = 0.05, 200, 0
    for _ in range(count):
        photo = rng.choice(photos)
        height, width = photo.shape[-2:]
        h, w = rng.randint(128, height), rng.randint(128, width)
        top, left = rng.randrange(height - h + 1), rng.randrange(width - w + 1)
        hits += verify(photo[..., top : top + h, left : left + w], MESSAGE, key=KEY, fpr=fpr, model=model,
                       search=True).detected
    assert hits <= fpr * count + 3 * (fpr * count) ** 0.5, hits


@pytest.mark.parametrize("linear_size", [32, 0])
def test_search_runs_on_models_with_and_without_a_linear_read_out(linear_size):
    """Registration needs the linear read-out; a decoder without one falls back to decoding the grid."""
    from photoshield.watermark.model import WatermarkConfig, WatermarkModel

    torch.manual_seed(0)
    config = WatermarkConfig(size=32, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=4,
                             norm_num_groups=4, decoder_channels=(8, 16), sampling_steps=2,
                             decoder_linear_size=linear_size, message_skip_size=linear_size)
    tiny = WatermarkModel(config).eval()
    photo = resize_to(data.sample("coffee"), (48, 64))
    result = verify(photo, MESSAGE, key=KEY, model=tiny, search=True, fpr=1e-3)
    assert not result.detected and 0.0 <= result.p_value <= 1.0
