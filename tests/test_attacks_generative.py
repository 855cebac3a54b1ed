"""Generative and deepfake attacks: face swap against the independent SFace judge, tiny-pipeline regeneration and edits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from photoshield import attacks, data, models
from photoshield.attacks import AttackError, deepfake, regeneration
from photoshield.errors import ModelNotFoundError
from photoshield.testing import tiny_editor
from photoshield.testing.diffusion import tiny_sd_vae

GENERATIVE = {"vae", "sdedit", "rinse", "faceswap", "face-inpaint", "instruct-edit"}


def small(name: str, height: int) -> torch.Tensor:
    """A bundled photo resized to ``height`` rows (aspect kept), for fast tiny-pipeline runs."""
    image = data.sample(name)
    width = round(image.shape[-1] * height / image.shape[-2])
    return F.interpolate(image, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    """A 64 x 64 head-and-shoulders crop of a bundled portrait: the face is about 35 px, enough for the detector."""
    crop = data.sample("obama")[..., 0:240, 100:340]
    return F.interpolate(crop, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)


def test_names_and_cli_listing_include_the_generative_attacks():
    assert GENERATIVE <= set(attacks.names())
    assert attacks.attack_class("autoencoder") is regeneration.VAERoundTrip


@pytest.mark.parametrize("name", ["vae", "sdedit", "rinse", "face-inpaint", "instruct-edit"])
def test_model_attacks_without_a_model_say_how_to_give_one(name):
    with pytest.raises(AttackError, match="--model PATH"):
        attacks.get(name)


def test_missing_model_folder_is_a_clear_error(tmp_path, face):
    attack = attacks.get("sdedit", model=str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        attack(face)


@pytest.mark.slow
def test_faceswap_changes_identity_for_the_independent_judge_and_keeps_size_and_range():
    judge = models.load("face-judge-sface")
    target = data.sample("grace_hopper")
    attack = attacks.get("faceswap", source="biden", seed=0)
    swapped = attack(target)
    assert swapped.shape == target.shape and swapped.dtype == target.dtype
    assert swapped.min() >= 0 and swapped.max() <= 1
    assert judge.similarity(target, target.flip(-1)) > judge.threshold  # the judge still knows her unattacked
    assert judge.similarity(target, swapped) < judge.threshold  # after the swap it sees someone else
    report = attack.last_report["images"][0]
    assert report["swapped"] == 1 and report["faces"].shape == (1, 4) and report["source"] == "biden"
    mask = report["mask"][0] > 0
    changed = (swapped - target).abs().amax(1)[0] > 1 / 255
    assert 0.02 < mask.float().mean() < 0.3  # the face, not the photo
    assert not changed[~mask].any()  # nothing outside the face mask moves
    assert torch.equal(swapped, attacks.get("faceswap", source="biden", seed=0)(target))


def test_faceswap_auto_source_is_another_person_and_no_face_leaves_the_image_alone():
    attack = attacks.get("faceswap", strength=1.0)
    target = small("obama", 256)
    out = attack(target)
    report = attack.last_report["images"][0]
    assert report["source"] != "obama" and data.sample_info(report["source"])["person"] != "obama"
    assert not torch.equal(out, target)
    scene = data.sample(data.samples("scenes")[0])[..., :128, :128]
    assert torch.equal(attack(scene), scene)
    assert attack.last_report["images"][0]["status"] == deepfake.NO_FACE
    assert torch.equal(attacks.get("faceswap", strength=0.0)(target), target)


def test_poisson_blend_is_seamless_and_keeps_source_gradients():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 50), indexing="ij")
    target = torch.stack([xx, yy, 0.5 * torch.ones_like(xx)])[None]
    source = (target + 0.4).clamp(max=2) + 0.05 * torch.sin(30 * xx)[None, None]
    mask = torch.zeros(1, 1, 40, 50)
    mask[..., 10:30, 12:40] = 1
    out = deepfake.poisson_blend(source, target, mask)
    edge = (out[..., 10:30, 12] - target[..., 10:30, 11]).abs().mean()
    assert edge < 0.05  # no step at the seam (the source is 0.4 brighter)
    inner = out[..., 15:25, 20:30]
    gradient = inner[..., 1:] - inner[..., :-1]
    expected = source[..., 15:25, 21:30] - source[..., 15:25, 20:29]
    assert (gradient - expected).abs().mean() < 0.01


def test_vae_round_trip_runs_on_a_tiny_autoencoder_pads_odd_sizes_and_is_differentiable(face):
    vae = tiny_sd_vae(0)
    image = face[..., :75, :61].clone().requires_grad_(True)  # odd sizes: padded to the latent grid and cropped back
    attack = attacks.get("vae", model=vae)
    out = attack(image)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert (out - image).abs().mean() > 0.01
    out.mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    noisy = attacks.get("vae", model=vae, strength=1.0, seed=3)
    assert torch.equal(noisy(face), noisy(face)) and not torch.equal(noisy(face), attack(face))


def test_sdedit_and_rinse_run_end_to_end_on_a_tiny_pipeline(face):
    editor = tiny_editor("sd-img2img")
    sdedit = attacks.get("sdedit", model=editor, steps=10, seed=1)
    out = sdedit(face)
    assert out.shape == face.shape and (out - face).abs().mean() > 0.01
    assert torch.equal(out, sdedit(face))  # seeded
    assert sdedit.last_report["steps_run"] == 3
    rinse = attacks.get("rinse", model=editor.pipe, steps=10, times=2, seed=1)  # a bare diffusers pipeline works too
    rinsed = rinse(face)
    assert rinsed.shape == face.shape and len(rinse.last_report["passes"]) == 2
    assert not torch.equal(rinsed, out)
    with pytest.raises(AttackError, match="sd-img2img"):
        attacks.get("sdedit", model=tiny_editor("sd-inpaint"))(face)


def test_face_inpaint_repaints_only_the_face_on_a_tiny_pipeline(face):
    attack = attacks.get("face-inpaint", model=tiny_editor("sd-inpaint"), steps=4, seed=0)
    out = attack(face)
    report = attack.last_report["images"][0]
    assert out.shape == face.shape and report["faces"].shape[0] == 1
    mask = report["mask"][0] > 0
    changed = (out - face).abs().amax(1)[0]
    assert changed[mask].mean() > 0.05
    far = F.max_pool2d(mask[None, None].float(), 9, 1, 4)[0, 0] == 0  # beyond the feathered edge
    assert changed[far].max() == 0


@pytest.mark.parametrize("kind", ["instruct-pix2pix", "flux-kontext"])
def test_instruction_edits_run_end_to_end_on_tiny_pipelines(kind, face):
    editor = tiny_editor(kind)
    attack = attacks.get("instruct-edit", model=editor, steps=2, seed=0, region="face")
    out = attack(face)
    report = attack.last_report
    assert out.shape == face.shape and report["kind"] == kind
    mask = report["images"][0]["mask"][0] > 0
    changed = (out - face).abs().amax(1)[0]
    assert changed[mask].mean() > 0.01 and changed[~mask].max() == 0
    whole = attacks.get("instruct-edit", model=editor, steps=2, seed=0)(face)
    assert (whole - face).abs().amax(1)[0][~mask].mean() > 0.01


def test_deepfake_grid_holds_model_free_face_swaps():
    specs = [attack.describe() for attack in attacks.grid("deepfake")]
    assert len(specs) == 3 and all(spec.startswith("faceswap") for spec in specs)
    assert specs[-1].endswith("+jpeg:quality=75")
