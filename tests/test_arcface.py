"""User-supplied ArcFace (insightface IResNet) checkpoints: loading, alignment, joining the facial ensemble."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from photoshield.errors import PhotoshieldError
from photoshield.io import read_image
from photoshield.models import face
from photoshield.models.face import similarity_transform
from photoshield.models.face.arcface import ARCFACE_TEMPLATE, IResNet, align_arcface, build_arcface, five_points
from photoshield.protect import protect

FACES = Path(__file__).parent / "fixtures" / "faces"


def _checkpoint(tmp_path, layers=(1, 1, 1, 1), width=8, embedding=32, suffix=".safetensors"):
    """A small random IResNet saved with insightface's key names (plus a DataParallel prefix)."""
    torch.manual_seed(0)
    model = IResNet(layers, width, embedding)
    for module in model.modules():  # non-trivial running statistics so a wrong BN wiring shows
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / f"r-tiny{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return model.eval(), path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_depth_is_read_from_the_keys_and_outputs_match(tmp_path, suffix):
    reference, path = _checkpoint(tmp_path, layers=(2, 1, 3, 1), suffix=suffix)
    loaded = build_arcface(path)
    assert [len(getattr(loaded, f"layer{i}")) for i in range(1, 5)] == [2, 1, 3, 1]
    chips = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(loaded(chips), reference(chips), atol=1e-5)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_a_state_dict_of_something_else_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(PhotoshieldError, match="IResNet"):
        build_arcface(path)


def test_alignment_puts_the_landmarks_on_the_template():
    image = read_image(FACES / "obama.jpg")
    box = face.detect_faces(image)[0]["boxes"][:1]
    landmarks = face.landmarks68(image, box)
    # Paint the five points into an image and check they land on the template in the chip.
    marks = torch.zeros(1, 3, *image.shape[-2:])
    for x, y in five_points(landmarks)[0].round().long().tolist():
        marks[0, :, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    chip = align_arcface(marks, landmarks)[0, 0]
    # Five points fix a similarity only in the least-squares sense: each lands near the template...
    points = five_points(landmarks).double()
    fit = similarity_transform(points, ARCFACE_TEMPLATE[None])
    mapped = (points @ fit[:, :, :2].transpose(1, 2) + fit[:, None, :, 2])[0]
    assert (mapped - ARCFACE_TEMPLATE).norm(dim=1).max() < 6
    # ...and the warp puts each painted mark exactly where the fit says.
    for x, y in mapped.tolist():
        assert chip[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2].max() > 0.3


def test_user_arcface_joins_the_facial_ensemble(tmp_path):
    _, path = _checkpoint(tmp_path)
    image = F.interpolate(read_image(FACES / "obama.jpg"), size=(256, 256), mode="bilinear", antialias=True).clamp(0, 1)
    result = protect(image, "facial", epsilon=8 / 255, steps=4, preset="light", arcface=[str(path)], progress=False)
    report = result.report
    name = "arcface:r-tiny_cosine"
    assert name in report["protected"] and "dlib-resnet_cosine" in report["protected"]
    assert report["protected"][name][0] < report["clean"][name][0]
