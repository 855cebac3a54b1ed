"""Image metrics on values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from photoshield import metrics


@pytest.fixture()
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.rand(2, 3, 24, 40) * 0.9
    return a, a + 1.0 / 255.0


def test_psnr_of_a_one_level_offset(pair):
    a, b = pair
    value = metrics.psnr(a, b)
    assert value.shape == (2,)
    assert value.tolist() == pytest.approx([20 * math.log10(255.0)] * 2, abs=1e-3)  # 48.13 dB
    assert metrics.psnr(a * 255, b * 255, data_range=255.0).tolist() == pytest.approx(value.tolist(), abs=1e-3)


def test_psnr_of_identical_images_is_infinite_and_batched():
    a = torch.rand(3, 3, 16, 16)
    b = a.clone()
    b[1] = (b[1] + 0.1).clamp(0, 1)
    value = metrics.psnr(a, b)
    assert math.isinf(value[0]) and value[0] > 0 and math.isinf(value[2])
    assert 15 < value[1] < 30


def test_linf_l2_rmse_in_255_units(pair):
    a, b = pair
    assert metrics.linf(a, b).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    count = 3 * 24 * 40
    assert metrics.l2(a, b).tolist() == pytest.approx([math.sqrt(count)] * 2, rel=1e-4)
    assert metrics.rmse255(a, b).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    c = a.clone()
    c[0, 1, 5, 7] += 8 / 255  # one pixel moved by 8 levels
    assert metrics.linf(a, c).tolist() == pytest.approx([8.0, 0.0], abs=1e-4)
    assert metrics.l2(a, c).tolist() == pytest.approx([8.0, 0.0], abs=1e-4)


def test_ssim_orders_distortions():
    generator = torch.Generator().manual_seed(0)
    a = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 64, generator=generator), 5, 1, 2)
    mild = (a + 0.01 * torch.randn(a.shape, generator=generator)).clamp(0, 1)
    strong = (a + 0.1 * torch.randn(a.shape, generator=generator)).clamp(0, 1)
    assert metrics.ssim(a, a).item() == pytest.approx(1.0, abs=1e-5)
    assert 1.0 > metrics.ssim(a, mild).item() > metrics.ssim(a, strong).item() > 0.0
    assert metrics.ssim(a[..., :8, :8], mild[..., :8, :8]).shape == (1,)  # smaller than the window


def test_summary_and_shapes(pair):
    a, b = pair
    result = metrics.summary(a[0], b[0])  # (3, H, W) is one image
    assert set(result) == {"psnr", "ssim", "linf", "l2", "rmse255"}
    assert all(value.shape == (1,) for value in result.values())
    with pytest.raises(ValueError):
        metrics.psnr(a, b[:, :, :10])


def test_region_psnr_and_ssim_see_a_change_confined_to_a_region():
    from photoshield.metrics import psnr, region_psnr, region_ssim, ssim

    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    noisy = clean.clone()
    noisy[:, :, 16:32, 16:32] = (noisy[:, :, 16:32, 16:32] + 4 / 255).clamp(0, 1)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:32, 16:32] = 1
    inside = region_psnr(clean, noisy, mask)
    assert inside.shape == (2,) and (inside < psnr(clean, noisy) - 10).all()  # a 16th of the pixels: 12 dB apart
    assert torch.allclose(inside, psnr(clean[..., 16:32, 16:32], noisy[..., 16:32, 16:32]), atol=0.05)
    assert (region_ssim(clean, noisy, mask) < ssim(clean, noisy)).all()
    with pytest.raises(ValueError, match="empty"):
        region_psnr(clean, noisy, torch.zeros(1, 1, 64, 64))


def test_the_old_evaluate_metrics_path_still_imports_the_same_functions():
    from photoshield.evaluate import metrics as old

    assert old.psnr is metrics.psnr and old.__all__ == metrics.__all__
