"""Watermark model: shapes at any size, the residual budget, the mask, persistence, a short training run."""

import math

import pytest
import torch
import torch.nn.functional as F

from photoshield.errors import PhotoshieldError
from photoshield.watermark.model import (
    WatermarkConfig,
    WatermarkDecoder,
    WatermarkModel,
    perceptual_mask,
)


def get_dummy_config(**overrides) -> WatermarkConfig:
    """A tiny config that runs the real code path on CPU in well under a second."""
    values = dict(n_bits=96, size=32, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=4,
                  norm_num_groups=4, decoder_channels=(8, 16), sampling_steps=2)
    values.update(overrides)
    return WatermarkConfig(**values)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return WatermarkModel(get_dummy_config()).eval()


def test_embedder_is_a_diffusers_unet_with_cross_attention(tiny_model):
    from diffusers import UNet2DConditionModel

    unet = tiny_model.embedder.unet
    assert isinstance(unet, UNet2DConditionModel)
    assert unet.config.in_channels == 6 + 4 and unet.config.cross_attention_dim == 16  # x_t, cover, message map
    assert any("CrossAttn" in name for name in unet.config.down_block_types)
    assert len(tiny_model.embedder.inference_timesteps()) == 2
    assert len(WatermarkModel(get_dummy_config(sampling_steps=4)).embedder.inference_timesteps()) == 4


def test_cover_weight_grows_with_noise(tiny_model):
    weights = tiny_model.embedder.cover_weight(torch.tensor([0, 250, 500, 999])).flatten()
    assert torch.all(weights[1:] > weights[:-1]) and 0.5 <= weights.min() and weights.max() <= 1.0


@pytest.mark.parametrize("size", [(32, 32), (48, 80), (97, 41), (20, 200)])
def test_embed_keeps_any_size_and_stays_close(tiny_model, size):
    images = torch.rand(2, 3, *size)
    bits = torch.randint(0, 2, (2, 96)).float()
    with torch.no_grad():
        marked = tiny_model.embed(images, bits, generator=torch.Generator().manual_seed(0))
        logits = tiny_model.decode(marked)
    assert marked.shape == images.shape and marked.dtype == torch.float32
    assert 0 <= marked.min() and marked.max() <= 1
    assert logits.shape == (2, 96)
    rms = (marked - images).pow(2).mean().sqrt()
    assert 0 < rms < 0.03  # the residual budget (0.008 RMS) times the mask, minus clipping


def test_strength_scales_the_residual_and_zero_is_identity(tiny_model):
    images = torch.rand(1, 3, 40, 60) * 0.6 + 0.2  # away from clipping
    bits = torch.ones(96)
    with torch.no_grad():
        full = tiny_model.embed(images, bits, strength=1.0, generator=torch.Generator().manual_seed(1))
        half = tiny_model.embed(images, bits, strength=0.5, generator=torch.Generator().manual_seed(1))
        none = tiny_model.embed(images, bits, strength=0.0)
    assert torch.equal(none, images)
    assert torch.allclose(half - images, 0.5 * (full - images), atol=1e-6)
    with pytest.raises(PhotoshieldError, match="strength"):
        tiny_model.embed(images, bits, strength=float("nan"))
    with pytest.raises(ValueError, match="bits of shape"):
        tiny_model.embed(images, torch.ones(2, 96))


def test_message_changes_the_residual(tiny_model):
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a = tiny_model.residual(images, torch.zeros(1, 96), generator=torch.Generator().manual_seed(0))
        b = tiny_model.residual(images, torch.ones(1, 96), generator=torch.Generator().manual_seed(0))
    assert (a - b).abs().mean() > 1e-4


def test_mask_is_larger_on_texture_and_resolution_stable():
    flat = torch.full((1, 3, 64, 64), 0.5)
    texture = (torch.rand(1, 1, 64, 64) > 0.5).float().expand(1, 3, 64, 64) * 0.4 + 0.3
    half = torch.cat([flat[..., :32], texture[..., 32:]], dim=-1)
    mask = perceptual_mask(half)
    assert mask.shape == (1, 1, 64, 64)
    assert mask[..., 8:56, 44:].mean() > 1.5 * mask[..., 8:56, :20].mean()
    big = F.interpolate(half, scale_factor=4, mode="nearest")
    small_mean, big_mean = perceptual_mask(half).mean(), perceptual_mask(big).mean()
    assert math.isclose(small_mean, big_mean, rel_tol=0.25)


def test_decoder_reads_any_size():
    decoder = WatermarkDecoder(n_bits=40, size=32, channels=(8, 16))
    for shape in [(1, 3, 32, 32), (3, 3, 17, 90), (2, 3, 300, 120)]:
        assert decoder(torch.rand(shape)).shape == (shape[0], 40)


def test_save_and_load_round_trip(tiny_model, tmp_path):
    path = tmp_path / "wm.safetensors"
    tiny_model.save(path)
    again = WatermarkModel.from_file(path)
    assert again.config == tiny_model.config
    images = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(again.decode(images), tiny_model.decode(images))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(PhotoshieldError, match="junk.safetensors"):
        WatermarkModel.from_file(tmp_path / "junk.safetensors")


@pytest.mark.slow
def test_a_few_training_steps_raise_bit_accuracy():
    """The real training objective on a tiny model: bit loss falls through a differentiable JPEG."""
    from photoshield.attacks import get
    from photoshield.watermark.model import perceptual_mask as mask_of

    torch.manual_seed(0)
    model = WatermarkModel(get_dummy_config(n_bits=16, residual_rms=0.05))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    covers = torch.rand(4, 3, 32, 32)
    bits = torch.randint(0, 2, (4, 16)).float()
    jpeg = get("jpeg-diff", quality=80)
    losses = []
    for _ in range(25):
        t = torch.randint(0, 1000, (4,))
        x0 = model.embedder.predict_x0(model.embedder.add_noise(covers, torch.randn_like(covers), t), t, covers, bits)
        marked = (covers + mask_of(covers) * (x0 - covers)).clamp(0, 1)
        loss = F.binary_cross_entropy_with_logits(model.decode(jpeg(marked)), bits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
