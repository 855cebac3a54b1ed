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
