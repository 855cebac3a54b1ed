"""Diffusion editor adapters on tiny random diffusers pipelines (real classes, CPU, seconds)."""

import pytest
import torch

from photoshield.errors import ModelNotFoundError, PhotoshieldError
from photoshield.models.diffusion import KINDS, Editor, load_editor
from photoshield.testing import tiny_editor

HEIGHT, WIDTH = 32, 48  # non-square; a multiple of every tiny editor's size_multiple


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def editors():
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = tiny_editor(kind, seed=0)
        return cache[kind]

    return get


def _image(batch=1, height=HEIGHT, width=WIDTH, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator)


def _mask(height=HEIGHT, width=WIDTH):
    mask = torch.zeros(1, 1, height, width)
    mask[..., height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    return mask


def _edit(editor, image, seed=0, prompt="a cat wearing a hat", **kwargs):
    mask = _mask(*image.shape[-2:]) if editor.kind == "sd-inpaint" else None
    return editor.edit(image, prompt, seed=seed, num_inference_steps=2, mask=mask, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_edit_runs_the_pipeline_end_to_end(editors, kind):
    editor = editors(kind)
    image = _image(height=35, width=50)  # not a multiple: resized to the working size and back
    out = _edit(editor, image, seed=3)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, _edit(editor, image, seed=3)), "same seed must give the same edit"
    assert not torch.allclose(out, _edit(editor, image, seed=4)), "another seed must change the edit"


@pytest.mark.parametrize("kind", ["sd-img2img", "flux-kontext"])
def test_edit_batches_prompts_and_blends_inside_mask(editors, kind):
    editor = editors(kind)
    image = _image(batch=2)
    mask = _mask()
    out = editor.edit(image, ["a cat", "a dog"], seed=0, num_inference_steps=2, mask=mask)
    assert out.shape == image.shape
    outside = mask.expand_as(image) == 0
    assert torch.allclose(out[outside], image[outside]), "pixels outside the mask must be kept"
    assert not torch.allclose(out[~outside], image[~outside])


def test_inpaint_needs_a_mask(editors):
    with pytest.raises(ValueError, match="mask"):
        editors("sd-inpaint").edit(_image(), "a cat", num_inference_steps=2)


@pytest.mark.parametrize("kind", ["instruct-pix2pix", "flux-kontext"])
def test_denoise_matches_the_pipelines_own_denoiser_call(editors, kind):
    """denoise() + encode_condition() reproduce what the pipeline feeds its UNet / transformer."""
    editor = editors(kind)
    image = _image()
    calls = []
    handle = editor.denoiser.register_forward_hook(
        lambda module, args, kwargs, out: calls.append((args, kwargs, out[0])), with_kwargs=True
    )
    try:
        editor.edit(image, "a cat", num_inference_steps=1, guidance_scale=2.0)
    finally:
        handle.remove()
    args, kwargs, out = calls[0]
    with torch.no_grad():
        if kind == "flux-kontext":
            latent_size = (HEIGHT // editor.vae_scale_factor, WIDTH // editor.vae_scale_factor)
            tokens = kwargs["hidden_states"]
            n = tokens.shape[1] // 2
            target = editor.unpack_latents(tokens[:, :n], latent_size)
            context = editor.unpack_latents(tokens[:, n:], latent_size)
            torch.testing.assert_close(context, editor.encode_condition(image))
            ours = editor.denoise(target, kwargs["timestep"] * 1000, "a cat", condition=context, guidance_scale=2.0)
            theirs = editor.unpack_latents(out[:, :n], latent_size)
        else:  # classifier-free guidance batch [text, uncond, uncond]; the first row is the conditional call
            x, t = args[0][:1], args[1]
            torch.testing.assert_close(x[:, 4:], editor.encode_condition(image))
            ours = editor.denoise(x[:, :4], t, "a cat", condition=x[:, 4:])
            theirs = out[:1]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_inpaint_condition_has_latent_mask_and_masked_latents(editors):
    editor = editors("sd-inpaint")
    image, mask = _image(), _mask()
    condition = editor.encode_condition(image, mask)
    h, w = HEIGHT // editor.vae_scale_factor, WIDTH // editor.vae_scale_factor
    assert condition.shape == (1, 5, h, w)
    assert set(condition[:, 0].unique().tolist()) == {0.0, 1.0}
    assert condition[0, 0].sum() == (h // 2) * (w // 2)
    latents = editor.encode_latents(image)
    noisy = editor.add_noise(latents, torch.randn_like(latents), 500)
    prediction = editor.denoise(noisy, 500, "a cat", condition=condition)
    assert prediction.shape == latents.shape


def test_unet_attention_maps_have_block_shapes(editors):
    editor = editors("sd-img2img")
    latents = editor.encode_latents(_image())
    h, w = latents.shape[-2:]
    assert (h, w) == (HEIGHT // editor.vae_scale_factor, WIDTH // editor.vae_scale_factor)
    with editor.capture_attention("all") as capture:
        editor.denoise(latents, 500, "a cat")
    assert set(capture.maps) == set(editor.attention_blocks())
    heads = 8
    sizes = set()
    for record in capture.records:
        grid = record.grid
        assert grid in {(h, w), (h // 2, w // 2)}
        sizes.add(grid)
        keys = grid[0] * grid[1] if record.block.endswith("attn1") else editor.text_length
        assert record.probs.shape == (1, heads, grid[0] * grid[1], keys)
        torch.testing.assert_close(record.probs.sum(-1), torch.ones(record.probs.shape[:-1]))
    assert sizes == {(h, w), (h // 2, w // 2)}, "the tiny UNet attends at two resolutions"
    assert editor.text_length == 77


def test_flux_attention_layout_follows_the_latent_sizes(editors):
    editor = editors("flux-kontext")
    target = editor.encode_latents(_image())
    context = editor.encode_condition(_image(height=16, width=40, seed=2))  # context of another size
    with editor.capture_attention(["transformer_blocks", "single_transformer_blocks"]) as capture:
        editor.denoise(target, 700, "make it blue", condition=context)
    layout = capture.layout
    assert layout == editor.token_layout(tuple(target.shape[-2:]), tuple(context.shape[-2:]))
    assert layout.target_grid == (target.shape[-2] // 2, target.shape[-1] // 2)
    assert layout.context_grid == (context.shape[-2] // 2, context.shape[-1] // 2)
    assert layout.text == slice(0, editor.text_length)
    assert layout.target.stop - layout.target.start == layout.target_grid[0] * layout.target_grid[1]
    assert layout.context.start == layout.target.stop
    assert layout.context.stop - layout.context.start == layout.context_grid[0] * layout.context_grid[1]
    assert [r.block for r in capture.records] == ["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"]
    for record in capture.records:
        assert record.probs.shape == (1, 2, layout.total, layout.total)
        assert record.timestep == pytest.approx(700, abs=0.5)
        torch.testing.assert_close(record.probs.sum(-1), torch.ones(1, 2, layout.total))


@pytest.mark.parametrize("kind", ["sd-img2img", "flux-kontext"])
def test_capture_keeps_outputs_and_restores_processors(editors, kind):
    editor = editors(kind)
    image = _image()
    latents, condition = editor.encode_latents(image), editor.encode_condition(image)
    before = dict(editor.denoiser.attn_processors)
    with torch.no_grad():
        plain = editor.denoise(latents, 300, "a cat", condition=condition)
        with editor.capture_attention():
            assert all(before[k] is not p for k, p in editor.denoiser.attn_processors.items())
            captured = editor.denoise(latents, 300, "a cat", condition=condition)
    torch.testing.assert_close(captured, plain, atol=1e-4, rtol=1e-4)
    assert all(before[k] is p for k, p in editor.denoiser.attn_processors.items())


@pytest.mark.parametrize("kind", ["sd-img2img", "instruct-pix2pix", "flux-kontext"])
def test_attention_loss_backpropagates_to_pixels(editors, kind):
    editor = editors(kind)
    pixels = _image().requires_grad_(True)
    latents = editor.encode_latents(pixels)
    condition = editor.encode_condition(pixels)
    noisy = editor.add_noise(latents, torch.randn_like(latents), 400)
    if editor.is_flux:  # attention mass from target-latent queries to context-image keys

        def reduce(probs, layout):
            return probs[:, :, layout.target, layout.context].sum(-1).mean()

        blocks = "all"
    else:  # cross-attention to the first text tokens

        def reduce(probs, layout):
            return probs[..., 1:4].sum(-1).mean()

        blocks = "*attn2"
    with editor.capture_attention(blocks, reduce=reduce) as capture:
        editor.denoise(noisy, 400, "a cat", condition=condition)
    loss = torch.stack([r.probs for r in capture.records]).sum()
    loss.backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    with editor.capture_attention(blocks, detach=True) as capture:
        editor.denoise(noisy.detach(), 400, "a cat", condition=None if condition is None else condition.detach())
    assert all(r.probs.grad_fn is None for r in capture.records)


def test_timestep_filter_stop_early_and_stop_after(editors):
    editor = editors("sd-img2img")
    latents = editor.encode_latents(_image())
    blocks = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1"]
    with editor.capture_attention(blocks, timesteps=[700]) as capture:
        editor.denoise(latents, 100, "a cat")
        editor.denoise(latents, 700, "a cat")
    assert [(r.step, r.timestep) for r in capture.records] == [(1, 700.0)]
    with editor.capture_attention(blocks, stop_early=True) as capture:
        assert editor.denoise(latents, 500, "a cat") is None
    assert len(capture.records) == 1
    with editor.stop_after("down_blocks.0"):
        assert editor.denoise(latents, 500, "a cat") is None
    assert editor.denoise(latents, 500, "a cat").shape == latents.shape
    with pytest.raises(ValueError, match="no attention block matches"):
        editor.capture_attention(["nonexistent_block"]).__enter__()
    with editor.stop_after("mid_block"), pytest.raises(PhotoshieldError):
        editor.edit(_image(), "a cat", num_inference_steps=2)


@pytest.mark.parametrize("kind", ["sd-img2img", "flux-kontext"])
def test_free_text_encoders_keeps_cached_prompts(kind):
    editor = tiny_editor(kind)
    image = _image()
    before = editor.edit(image, "a cat", seed=5, num_inference_steps=2)
    embeds = editor.encode_prompt(["a cat", "a dog"])
    assert len(embeds) == 2 and embeds.embeds.shape[1] == editor.text_length
    assert (embeds.pooled is not None) == editor.is_flux
    editor.free_text_encoders()
    assert editor.pipe.text_encoder is None
    assert getattr(editor.pipe, "text_encoder_2", None) is None
    assert torch.equal(editor.edit(image, "a cat", seed=5, num_inference_steps=2), before)
    torch.testing.assert_close(editor.encode_prompt("a dog").embeds, embeds.embeds[1:])
    with pytest.raises(PhotoshieldError, match="free_text_encoders"):
        editor.encode_prompt("a bird")


def test_load_editor_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelNotFoundError, match="model_index.json") as info:
        load_editor(tmp_path / "no-such-model", "sd-img2img")
    assert "hub id" in str(info.value) and "no-such-model" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_editor(tmp_path, "flux-kontext")  # a folder, but not a diffusers pipeline
    with pytest.raises(ValueError, match="unknown editor kind"):
        load_editor(tmp_path, "dall-e")


def test_load_editor_reads_a_saved_pipeline_folder(editors, tmp_path):
    editor = editors("sd-img2img")
    editor.pipe.save_pretrained(tmp_path)
    loaded = load_editor(tmp_path, "sd-img2img", device="cpu")
    image = _image()
    assert torch.equal(_edit(loaded, image), _edit(editor, image))
    assert load_editor(tmp_path, "sd-img2img", device="cpu", dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="StableDiffusionInpaintPipeline"):
        Editor.from_pipeline(editor.pipe, "sd-inpaint")


def test_each_kind_is_wrapped_by_its_own_editor_class(editors):
    from photoshield.models.diffusion import (
        FluxKontextEditor,
        InstructPix2PixEditor,
        StableDiffusionImg2ImgEditor,
        StableDiffusionInpaintEditor,
        editor_class,
    )

    expected = {
        "sd-img2img": StableDiffusionImg2ImgEditor,
        "sd-inpaint": StableDiffusionInpaintEditor,
        "instruct-pix2pix": InstructPix2PixEditor,
        "flux-kontext": FluxKontextEditor,
    }
    for kind in KINDS:
        editor = editors(kind)
        assert type(editor) is expected[kind] is editor_class(kind)
        assert editor.kind == kind and editor.is_flux == (kind == "flux-kontext")
    pipe = editors("sd-img2img").pipe
    with pytest.raises(TypeError, match="from_pipeline"):
        Editor(pipe)  # the base holds what the kinds share; it wraps no pipeline itself
    with pytest.raises(TypeError, match="FluxKontextEditor cannot wrap a sd-img2img pipeline"):
        FluxKontextEditor.from_pipeline(pipe, "sd-img2img")
    assert type(StableDiffusionImg2ImgEditor.from_pipeline(pipe)) is StableDiffusionImg2ImgEditor
    with pytest.raises(ValueError, match="unknown editor kind"):
        editor_class("dall-e")
