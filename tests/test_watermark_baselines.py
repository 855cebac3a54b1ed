"""The invisible-watermark baselines: payloads survive the uint8/BGR round trip, bad input is refused.

They need the optional ``baselines`` extra (the invisible-watermark package): without it the
module is skipped, with that reason in the report.
"""

import pytest
import torch

pytest.importorskip("imwatermark", reason="the optional baselines extra is not installed: pip install -e '.[baselines]'")

from photoshield import attacks, data  # noqa: E402
from photoshield.errors import PhotoshieldError  # noqa: E402
from photoshield.metrics import psnr  # noqa: E402
from photoshield.image import quantize, resize_to  # noqa: E402
from photoshield.watermark.baselines import baseline, names, padded_size  # noqa: E402


def _bits(count: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 2, (1, count), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, photo", [("dwtDct", "astronaut"), ("dwtDctSvd", "obama"), ("rivaGan", "obama")])
def test_embed_then_decode_recovers_the_payload(name, photo):
    image = data.sample(photo)
    mark = baseline(name)
    bits = _bits(mark.bits)
    marked = mark.embed(image, bits)
    assert marked.shape == image.shape and marked.dtype == torch.float32
    assert torch.equal(marked, (marked * 255).round() / 255)  # on the 8-bit grid, as the package writes it
    assert float(psnr(image, marked)) > 30  # invisible, not a copy
    assert (marked - image).abs().max() > 0
    assert (mark.decode(marked) == bits).float().mean() >= 0.95
    assert (mark.decode(image) == bits).float().mean() < 0.8  # an unmarked photo decodes near chance


def test_batches_carry_one_payload_per_image_and_survive_mild_jpeg():
    images = torch.cat([data.sample("obama"), data.sample("biden")])
    mark = baseline("dwt-dct-svd", bits=48)
    bits = torch.stack([_bits(48, 2)[0], _bits(48, 3)[0]])
    decoded = mark.decode(attacks.get("jpeg", quality=90)(mark.embed(images, bits)))
    assert decoded.shape == (2, 48)
    assert ((decoded == bits).float().mean(1) >= 0.9).all()


def test_bad_input_is_refused_with_a_clear_message():
    assert names() == ["dwtDct", "dwtDctSvd", "rivaGan"]
    with pytest.raises(PhotoshieldError, match="unknown watermark baseline"):
        baseline("stegastamp")
    with pytest.raises(PhotoshieldError, match="exactly 32 bits"):
        baseline("rivaGan", bits=48)
    mark = baseline("dwtDct")
    with pytest.raises(PhotoshieldError, match="shape"):
        mark.embed(data.sample("obama"), _bits(16))
    with pytest.raises(PhotoshieldError, match="0 or 1"):
        mark.embed(data.sample("obama"), _bits(32) * 2)


def test_small_images_are_padded_marked_and_cropped_back():
    assert padded_size(512, 410) == (512, 410)  # large enough: untouched
    assert padded_size(180, 320) == (205, 320)  # the short side grows to the package's 256 * 256 pixels
    assert padded_size(320, 167) == (320, 205)  # obama2 at --max-side 320
    assert padded_size(200, 200) == padded_size(64, 96) == (256, 256)
    image = quantize(resize_to(data.sample("obama2"), (320, 167)))  # the README's --max-side 320 example
    for name in ("dwtDctSvd", "rivaGan"):
        mark = baseline(name)
        bits = _bits(mark.bits, 5)
        marked = mark.embed(image, bits)
        assert marked.shape == image.shape  # cropped back to the input's size
        assert float(psnr(image, marked)) > 30
        assert (mark.decode(marked) == bits).float().mean() >= 0.9, name
    tiny = baseline("dwtDct").embed(torch.rand(1, 3, 40, 30), _bits(32))  # far below the limit: still runs
    assert tiny.shape == (1, 3, 40, 30)
