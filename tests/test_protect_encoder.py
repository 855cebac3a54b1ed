"""PhotoGuard's encoder attack on a tiny real diffusers AutoencoderKL."""

import torch

from photoshield.testing import tiny_editor
from photoshield.protect import protect
from photoshield.protect.encoder import EncoderProtection


def test_encoder_attack_moves_latent_toward_target():
    vae = tiny_editor("sd-img2img", seed=0).vae
    images = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    attack = EncoderProtection(vae, target="gray")
    target = attack.target_latent(images)
    before = (attack.encode(images) - target).pow(2).mean()
    result = protect(images, method="encoder", vae=vae, epsilon=16 / 255, steps=25, preset="light", shaping=False, progress=False)
    after = (attack.encode(result.image) - target).pow(2).mean()
    assert after < 0.8 * before
    assert (result.image - images).abs().max() <= 16 / 255 + 1e-6
    assert result.report["objective_after"][0] < result.report["objective_before"][0]


def test_encoder_needs_a_vae_or_editor():
    import pytest

    from photoshield.errors import PhotoshieldError

    with pytest.raises(PhotoshieldError, match="editor"):
        protect(torch.rand(1, 3, 16, 16), method="encoder", steps=1, progress=False)
