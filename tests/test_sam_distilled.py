"""The distilled segmenter (a second SAM-family model of another architecture) and transfer to it."""

import pytest
import torch

from photoshield import data
from photoshield.image import quantize, resize_to
from photoshield.models import load, registry
from photoshield.models.sam import Segmenter
from photoshield.models.sam.distilled import DistilledSam
from photoshield.models.sam.prompts import draw_prompts, mask_iou, predict_prompts


@pytest.fixture(scope="module")
def student() -> Segmenter:
    return load("sam-distilled-small", device="cpu")


@pytest.fixture(scope="module")
def litemedsam() -> Segmenter:
    return load("sam-litemedsam", device="cpu")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    image = data.sample("coffee")
    return quantize(resize_to(image, (160, round(160 * image.shape[-1] / image.shape[-2]))))


def test_loads_from_the_registry_with_litemedsams_decoder_and_no_attention(student, litemedsam):
    assert isinstance(student, DistilledSam) and not student.training
    entry = registry.get_checkpoint("sam-distilled-small")
    registry.verify("sam-distilled-small", registry.resolve("sam-distilled-small"))
    assert entry.sha256 and entry.task == "promptable segmentation"
    assert torch.equal(student.mask_decoder.output_upscaling[0].weight, litemedsam.mask_decoder.output_upscaling[0].weight)
    kinds = {type(module).__name__ for module in student.image_encoder.modules()}
    assert not any("Attention" in kind for kind in kinds)  # a convolutional encoder: nothing shared with TinyViT
    assert sum(p.numel() for p in student.image_encoder.parameters()) < sum(p.numel() for p in litemedsam.image_encoder.parameters())


def test_agrees_with_litemedsam_on_a_held_out_photo(student, litemedsam, photo):
    """The bundled photos were never trained on. Measured on coffee at 160 px: see the registry description."""
    prompts = draw_prompts(litemedsam, photo, max_masks=4)
    reference = predict_prompts(litemedsam, photo, prompts)
    ious = mask_iou(predict_prompts(student, photo, prompts)["box"], reference["box"])
    assert float(ious.mean()) > 0.6, ious


def test_a_protection_computed_on_litemedsam_lowers_the_unseen_segmenters_iou_more_than_noise(student, litemedsam):
    """Transfer, on a small scale: protected on LiteMedSAM alone (the default feature attack, 8 steps), judged by the
    distilled segmenter, which the protection never saw, against sign noise of the same budget.

    Measured on coffee at 200 x 300: mIoU 0.942 protected against 0.975 for noise."""
    from photoshield.protect import protect

    photo = resize_to(data.sample("coffee"), (200, 300))
    prompts = draw_prompts(student, photo, max_masks=4)
    reference = predict_prompts(student, photo, prompts)
    result = protect(photo, method="deformation", segmenter=litemedsam, steps=8, preset="light", shaping=False,
                     measure=False, progress=False, seed=0)
    assert (result.image - photo).abs().max() <= 8 / 255 + 1e-6
    noise = (photo + 8 / 255 * torch.sign(torch.randn(photo.shape, generator=torch.Generator().manual_seed(0)))).clamp(0, 1)

    def miou(image):
        return float(mask_iou(predict_prompts(student, image, prompts)["box"], reference["box"]).mean())

    protected, noisy = miou(result.image), miou(noise)
    assert protected < noisy - 0.015, (protected, noisy)
