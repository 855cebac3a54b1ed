"""The closed-form whitened read-out: less host interference per unit of mark, centred clean logits, a matched pattern."""

import pytest
import torch
import torch.nn.functional as F

from photoshield.attacks import get
from photoshield.errors import PhotoshieldError
from photoshield.watermark.model import WatermarkConfig, WatermarkModel
from photoshield.watermark.readout import feature_statistics, resampled, whiten
from training.whiten_watermark import photo_crops

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(side: int = 16) -> WatermarkModel:
    torch.manual_seed(0)
    config = WatermarkConfig(n_bits=96, size=32, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=4,
                             norm_num_groups=4, decoder_channels=(8, 16), sampling_steps=2,
                             message_skip_size=side, decoder_linear_size=side)
    return WatermarkModel(config).eval()


def _adjoint_norms(model: WatermarkModel) -> torch.Tensor:
    """Per bit, how far a unit-energy image pattern at the model's size can move that bit's linear logit (|F^T w|)."""
    size = model.config.size
    image = torch.zeros(model.n_bits, 3, size, size, requires_grad=True)
    logits = model.decoder.linear(model.decoder.linear_features(image))
    (grad,) = torch.autograd.grad(logits.diagonal().sum(), image)
    return grad.flatten(1).norm(dim=1)


def _linear_logits(model: WatermarkModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.decoder.linear(model.decoder.linear_features(images))


@pytest.fixture(scope="module")
def crops(photos):
    fit = torch.cat(list(photo_crops(photos, 384, side=64, seed=0)))
    held = torch.cat(list(photo_crops(photos, 48, side=64, seed=1)))  # other crops than the statistics saw
    return fit, held


def test_whitening_lowers_host_interference_per_unit_of_mark(crops):
    fit, held = crops
    model = _tiny()
    stats = feature_statistics(model, fit.split(32), get("blur", sigma=1.0), progress=False)
    assert stats.count == len(fit) == 384 and stats.host.shape == (3 * 16 * 16,) * 2
    new = whiten(model, stats, alpha=4.0, shrink=1e-3)

    def interference(each):  # spread of the photo's own logits, in units of the best mark's logit shift
        return (_linear_logits(each, held).std(0) / _adjoint_norms(each)).mean()

    assert interference(new) < 0.5 * interference(model), (interference(new), interference(model))
    with torch.no_grad():
        logits = new.decode(held)
    assert logits.mean(0).abs().mean() < 0.5 * logits.std(0).mean()  # a clean photo reads centred logits


def test_whitened_message_pattern_writes_its_own_bits(crops):
    fit, held = crops
    model = _tiny()
    new = whiten(model, feature_statistics(model, fit.split(32), progress=False))
    assert float(new.embedder.message_skip.bias.detach().abs().max()) == 0.0
    assert new.config.extra["whitened"]["crops"] == len(fit) and "whitened" not in model.config.extra
    with pytest.raises(PhotoshieldError, match="whitened already"):
        whiten(new, feature_statistics(new, fit.split(32), progress=False))
    bits = torch.randint(0, 2, (len(held), model.n_bits), generator=torch.Generator().manual_seed(0)).float()
    side = new.config.message_skip_size
    with torch.no_grad():
        pattern = new.embedder.message_skip(bits * 2 - 1).view(-1, 3, side, side)
        pattern = F.interpolate(pattern, size=held.shape[-2:], mode="bilinear", align_corners=False)
        pattern = pattern * 0.02 / pattern.pow(2).mean().sqrt()  # about 34 dB
        shift = _linear_logits(new, held + pattern) - _linear_logits(new, held)
    assert ((shift > 0).float() == bits).float().mean() > 0.9


def test_resampled_keeps_the_rest_and_changes_the_grid():
    model = _tiny(16)
    finer = resampled(model, 32)
    assert finer.config.decoder_linear_size == finer.config.message_skip_size == 32
    assert finer.decoder.linear.in_features == 3 * 32 * 32
    for name, value in model.state_dict().items():
        if "message_skip" not in name and "decoder.linear" not in name:
            assert torch.equal(finer.state_dict()[name], value), name
