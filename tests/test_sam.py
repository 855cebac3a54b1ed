"""Promptable segmentation: bundled LiteMedSAM weights, the common adapter, transformers SamModel."""

import json

import pytest
import torch
from safetensors import safe_open

from photoshield.models import load, registry
from photoshield.models.sam import LiteMedSAM, TransformersSam, load_sam, load_segmenter


def ellipse_scene(height: int, width: int, seed: int = 0):
    """A bright textured ellipse (a lesion-like object) on a darker textured background.

    Returns the image (1, 3, H, W), a box around the object with a 5 px margin, and the true mask.
    LiteMedSAM is trained on box prompts around organs and lesions, which this imitates.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    cy, cx, ry, rx = 0.45 * height, 0.55 * width, 0.22 * height, 0.2 * width
    truth = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 1, height, width, generator=g), 5, 1, 2)[0, 0]
    gray = torch.where(truth, 0.7 + 0.2 * texture, 0.2 + 0.15 * texture)
    box = torch.tensor([cx - rx - 5, cy - ry - 5, cx + rx + 5, cy + ry + 5])
    return gray.expand(3, -1, -1)[None].clone(), box, truth


def iou(mask: torch.Tensor, truth: torch.Tensor) -> float:
    return ((mask & truth).sum() / (mask | truth).sum()).item()


@pytest.fixture(scope="module")
def litemedsam():
    return load("sam-litemedsam", device="cpu")


@pytest.fixture(scope="module")
def scene():
    return ellipse_scene(200, 300)  # non-square on purpose


@pytest.fixture(scope="module")
def encoded(litemedsam, scene):
    """One encoding of the scene (with two intermediate blocks) and its box-prompted logits."""
    image, box, _ = scene
    with torch.no_grad():
        features = litemedsam.encode(image, layers=[0, 3, 6])
        logits = litemedsam.predict_from_features(features, boxes=box)
    return features, logits


def test_litemedsam_loads_offline_from_the_bundled_file(litemedsam):
    path = registry.find("sam-litemedsam")
    assert path is not None and path.parent == registry.BUNDLED_DIR
    registry.verify("sam-litemedsam", path)  # sha256 recorded in photoshield/models/sam/segmenter.py
    assert isinstance(litemedsam, LiteMedSAM) and not litemedsam.training
    params = list(litemedsam.parameters())
    assert sum(p.numel() for p in params) == pytest.approx(9.8e6, rel=0.02)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in params)
    assert litemedsam.num_blocks == 12 and litemedsam.image_size == 256


def test_box_prompt_segments_the_object_at_the_input_size(encoded, scene):
    _, box, truth = scene
    features, logits = encoded
    assert logits.shape == (1, 1, 200, 300)
    assert features.scaled_size == (171, 256) and features.embedding.shape == (1, 256, 64, 64)
    assert iou(logits[0, 0] > 0, truth) >= 0.9
    x0, y0, x1, y1 = box.round().long().tolist()
    outside = torch.ones_like(truth)
    outside[y0:y1, x0:x1] = False
    assert (logits[0, 0] > 0)[outside].float().mean() < 0.01


def test_many_prompts_reuse_one_encoding(litemedsam, encoded, scene):
    _, box, truth = scene
    features, single = encoded
    background_box = torch.tensor([5.0, 150.0, 60.0, 195.0])
    with torch.no_grad():
        logits, scores = litemedsam.predict_from_features(features, boxes=torch.stack([box, background_box]), return_scores=True)
        three = litemedsam.predict_from_features(features, boxes=box, multimask=True)
    assert logits.shape == (2, 1, 200, 300) and scores.shape == (2, 1) and three.shape == (1, 3, 200, 300)
    torch.testing.assert_close(logits[:1], single, atol=1e-4, rtol=1e-4)
    assert iou(logits[1, 0] > 0, truth) < 0.05  # the second box holds no part of the object


def test_intermediate_blocks_and_early_stop(litemedsam, encoded, scene):
    features, _ = encoded
    assert features.layers[0].shape == (1, 64, 256, 256)
    assert features.layers[3].shape == (1, 128, 128, 128)
    assert features.layers[6].shape == (1, 160, 64, 64)
    with torch.no_grad():
        early = litemedsam.encode(scene[0], layers=[0], embedding=False)
    assert early.embedding is None
    torch.testing.assert_close(early.layers[0], features.layers[0])
    with pytest.raises(ValueError, match="12 blocks"):
        litemedsam.encode(scene[0], layers=[12])
    with pytest.raises(ValueError, match="points"):
        litemedsam.predict_from_features(features)


def test_gradients_reach_the_input_pixels(litemedsam):
    image, box, truth = ellipse_scene(96, 144, seed=1)
    image.requires_grad_(True)
    logits = litemedsam.predict(image, boxes=box)
    assert logits.shape == (1, 1, 96, 144)
    logits[0, 0][truth].sigmoid().mean().backward()
    grad = image.grad
    assert grad.shape == image.shape and torch.isfinite(grad).all()
    assert (grad != 0).float().mean() > 0.9  # every pixel feeds the resize and the encoder
    assert all(p.grad is None for p in litemedsam.parameters())


def test_float16_weights_change_the_masks_negligibly(litemedsam, encoded, scene):
    """The bundled file is float16; perturbing every weight by another float16 rounding step keeps the mask."""
    path = registry.find("sam-litemedsam")
    with safe_open(str(path), "pt") as handle:
        dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}
        assert "lite_medsam.pth" in handle.metadata()["source"]
    assert "F16" in dtypes and "F32" not in dtypes
    state = {k: v.float() for k, v in registry.load_state_dict(path).items()}
    g = torch.Generator().manual_seed(0)
    noisy = {k: v * (1 + (torch.rand(v.shape, generator=g) - 0.5) * 2**-10) if v.is_floating_point() else v for k, v in state.items()}
    other = LiteMedSAM().eval()
    other.load_state_dict(noisy)
    image, box, _ = scene
    with torch.no_grad():
        logits = other.predict(image, boxes=box)
    reference = encoded[1]
    assert iou(logits[0, 0] > 0, reference[0, 0] > 0) >= 0.99
    assert (logits - reference).abs().max() < 2.0


def test_the_loaded_encoder_folds_its_batchnorm_and_keeps_the_checkpoint_s_outputs(litemedsam, scene):
    """The registry model runs BatchNorm folded into its convolutions, channels-last; the plain build of the
    same file gives the same embedding and intermediate blocks."""
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in litemedsam.image_encoder.modules())
    plain = LiteMedSAM().eval()
    plain.load_state_dict({k: v.float() for k, v in registry.load_state_dict(registry.find("sam-litemedsam")).items()})
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.image_encoder.modules())
    image = scene[0]
    with torch.no_grad():
        folded, reference = litemedsam.encode(image, layers=[1, 5]), plain.encode(image, layers=[1, 5])
    for got, want in ((folded.embedding, reference.embedding), (folded.layers[1], reference.layers[1]), (folded.layers[5], reference.layers[5])):
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()


# -- transformers SamModel ------------------------------------------------------------------------
def tiny_sam_config():
    from transformers import SamConfig

    vision = dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16, initializer_range=0.02)
    prompt = dict(hidden_size=32, image_size=64, patch_size=8, mask_input_channels=8)
    decoder = dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


@pytest.fixture
def tiny_sam():
    from transformers import SamModel

    segmenter = TransformersSam(SamModel(tiny_sam_config()).eval())
    return segmenter.requires_grad_(False).eval()


def test_transformers_sam_encode_predict_and_gradients_at_a_non_square_size(tiny_sam):
    images = torch.rand(2, 3, 40, 70, requires_grad=True)
    features = tiny_sam.encode(images, layers=[0, 1])
    assert features.embedding.shape == (2, 32, 8, 8) and features.scaled_size == (37, 64)
    assert {k: tuple(v.shape) for k, v in features.layers.items()} == {0: (2, 32, 8, 8), 1: (2, 32, 8, 8)}
    boxes = torch.tensor([[5.0, 5.0, 30.0, 30.0], [10.0, 10.0, 60.0, 35.0]])
    logits = tiny_sam.predict_from_features(features, boxes=boxes, multimask=True)
    assert logits.shape == (2, 3, 40, 70)
    points = tiny_sam.predict_from_features(features, points=[[[10.0, 10.0]], [[20.0, 30.0]]], point_labels=[[1], [0]])
    assert points.shape == (2, 1, 40, 70)
    (logits.square().mean() + features.layers[0].mean()).backward()
    assert torch.isfinite(images.grad).all() and (images.grad != 0).float().mean() > 0.9
    early = tiny_sam.encode(images.detach(), layers=[0], embedding=False)
    assert early.embedding is None
    torch.testing.assert_close(early.layers[0], features.layers[0].detach())


def test_transformers_sam_matches_the_processor_and_model_forward(tiny_sam):
    """Without a resize (longest side already 64) the adapter must equal SamProcessor's pixels and masks."""
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    image = torch.rand(1, 3, 48, 64).mul(255).round().div(255)
    processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    array = image[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    pixel_values = processor(images=array, return_tensors="pt")["pixel_values"]
    pixels, scaled = tiny_sam.preprocess(image)
    assert scaled == (48, 64)
    torch.testing.assert_close(pixels, pixel_values, atol=1e-5, rtol=1e-5)
    box = torch.tensor([[8.0, 6.0, 40.0, 30.0]])
    with torch.no_grad():
        ours = tiny_sam.predict(image, boxes=box)
        raw = tiny_sam.model(pixel_values=pixel_values, input_boxes=box[None], multimask_output=False).pred_masks
    theirs = processor.post_process_masks(raw, [[48, 64]], [[48, 64]], binarize=False, pad_size={"height": 64, "width": 64})[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_load_segmenter_dispatches_names_files_and_folders(tmp_path, tiny_sam):
    folder = tmp_path / "tiny-sam"
    tiny_sam.model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3, "size": {"longest_edge": 64}}))
    loaded = load_segmenter(folder, device="cpu")
    assert isinstance(loaded, TransformersSam) and loaded.image_size == 64
    assert loaded.image_mean.flatten().tolist() == [0.5] * 3 and not any(p.requires_grad for p in loaded.parameters())
    assert isinstance(load_segmenter("sam-litemedsam", device="cpu"), LiteMedSAM)
    assert isinstance(load_segmenter(registry.find("sam-litemedsam"), device="cpu"), LiteMedSAM)
    with pytest.raises(FileNotFoundError):
        load_sam(tmp_path / "missing", device="cpu")
