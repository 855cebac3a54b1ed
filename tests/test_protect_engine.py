"""The shared PGD engine and perturbation shaping: budgets, masks, range, seeds, shaping."""

import pytest
import torch

from photoshield import attacks
from photoshield.protect.api import quantize_within_budget
from photoshield.metrics import region_psnr
from photoshield.protect.optim import PGDConfig, rms_for_psnr, run_pgd
from photoshield.protect.shaping import dct_lowpass, faceshield_shaper, high_frequency_ratio, jnd_mask


def _problem(seed=0, shape=(2, 3, 37, 53)):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(shape, generator=generator)
    target = torch.rand(shape, generator=generator)
    return images, lambda x: (x - target).pow(2).flatten(1).mean(1)


@pytest.mark.parametrize("optimizer", ["sign", "adam"])
@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_linf_budget_range_and_loss(optimizer, schedule):
    images, loss_fn = _problem()
    epsilon = 6 / 255
    config = PGDConfig(epsilon=epsilon, steps=15, optimizer=optimizer, schedule=schedule, momentum=0.5, progress=False)
    result = run_pgd(loss_fn, images, config)
    assert result.delta.abs().max() <= epsilon + 1e-7
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert torch.all(result.loss_after < result.loss_before)
    assert len(result.history) == 15


def test_l2_budget():
    images, loss_fn = _problem()
    result = run_pgd(loss_fn, images, PGDConfig(norm="l2", epsilon=0.5, steps=10, progress=False))
    assert torch.all(result.delta.flatten(1).norm(dim=1) <= 0.5 + 1e-5)
    assert torch.all(result.loss_after < result.loss_before)


def test_rms_budget_holds_the_regions_psnr_floor_and_the_pixel_cap():
    images, loss_fn = _problem()
    region = torch.zeros(1, 1, 37, 53)
    region[..., 8:30, 10:45] = 1.0
    cap = 20 / 255
    config = PGDConfig(norm="rms", epsilon=rms_for_psnr(30.0), linf_cap=cap, steps=30, step_size=rms_for_psnr(30.0) * 0.15,
                       progress=False)
    result = run_pgd(loss_fn, images, config, mask=region, region=region)
    quality = region_psnr(images, result.adversarial, region.expand(2, 1, 37, 53))
    assert torch.all(quality >= 30.0 - 1e-3), quality
    assert torch.all(quality <= 30.5), quality  # the budget is used, not left idle
    assert result.delta.abs().max() <= cap + 1e-7
    assert torch.all(result.loss_after < result.loss_before)
    # Without a mask the energy may go anywhere, but never beyond what the region's floor allows.
    spread = run_pgd(loss_fn, images, config, region=region)
    allowed = rms_for_psnr(30.0) * (3 * region.sum()).sqrt()
    assert torch.all(spread.delta.flatten(1).norm(dim=1) <= allowed * (1 + 1e-5))
    assert torch.all(spread.delta[..., region[0, 0] == 0].abs().amax(-1) > 0)
    # Steps along the normalised gradient put the energy where the loss gains most: here, unevenly.
    assert float(result.delta.abs().flatten(1).std(1).min()) > 0


def test_rms_epsilon_outside_the_pixel_range_is_refused():
    with pytest.raises(ValueError, match="pixel units"):
        PGDConfig(norm="rms", epsilon=4.5)
    with pytest.raises(ValueError, match="linf_cap"):
        PGDConfig(norm="rms", epsilon=0.02, linf_cap=3.0)


def test_mask_is_respected_and_scales_the_budget():
    images, loss_fn = _problem()
    mask = torch.zeros(1, 1, 37, 53)
    mask[..., 5:20, 10:40] = 1.0
    mask[..., 25:30, 10:40] = 0.5
    epsilon = 8 / 255
    result = run_pgd(loss_fn, images, PGDConfig(epsilon=epsilon, steps=10, progress=False), mask=mask)
    assert result.delta[..., mask[0, 0] == 0].abs().max() == 0
    assert result.delta[..., 25:30, 10:40].abs().max() <= epsilon / 2 + 1e-7
    assert result.delta[..., 5:20, 10:40].abs().max() > epsilon / 2


def test_same_seed_same_result_with_eot_and_diversity():
    images, loss_fn = _problem()
    config = lambda seed: PGDConfig(  # noqa: E731
        steps=6, seed=seed, random_start=True, input_diversity=0.5, eot=(attacks.get("blur", sigma=1.0), attacks.get("resize", scale=0.75)), progress=False
    )
    first = run_pgd(loss_fn, images, config(3)).delta
    assert torch.equal(first, run_pgd(loss_fn, images, config(3)).delta)
    assert not torch.equal(first, run_pgd(loss_fn, images, config(4)).delta)


def test_early_stop_at_target_loss():
    images, loss_fn = _problem()
    start = loss_fn(images)
    target = float(start.max() * 0.97)
    result = run_pgd(loss_fn, images, PGDConfig(steps=200, target_loss=target, epsilon=0.2, progress=False))
    assert result.early_stopped and result.steps_run < 200
    assert torch.all(result.loss_after <= target)


def test_interrupt_returns_best_so_far():
    images, loss_fn = _problem()
    calls = {"n": 0}

    def interrupting(x):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return loss_fn(x)

    result = run_pgd(interrupting, images, PGDConfig(steps=50, progress=False))
    assert result.interrupted and 0 < result.steps_run < 50
    assert torch.all(result.loss_after < result.loss_before)


def test_shaping_lowers_high_frequency_energy():
    images, loss_fn = _problem(shape=(1, 3, 64, 96))
    plain = run_pgd(loss_fn, images, PGDConfig(steps=10, progress=False)).delta
    shaped = run_pgd(loss_fn, images, PGDConfig(steps=10, progress=False), shaping=faceshield_shaper()).delta
    assert high_frequency_ratio(shaped).item() < 0.6 * high_frequency_ratio(plain).item()


def test_dct_lowpass_keeps_all_with_64_and_removes_fine_texture():
    x = torch.rand(1, 3, 20, 28)
    assert torch.allclose(dct_lowpass(x, 64), x, atol=1e-5)
    checker = (torch.arange(16).view(-1, 1) + torch.arange(16).view(1, -1)) % 2 * 2.0 - 1.0
    checker = checker.expand(1, 1, 16, 16)
    kept = dct_lowpass(checker, 25)
    assert kept.pow(2).sum() < 0.1 * checker.pow(2).sum()
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    assert torch.allclose(dct_lowpass(smooth, 25), smooth, atol=0.02)


def test_jnd_mask_gives_more_budget_to_texture():
    flat = torch.full((1, 3, 32, 64), 0.5)
    flat[..., 32:] = flat[..., 32:] + 0.3 * (torch.rand(1, 3, 32, 32) - 0.5)
    mask = jnd_mask(flat)
    assert mask.shape == (1, 1, 32, 64) and mask.min() >= 0.35 - 1e-6 and mask.max() <= 1
    assert mask[..., 8:24, 40:56].mean() > mask[..., 8:24, 8:24].mean()


def test_quantized_output_stays_in_budget():
    images = torch.randint(0, 256, (1, 3, 16, 16)).float() / 255
    delta = (torch.rand_like(images) * 2 - 1) * (7.6 / 255)
    protected = quantize_within_budget(images, delta, 7.6 / 255)
    assert (protected - images).abs().max() <= 7.6 / 255
    assert torch.allclose(protected * 255, (protected * 255).round(), atol=1e-3)


def test_bf16_autocast_keeps_a_float32_perturbation_in_budget():
    images, _ = _problem()
    weight = torch.nn.Conv2d(3, 4, 3)
    torch.nn.init.normal_(weight.weight)
    loss_fn = lambda x: weight(x).pow(2).flatten(1).mean(1)  # noqa: E731
    result = run_pgd(loss_fn, images, PGDConfig(epsilon=4 / 255, steps=6, autocast="bf16", progress=False))
    assert result.delta.dtype == torch.float32
    assert result.delta.abs().max() <= 4 / 255 + 1e-7
    assert torch.all(result.loss_after < result.loss_before)


def test_shaped_steps_keep_their_length():
    images, loss_fn = _problem(shape=(1, 3, 64, 64))
    config = PGDConfig(epsilon=8 / 255, steps=1, step_size=2 / 255, progress=False)
    plain = run_pgd(loss_fn, images, config).delta
    shaped = run_pgd(loss_fn, images, config, shaping=faceshield_shaper()).delta
    assert high_frequency_ratio(shaped) < high_frequency_ratio(plain)
    assert torch.allclose(shaped.norm(), plain.norm(), rtol=0.1)


def test_a_stationary_clean_photo_is_left_along_a_seeded_random_direction():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def loss_fn(x):  # maximal at the clean photo: its gradient there is exactly zero
        return 1 - ((x - images) ** 2).flatten(1).sum(1)

    result = run_pgd(loss_fn, images, PGDConfig(epsilon=4 / 255, steps=3, step_size=1 / 255, progress=False))
    assert (result.delta.flatten(1).abs().amax(1) > 0).all()
    assert (result.loss_after < result.loss_before).all()
    again = run_pgd(loss_fn, images, PGDConfig(epsilon=4 / 255, steps=3, step_size=1 / 255, progress=False))
    assert torch.equal(result.delta, again.delta)


def test_a_protection_that_cannot_lower_its_objective_reports_unchanged():
    from photoshield.protect import api
    from photoshield.protect.objective import Objective

    @api.register_method("test-flat")
    def _flat(images, **options):
        return Objective(loss_fn=lambda x: torch.ones(x.shape[0]) + 0 * x.sum())

    try:
        photo = torch.rand(1, 3, 24, 24)
        result = api.protect(photo, method="test-flat", steps=3, progress=False)
    finally:
        api._METHODS.pop("test-flat")
    assert result.report["status"] == "unchanged", result.report
    assert "did not lower the objective" in result.report["reason"]
    assert torch.equal(result.image, photo) and result.report["linf_255"] == 0.0
