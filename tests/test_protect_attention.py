"""Attention-disrupting protection on tiny real diffusers editors (real pipelines, CPU, seconds)."""

import pytest
import torch

from photoshield.errors import PhotoshieldError
from photoshield.evaluate.editing import edit_disruption, noise_baseline
from photoshield.models.diffusion import KINDS
from photoshield.testing import tiny_editor
from photoshield.protect import protect
from photoshield.protect.attention import AttentionProtection

PROMPTS = ["make it blue", "add a hat"]
EDIT_PROMPT = "make it blue"
# Non-square, and a multiple of each tiny editor's size step. The UNets attend at full
# latent resolution, so they get the smaller photo to stay fast.
SIZE = {"flux-kontext": (48, 64), "sd-img2img": (32, 48), "sd-inpaint": (32, 48), "instruct-pix2pix": (32, 48)}
EPSILON = {"flux-kontext": 20 / 255, "sd-img2img": 24 / 255, "sd-inpaint": 24 / 255, "instruct-pix2pix": 24 / 255}
STEPS = {"flux-kontext": 60, "sd-img2img": 12, "sd-inpaint": 12, "instruct-pix2pix": 12}


pytestmark = pytest.mark.usefixtures("one_thread")


def sharpened_editor(kind: str):
    """A tiny editor whose attention is as peaked as a trained model's.

    At random init the tiny models attend almost uniformly (Flux's RMS-normed q/k keep
    the logits within +-4 for 16-dim heads), which leaves no attention path to break.
    Scaling the query/key gains (Flux: the q/k RMSNorm weights; UNet: to_q/to_k)
    gives peaked maps like a trained editor's; everything else is the real pipeline.
    """
    editor = tiny_editor(kind, seed=0)
    with torch.no_grad():
        for name, module in editor.denoiser.named_modules():
            if editor.is_flux and name.endswith(".attn"):
                for attr in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
                    norm = getattr(module, attr, None)
                    if norm is not None and getattr(norm, "weight", None) is not None:
                        norm.weight.mul_(3.0)
            elif not editor.is_flux and name.endswith(("attn1", "attn2")):
                module.to_q.weight.mul_(4.0)
                module.to_k.weight.mul_(4.0)
    return editor


def _photo(kind, seed=1):
    height, width = SIZE[kind]
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def protected():
    """One protection run per editor kind, shared by the tests below."""
    cache = {}

    def get(kind):
        if kind not in cache:
            editor = sharpened_editor(kind)
            image = _photo(kind)
            result = protect(
                image,
                method="attention",
                editor=editor,
                epsilon=EPSILON[kind],
                steps=STEPS[kind],
                preset="light",
                schedule="cosine",
                prompts=PROMPTS,
                timesteps=[20],
                faces=False,
                progress=False,
            )
            cache[kind] = (editor, image, result)
        return cache[kind]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_attention_quantity_falls_by_half_within_budget(protected, kind):
    editor, image, result = protected(kind)
    report = result.report
    assert report["status"] == "protected" and report["editor"] == kind
    assert report["working_size"] == list(SIZE[kind])
    assert (result.image - image).abs().max() <= EPSILON[kind] + 1e-6
    assert report["linf_255"] <= EPSILON[kind] * 255 + 1e-3
    key = "context_attention_mass" if editor.is_flux else "attention_retention"
    before, after = report["clean"][key][0], report["protected"][key][0]
    if not editor.is_flux:
        assert before == pytest.approx(1.0)  # the clean photo keeps all of its own maps
    assert after <= 0.5 * before, f"{key}: {before} -> {after}"
    assert report["protected"]["peak_memory_mb"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_edit_of_protected_photo_differs_more_than_noise(protected, kind):
    editor, image, result = protected(kind)
    settings = dict(seed=0, num_inference_steps=2)
    ours = edit_disruption(editor, image, result.image, EDIT_PROMPT, **settings)
    noise = edit_disruption(editor, image, noise_baseline(image, EPSILON[kind], seed=3), EDIT_PROMPT, **settings)
    assert ours["input_psnr_db"] >= noise["input_psnr_db"] - 0.5  # no larger perturbation than the noise
    assert ours["rmse255"] >= 1.3 * noise["rmse255"], (ours, noise)
    assert ours["psnr_db"] < noise["psnr_db"]
    if editor.is_flux:
        assert ours["context_mass_protected"] < 0.75 * ours["context_mass_clean"]
        assert noise["context_mass_protected"] > 0.9 * noise["context_mass_clean"]


@pytest.mark.parametrize("kind", ["sd-img2img", "flux-kontext"])
def test_checkpointing_and_early_stop_keep_the_gradient(kind):
    """The cost measures change memory and time, not the loss or its gradient."""
    editor = tiny_editor(kind, seed=0)
    image = _photo(kind)[..., :32, :48]

    def gradient(**cost):
        attack = AttentionProtection(editor, prompts=PROMPTS[:1], timesteps=[20], faces=False, seed=5, **cost)
        objective = attack.objective(image)
        x = (image + 0.02).clamp(0, 1).requires_grad_(True)
        loss = objective.loss_fn(x)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad

    loss_plain, grad_plain = gradient(gradient_checkpointing=False, stop_early=False, autocast=None)
    loss_cheap, grad_cheap = gradient(gradient_checkpointing=True, stop_early=True, autocast=None)
    torch.testing.assert_close(loss_cheap, loss_plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad_cheap, grad_plain, atol=1e-6, rtol=1e-3)
    assert grad_plain.abs().sum() > 0
    assert not editor.denoiser.is_gradient_checkpointing, "checkpointing is switched off again afterwards"
    assert all(type(p).__name__ not in ("UNetRecorder", "FluxRecorder") for p in editor.denoiser.attn_processors.values())


def test_attention_needs_an_editor_and_says_how(tmp_path):
    with pytest.raises(PhotoshieldError, match="--editor PATH --editor-kind KIND"):
        protect(torch.rand(1, 3, 32, 48), method="attention", steps=1, progress=False)
    with pytest.raises(PhotoshieldError, match="model_index.json"):
        protect(torch.rand(1, 3, 32, 48), method="attention", editor=tmp_path / "missing", editor_kind="sd-img2img", steps=1, progress=False)


def test_cli_protects_with_a_saved_editor_folder(tmp_path, capsys):
    from photoshield.cli import main
    from photoshield.io import read_image, write_image

    folder = tmp_path / "editor"
    tiny_editor("sd-img2img", seed=0).pipe.save_pretrained(folder)
    source = tmp_path / "photo.png"
    write_image(_photo("sd-img2img"), source)
    code = main(["protect", str(source), "--method", "attention", "--editor", str(folder), "--steps", "2",
                 "--epsilon", "8", "--preset", "light", "--quiet", "--timesteps", "20", "--faces", "false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "editor (sd-img2img): its attention keeps" in out  # the kind was read from model_index.json
    written = read_image(tmp_path / "photo.protected.png")
    assert written.shape == (1, 3, 32, 48)
    assert (written - read_image(source)).abs().max() <= 8 / 255 + 1e-6
