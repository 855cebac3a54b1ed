"""Deformation-target protection against promptable segmentation (UAD) and its baselines."""

import pytest
import torch

import photoshield.protect.deformation  # noqa: F401  (registers method="deformation")
from photoshield.errors import PhotoshieldError
from photoshield.models.sam.prompts import (
    Prompts,
    draw_prompts,
    mask_iou,
    predict_prompts,
    segmentation_agreement,
)
from photoshield.models.sam import TransformersSam
from photoshield.protect import PGDConfig, protect, run_pgd
from photoshield.protect.deformation import (
    DeformationProtection,
    bending_energy,
    control_grid,
    default_layers,
    simulate_deformation,
    tps_warp,
)


def textured(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth random texture with structure for a warp to move."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8, width // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def tiny_sam() -> TransformersSam:
    from transformers import SamConfig, SamModel

    vision = {"hidden_size": 32, "output_channels": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 64,
                  "patch_size": 8, "window_size": 4, "global_attn_indexes": [2], "mlp_dim": 64, "num_pos_feats": 16, "initializer_range": 0.02}
    prompt = {"hidden_size": 32, "image_size": 64, "patch_size": 8, "mask_input_channels": 8}
    decoder = {"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "iou_head_hidden_dim": 32}
    torch.manual_seed(0)
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).eval()
    return TransformersSam(model).requires_grad_(False).eval()


# -- the warp -----------------------------------------------------------------------------------------------
def test_zero_displacement_is_the_identity_and_content_follows_the_control_point():
    image = textured()
    still = tps_warp(image, torch.zeros(1, 9, 2), grid=3)
    assert (still - image).abs().max() < 1e-3
    dot = torch.zeros(1, 3, 41, 41)
    dot[..., 20, 20] = 1.0
    shift = torch.zeros(1, 9, 2)
    shift[0, 4] = torch.tensor([0.2, 0.0])  # centre control point 20 % of the width to the right
    moved = tps_warp(dot, shift, grid=3)[0, 0]
    y, x = divmod(int(moved.argmax()), 41)
    assert y == 20 and 26 <= x <= 30


@pytest.mark.parametrize(("index", "shift"), [(6, (0.1, 0.05)), (18, (-0.08, 0.1))])
def test_an_off_centre_control_point_carries_its_pixel_exactly_where_it_moves(index, shift):
    """Off-centre points tell the spline's kernel centres apart: the wrong ones move the dot a few pixels off."""
    size, grid = 81, 5
    cx, cy = control_grid(grid)[index].tolist()
    px, py = round((cx + 1) / 2 * size - 0.5), round((cy + 1) / 2 * size - 0.5)
    dot = torch.zeros(1, 3, size, size)
    dot[..., py, px] = 1.0
    displacement = torch.zeros(1, grid * grid, 2)
    displacement[0, index] = torch.tensor(shift)
    y, x = divmod(int(tps_warp(dot, displacement, grid)[0, 0].argmax()), size)
    assert abs(x - (px + shift[0] * size)) <= 1 and abs(y - (py + shift[1] * size)) <= 1


def test_bending_energy_ignores_affine_warps_and_sees_bumps():
    grid = control_grid(6)
    affine = grid @ torch.tensor([[0.05, 0.02], [-0.03, 0.04]]) + 0.01
    assert bending_energy(affine[None], 6).item() < 1e-8
    bump = torch.zeros(1, 36, 2)
    bump[0, 14] = torch.tensor([0.05, 0.0])
    assert bending_energy(bump, 6).item() > 0.01


def test_deformation_loss_falls_and_the_warp_stays_bounded_and_smooth():
    image = textured(48, 64)
    free = simulate_deformation(image, grid=6, candidates=3, epochs=15, smoothness=0.0, max_displacement=0.08, seed=1)
    smooth = simulate_deformation(image, grid=6, candidates=3, epochs=15, smoothness=5.0, max_displacement=0.08, seed=1)
    assert free.warped.shape == (1, 3, 3, 48, 64) and free.displacement.shape == (1, 3, 36, 2)
    assert free.history[-1] < free.history[0] - 0.01  # the pixel change grows
    assert (free.change > 0.02).all()
    for result in (free, smooth):
        assert result.displacement.abs().max() <= 0.08 + 1e-6
        assert result.warped.min() >= 0 and result.warped.max() <= 1
    assert smooth.bending.mean() < 0.5 * free.bending.mean()  # the penalty keeps the warp smooth
    again = simulate_deformation(image, grid=6, candidates=3, epochs=15, smoothness=0.0, max_displacement=0.08, seed=1)
    torch.testing.assert_close(again.displacement, free.displacement)  # seeded


def test_bad_settings_get_clear_errors():
    sam = tiny_sam()
    with pytest.raises(PhotoshieldError, match="variant"):
        DeformationProtection(sam, variant="nope")
    with pytest.raises(ValueError, match="max_displacement"):
        simulate_deformation(textured(), max_displacement=0.9)
    with pytest.raises(PhotoshieldError, match="segmenter"):
        protect(textured(), method="deformation", segmenter=3, steps=1, progress=False)


# -- the attacks on a tiny transformers SamModel -------------------------------------------------------------
@pytest.mark.parametrize("variant", ["uad", "feature"])
def test_feature_attacks_lower_their_loss_within_the_budget_through_protect(variant):
    sam = tiny_sam()
    assert default_layers(sam) == [1]
    image = textured(40, 70, seed=2)  # non-square, not the model's 64 px
    epsilon = 8 / 255
    result = protect(image, method="deformation", segmenter=sam, variant=variant, epsilon=epsilon, steps=6, preset="light",
                     shaping=False, deform_epochs=5, candidates=2, progress=False)
    report = result.report
    assert report["variant"] == variant and report["layers"] == [1]
    assert report["objective_after"][0] < report["objective_before"][0] - 1e-3
    assert result.image.shape == image.shape
    assert (result.image - image).abs().max() <= epsilon + 1e-6
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert report["protected"]["feature_cosine"][0] < report["clean"]["feature_cosine"][0]
    if variant == "uad":
        assert -1 <= report["target_cosine_to_clean"][0] < 1


def test_mask_baseline_pushes_prompted_logits_down():
    sam = tiny_sam()
    image = textured(40, 70, seed=3)
    attack = DeformationProtection(sam, variant="mask", measure=False)
    prompts = [Prompts(masks=torch.ones(1, 40, 70, dtype=torch.bool), boxes=torch.tensor([[5.0, 5.0, 50.0, 35.0]]),
                       points=torch.tensor([[[20.0, 20.0]]]), box_owner=torch.tensor([0]), point_owner=torch.tensor([0]))]
    attack.margin = 100.0  # every logit of the random model sits above -100: the hinge is active everywhere
    result = run_pgd(lambda x: attack.mask_loss(x, prompts), image, PGDConfig(epsilon=8 / 255, steps=4, step_size=2 / 255, progress=False))
    assert result.loss_after[0] < result.loss_before[0]
    assert (result.delta.abs().max() <= 8 / 255 + 1e-6) and result.adversarial.min() >= 0


def test_the_random_box_term_lowers_the_masks_agreement_with_the_clean_photo(litemedsam):
    """box_weight alone (no feature term) on the real LiteMedSAM: for the same random boxes, the soft IoU of the
    protected photo's masks with the clean photo's falls."""
    from photoshield import data
    from photoshield.image import resize_to

    photo = resize_to(data.sample("coffee"), (96, 128))
    protection = DeformationProtection(litemedsam, layers=[], embedding=False, box_weight=1.0, box_count=16, measure=False)
    objective = protection.objective(photo)
    assert objective.info["box_weight"] == 1.0
    boxes = protection.random_boxes(96, 128, torch.Generator().manual_seed(0))
    assert boxes.shape == (16, 4) and (boxes[:, 2:] > boxes[:, :2]).all()
    assert boxes[:, 0].min() >= 0 and boxes[:, 2].max() <= 128 and boxes[:, 3].max() <= 96
    result = run_pgd(objective.loss_fn, photo, PGDConfig(epsilon=8 / 255, steps=5, step_size=2 / 255, progress=False))
    assert result.delta.abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        clean = litemedsam.encode(photo)

        def agreement(image):
            return protection.box_loss(litemedsam.encode(image), clean, torch.Generator().manual_seed(1)).item()

        before, after = agreement(photo), agreement(result.adversarial)
    assert before > 0.6 and after < before - 0.2, (before, after)  # measured: 0.81 -> 0.24
    with pytest.raises(PhotoshieldError, match="layers"):
        DeformationProtection(litemedsam, layers=[], embedding=False)


def test_measurement_helpers_on_the_tiny_model():
    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, :1] = True, True
    a[1, :] = True
    assert mask_iou(a, b).tolist() == [0.5, 0.0, 1.0]
    sam = tiny_sam()
    image = textured(40, 70, seed=4)
    prompts = draw_prompts(sam, image, max_masks=3)
    assert prompts.points is None or prompts.points.shape[1:] == (1, 2)
    figures = segmentation_agreement(sam, image, image, prompts)
    if len(prompts):
        assert figures["miou"] == 1.0 and figures["asr50"] == 0.0
        assert len(prompts.boxes) == 3 * len(prompts.masks)
        reference = predict_prompts(sam, image, prompts)
        assert reference["box"].shape == (len(prompts.boxes), 40, 70)


# -- the real LiteMedSAM ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def litemedsam():
    from photoshield.models import load

    return load("sam-litemedsam", device="cpu")


def test_uad_lowers_box_prompt_iou_on_the_real_litemedsam(litemedsam):
    """Measured on chelsea with these settings (8 steps): box mIoU 1.0 -> 0.71; the test asks for < 0.85.

    With 10 steps and 40 deformation epochs (unquantised) the same photo reached 0.52.
    """
    from photoshield import data

    photo = data.sample("chelsea")  # 300 x 451: the perturbation stays at full size
    prompts = draw_prompts(litemedsam, photo, max_masks=4)
    assert prompts.points is None and len(prompts.boxes) >= 6  # LiteMedSAM: boxes only
    result = protect(photo, method="deformation", segmenter=litemedsam, variant="uad", steps=8, preset="light",
                     shaping=False, deform_epochs=20, candidates=2, measure=False, progress=False)
    assert result.image.shape == photo.shape and (result.image - photo).abs().max() <= 8 / 255 + 1e-6
    assert result.report["objective_after"][0] < result.report["objective_before"][0] - 0.1
    figures = segmentation_agreement(litemedsam, photo, result.image, prompts)
    assert figures["box_miou"] < 0.85, figures
    assert figures["box_asr50"] > 0.0, figures
