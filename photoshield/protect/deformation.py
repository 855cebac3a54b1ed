"""Protection against promptable segmentation: encoder-feature attacks, UAD-style or untargeted.

The default (``variant="feature"``) attacks only the image encoder, without prompts: it minimises the
cosine similarity between the protected and the clean photo's features at chosen encoder blocks and
at the image embedding the mask decoder reads, so that every prompt gets a mask of the wrong shape.
On the tuning photos (``benchmarks/bench_deformation_tuning.py``) reading the embedding as well as
the middle blocks took the white-box ASR@50 on LiteMedSAM from 46 to 86 %. UAD's deformation target
was within the spread of the 10 bundled photos of this untargeted loss on the segmenter neither was
computed on (15.0 against 12.5 %) and 18 points below it on LiteMedSAM (``bench_deformation.py``).

Unsegment Anything by Simulating Deformation (UAD, CVPR 2024; ``variant="uad"``):

1. **Simulate a deformation.** A thin-plate-spline warp on a coarse control grid (6 x 6)
   is optimised with Adam to change the photo as much as possible (mean absolute pixel
   change) under a bending penalty, with every control-point displacement clamped to a
   fraction of the image side. Several candidate warps run in parallel (4); the one whose
   encoder features are farthest (lowest cosine) from the clean photo's is the target.
2. **Pull the encoder toward it.** The engine (:func:`photoshield.protect.optim.run_pgd`)
   minimises ``mean_l cos(f_l(x_adv), f_l(clean)) - cos(f_l(x_adv), f_l(warped))`` over
   chosen encoder blocks ``l`` (and the embedding): the decoder then sees the structure of a
   deformed photo.

Units: displacements are fractions of the image side times 1024, so ``deform_lr=10``
moves a control point by about 1 % of the side per Adam step, as UAD's lr 10 does on its
1024 px canvas. The warp runs at the segmenter's working size (the longest side at the
model's input size) because the target only feeds the encoder, which resizes anyway; the
perturbation itself is optimised at the photo's full size, through the adapter's
differentiable resize and padding.

Alternation: UAD runs 4 proxy PGD steps after every deformation epoch, but its warped
features are detached, so those steps never change the deformation; only the last
epoch's 40 steps matter. Here ``proxy_steps > 0`` spends proxy steps once, after the
deformation, on every candidate: each candidate is attacked for ``proxy_steps`` steps and
the one the budget pulls closest (lowest attack loss) becomes the target; with
``proxy_steps=0`` (default, cheaper) the farthest candidate is chosen.

Steps: the engine's ``steps``; when the caller sets none, a quarter of the preset's (``STEPS_SCALE``;
``standard``: 15), because every step runs the segmenter's encoder forward and backward and more
steps bought little on the tuning photos. ``feature`` and ``uad`` bring the transfer recipe
``DEFORMATION_ENGINE`` (momentum, input diversity, gradient smoothing); ``protect(..., momentum=0,
input_diversity=0, smooth_gradient=0)`` turns it off.

Encoder blocks (``layers``): UAD uses SAM ViT-B blocks 4-7 of 12, the middle third. On
LiteMedSAM's TinyViT (0-1 MBConv @ 256 px, 2-3 attention @ 128, 4-9 attention @ 64,
10-11 attention @ 64, 320 ch) the default is blocks 4-7, the first four of the 64 x 64
stage: the same token grid and relative depth as ViT-B's 4-7. Other encoders get their
middle third. ``embedding=False`` leaves the embedding out and stops the encoder after the
last block read (UAD as published; cheaper steps).

Other variants (``variant=``):

* ``"mask"`` — Attack-SAM: push the mask logits of box prompts (and point prompts where
  the model takes them) drawn from the clean photo's own masks below ``-margin``
  (squared hinge, as Attack-SAM's MSE toward ``min(logits, -10)``). It knows the prompts.
* ``"feature"`` (default) — untargeted feature attack: minimise ``cos(f(x_adv), f(clean))``.

A prompt-agnostic mask term can be added to ``uad`` and ``feature`` (``box_weight``): the soft IoU of
the masks for random boxes, drawn anew each step, against the clean photo's. A photo takes two to three
times as long, and on the tuning photos it did not help the segmenter the protection never saw.

Transfer: ``benchmarks/bench_deformation.py`` judges every protection by LiteMedSAM and by
``sam-distilled-small``, a convolutional segmenter distilled from it that no protection is computed on
by default.

Use: ``protect(photo, method="deformation", segmenter="sam-litemedsam" | "sam-distilled-small" | PATH, variant="feature" | "uad" | "mask")``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import PhotoshieldError
from ..image import check_image, resize_to
from ..models.sam import LiteMedSAM, Segmenter
from ..models.sam.segmenter import SegmenterFeatures
from ._renamed import renamed_getattr
from .objective import Objective
from .optim import PGDConfig, run_pgd

__all__ = [
    "DEFORMATION_ENGINE",
    "VARIANTS",
    "Deformation",
    "DeformationProtection",
    "bending_energy",
    "control_grid",
    "default_layers",
    "simulate_deformation",
    "tps_warp",
]

VARIANTS = ("feature", "uad", "mask")
# A quarter of the preset's engine steps (standard: 15 of 60): a step costs a segmenter encoder's forward and
# backward, and on the tuning photos (benchmarks/bench_deformation_tuning.py) more steps bought little.
STEPS_SCALE = 0.25
#: Transfer recipe the prompt-agnostic variants run with (MI momentum, DI input diversity, TI gradient smoothing
#: in pixels); the caller's own engine settings win. On four training photos it raised the ASR@50 of the segmenter
#: the protection never saw from 10.9 to 14.6 % and cost the white-box one 86 -> 71 %
#: (``benchmarks/bench_deformation_tuning.py``, ``feature-15-emb`` against ``feature-15-emb-ti``).
DEFORMATION_ENGINE: dict[str, float] = {"momentum": 0.9, "input_diversity": 0.5, "smooth_gradient": 2.0}
UNITS = 1024.0  # displacement unit: 1/1024 of the image side (UAD's pixels on its 1024 px canvas)


# -- thin-plate-spline deformation -------------------------------------------------------------------
def control_grid(grid: int, device: torch.device | str | None = None) -> torch.Tensor:
    """A ``grid`` x ``grid`` lattice of control points (grid*grid, 2) as (x, y) in the normalised [-1, 1] frame."""
    if grid < 2:
        raise ValueError(f"the control grid needs at least 2 x 2 points, got {grid}")
    axis = torch.linspace(-1.0, 1.0, grid, device=device)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def tps_warp(images: torch.Tensor, displacement: torch.Tensor, grid: int) -> torch.Tensor:
    """Warp (N, 3, H, W) images so the content at each control point moves by ``displacement``.

    ``displacement`` is (N, grid*grid, 2) in fractions of the image width / height
    (x, y). Differentiable in both the images and the displacement (kornia TPS).
    """
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    source = control_grid(grid, images.device).expand(images.shape[0], -1, -1)
    target = source + 2.0 * displacement.to(images)
    # warp_image_tps maps output pixels back to input pixels: the spline goes target -> source, and since
    # kornia 0.9.2 its kernels sit on its first argument, which the warp must receive as kernel_centers.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*kernel_centers.*", category=FutureWarning)
        kernel, affine = get_tps_transform(target, source)
    return warp_image_tps(images, target, kernel, affine, align_corners=False, padding_mode="border")


def bending_energy(displacement: torch.Tensor, grid: int) -> torch.Tensor:
    """Discrete bending of a control-grid displacement (..., grid*grid, 2): mean squared second differences.

    Displacements are measured in grid cells, so the value does not depend on the image
    size; an affine warp (translation, rotation, scale, shear) has zero bending.
    """
    d = displacement.reshape(*displacement.shape[:-2], grid, grid, 2) * (grid - 1)
    dxx = d[..., :, 2:, :] - 2 * d[..., :, 1:-1, :] + d[..., :, :-2, :]
    dyy = d[..., 2:, :, :] - 2 * d[..., 1:-1, :, :] + d[..., :-2, :, :]
    dxy = d[..., 1:, 1:, :] - d[..., 1:, :-1, :] - d[..., :-1, 1:, :] + d[..., :-1, :-1, :]
    terms = [t.pow(2).flatten(-3).mean(-1) for t in (dxx, dyy) if t.numel()] + [2 * dxy.pow(2).flatten(-3).mean(-1)]
    return sum(terms)


@dataclass
class Deformation:
    """Candidate deformations of a batch: warped images, displacements and how the optimisation went."""

    warped: torch.Tensor  # (B, K, 3, h, w) at the working size
    displacement: torch.Tensor  # (B, K, grid*grid, 2), fractions of the image side
    change: torch.Tensor  # (B, K) mean absolute pixel change
    bending: torch.Tensor  # (B, K) bending_energy of the displacement
    history: list[float] = field(default_factory=list)  # mean deformation loss per epoch
    grid: int = 6


def _shrink(images: torch.Tensor, side: int | None) -> torch.Tensor:
    """Resize so the longest side is at most ``side`` (None: unchanged)."""
    if side is None or max(images.shape[-2:]) <= side:
        return images
    scale = side / max(images.shape[-2:])
    return resize_to(images, (max(1, round(images.shape[-2] * scale)), max(1, round(images.shape[-1] * scale))))


def simulate_deformation(
    images: torch.Tensor,
    grid: int = 6,
    candidates: int = 4,
    epochs: int = 40,
    lr: float = 10.0,
    smoothness: float = 0.05,
    max_displacement: float = 0.1,
    init_scale: float = 0.1,
    max_side: int | None = None,
    optimise_side: int | None = 128,
    seed: int = 0,
) -> Deformation:
    """Optimise ``candidates`` TPS warps per image to maximise pixel change minus ``smoothness`` x bending.

    ``max_displacement`` (fraction of the image side) clamps every control point after
    each Adam step; ``init_scale`` (fraction of a grid cell) sets the random start;
    ``max_side`` shrinks the images first (the target only feeds an encoder) and
    ``optimise_side`` shrinks them further while the warps are optimised (the warp is
    defined in relative coordinates, so the displacements carry over to ``max_side``).
    """
    check_image(images, "images")
    if candidates < 1 or epochs < 0:
        raise ValueError("candidates must be >= 1 and epochs >= 0")
    if not 0 < max_displacement <= 0.5:
        raise ValueError(f"max_displacement is a fraction of the image side in (0, 0.5], got {max_displacement}")
    images = _shrink(images.detach(), max_side)
    small = _shrink(images, optimise_side)
    batch = images.shape[0]
    repeated = small.repeat_interleave(candidates, dim=0)
    generator = torch.Generator().manual_seed(seed)
    bound = max_displacement * UNITS
    start = torch.randn(batch * candidates, grid * grid, 2, generator=generator) * init_scale * UNITS / (grid - 1)
    theta = start.clamp(-bound, bound).to(images.device).requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    history: list[float] = []

    def losses(theta: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        displacement = theta / UNITS
        warped = tps_warp(source, displacement, grid)
        change = (warped - source).abs().flatten(1).mean(1)
        bending = bending_energy(displacement, grid)
        return -change + smoothness * bending, warped, change, bending

    for _ in range(epochs):
        optimizer.zero_grad()
        loss, _, _, _ = losses(theta, repeated)
        loss.sum().backward()
        optimizer.step()
        with torch.no_grad():
            theta.clamp_(-bound, bound)
        history.append(loss.detach().mean().item())
    with torch.no_grad():
        loss, warped, change, bending = losses(theta, images.repeat_interleave(candidates, dim=0))
    shape = (batch, candidates)
    return Deformation(
        warped=warped.clamp(0, 1).reshape(*shape, *warped.shape[1:]),
        displacement=(theta.detach() / UNITS).reshape(*shape, grid * grid, 2),
        change=change.reshape(shape),
        bending=bending.reshape(shape),
        history=history,
        grid=grid,
    )


# -- the attack ------------------------------------------------------------------------------------------
def default_layers(segmenter: Segmenter) -> list[int]:
    """Encoder blocks UAD-style attacks read: LiteMedSAM 4-7; otherwise the middle third of the blocks."""
    if isinstance(segmenter, LiteMedSAM):
        return [4, 5, 6, 7]
    count = segmenter.num_blocks
    start, width = count // 3, max(1, count // 3)
    return list(range(start, min(count, start + width)))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of whole feature maps per image: (B, ...) x (B, ...) -> (B,)."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=1e-8)


@functools.lru_cache(maxsize=4)
def _cached_segmenter(name: str, device: str) -> Segmenter:
    from ..models.sam import load_segmenter

    return load_segmenter(name, device=device)


def resolve_segmenter(segmenter: Segmenter | str | os.PathLike, device: torch.device | str | None = None) -> Segmenter:
    """A :class:`Segmenter` from an instance, a registry name, a LiteMedSAM file, or a SamModel folder / hub id."""
    if isinstance(segmenter, Segmenter):
        return segmenter
    if isinstance(segmenter, (str, os.PathLike)):
        return _cached_segmenter(os.fspath(segmenter), str(torch.device(device) if device is not None else "cpu"))
    raise PhotoshieldError(f"segmenter must be a Segmenter, a registry name or a path, got {type(segmenter).__name__}")


class DeformationProtection:
    """The feature attack (``variant="feature"``), UAD (``"uad"``) or Attack-SAM (``"mask"``) against one segmenter, configured once.

    ``objective(images)`` returns the :class:`Objective` the shared engine minimises; the settings are
    explained at length in the module docstring.

    Args:
        segmenter: the promptable segmenter (e.g. ``models.load("sam-litemedsam")``).
        variant: ``feature``, ``uad`` or ``mask``.
        layers: encoder blocks the feature loss reads; None for the middle of the encoder.
        grid: the deformation's control grid side.
        candidates: deformations simulated in parallel.
        deform_epochs: Adam steps of the deformation.
        deform_lr: their learning rate, in 1/1024 of the image side.
        smoothness: weight of the bending penalty.
        max_displacement: largest control-point move, as a fraction of the side.
        proxy_steps: PGD steps per candidate to pick the target (0: the farthest candidate).
        proxy_epsilon: those steps' budget.
        clean_weight: UAD's push away from the clean features, against the pull toward the warped ones (1).
        margin: the mask variant's logit margin.
        max_masks: prompts drawn for the mask variant and the measures.
        measure: segment clean and protected photos for the report.
        seed: seeds the deformation and the prompts.
        embedding: also read the image embedding the mask decoder sees (the encoder's output).
        box_weight: weight of a prompt-agnostic mask term: for ``box_count`` random boxes, drawn anew at
            every step, the soft IoU between the masks on the protected photo and on the clean one.
        box_count: random boxes per step for that term.

    Shapes:
        - objective(images): images (B, 3, H, W) in [0, 1]; its loss_fn (B, 3, H, W) -> (B,)

    Raises:
        PhotoshieldError: an unknown variant or no layers.

    Examples:
        >>> import torch
        >>> from photoshield import models
        >>> from photoshield.protect import DeformationProtection
        >>> segmenter = models.load("sam-litemedsam", device="cpu")
        >>> protection = DeformationProtection(segmenter, layers=[0], embedding=False, measure=False)
        >>> photo = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> objective = protection.objective(photo)  # encodes the clean photo once
        >>> objective.info
        {'variant': 'feature', 'layers': [0], 'segmenter': 'LiteMedSAM'}
    """

    def __init__(
        self,
        segmenter: Segmenter,
        variant: str = "feature",
        layers: Sequence[int] | None = None,
        grid: int = 6,
        candidates: int = 4,
        deform_epochs: int = 40,
        deform_lr: float = 10.0,
        smoothness: float = 0.05,
        max_displacement: float = 0.1,
        proxy_steps: int = 0,
        proxy_epsilon: float = 8 / 255,
        clean_weight: float = 1.0,
        margin: float = 10.0,
        max_masks: int = 6,
        measure: bool = True,
        seed: int = 0,
        embedding: bool = True,
        box_weight: float = 0.0,
        box_count: int = 12,
    ):
        if variant not in VARIANTS:
            raise PhotoshieldError(f"unknown deformation variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.segmenter = segmenter
        self.variant = variant
        self.layers = list(layers) if layers is not None else default_layers(segmenter)
        self.embedding = embedding
        self.box_weight, self.box_count = float(box_weight), int(box_count)
        if not self.layers and not embedding and not (self.box_weight > 0 and variant != "mask"):
            raise PhotoshieldError("layers must name at least one encoder block (or set embedding=True or box_weight > 0)")
        self.grid, self.candidates, self.deform_epochs = grid, candidates, deform_epochs
        self.deform_lr, self.smoothness, self.max_displacement = deform_lr, smoothness, max_displacement
        self.proxy_steps, self.proxy_epsilon, self.margin = proxy_steps, proxy_epsilon, margin
        self.clean_weight = clean_weight
        self.max_masks, self.measure, self.seed = max_masks, measure, seed
        self.deformation: Deformation | None = None  # the last simulated deformation, for inspection

    # -- features ---------------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the chosen encoder blocks (the encoder stops after the last one unless the
        embedding is read too, which comes last), differentiable."""
        if not self.layers and not self.embedding:
            return []
        return self._read(self.segmenter.encode(images, layers=self.layers, embedding=self.embedding))

    def _read(self, encoded: SegmenterFeatures) -> list[torch.Tensor]:
        """The chosen blocks' outputs from an encoding, then the embedding if it is read."""
        blocks = [encoded.layers[index] for index in self.layers]
        return blocks + [encoded.embedding] if self.embedding else blocks

    def feature_loss(self, adversarial: list[torch.Tensor], clean: list[torch.Tensor], target: list[torch.Tensor] | None) -> torch.Tensor:
        """Per image: mean over blocks of w cos(adv, clean) - cos(adv, target), w = ``clean_weight``
        (target None: cos(adv, clean))."""
        total = 0.0
        for index, feature in enumerate(adversarial):
            term = _cosine(feature, clean[index])
            if target is not None:
                term = self.clean_weight * term - _cosine(feature, target[index])
            total = total + term
        return total / max(1, len(adversarial))

    def choose_target(self, images: torch.Tensor, clean: list[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """Simulate the candidate deformations and return the chosen one's features per image."""
        batch, count = images.shape[0], self.candidates
        deformation = simulate_deformation(
            images, self.grid, count, self.deform_epochs, self.deform_lr, self.smoothness, self.max_displacement,
            max_side=self.segmenter.image_size, seed=self.seed,
        )
        self.deformation = deformation
        warped = deformation.warped.flatten(0, 1)
        with torch.no_grad():
            candidate_features = self.features(warped)
        clean_rep = [c.repeat_interleave(count, dim=0) for c in clean]
        distance = self.feature_loss(candidate_features, clean_rep, None).reshape(batch, count)  # cosine to clean
        score = distance
        if self.proxy_steps > 0:
            repeated = images.repeat_interleave(count, dim=0)

            def proxy_loss(x: torch.Tensor) -> torch.Tensor:
                return self.feature_loss(self.features(x), clean_rep, candidate_features)

            config = PGDConfig(epsilon=self.proxy_epsilon, steps=self.proxy_steps, step_size=self.proxy_epsilon / 4, progress=False, seed=self.seed)
            score = run_pgd(proxy_loss, repeated, config).loss_after.reshape(batch, count)
        pick = score.argmin(dim=1)
        rows = torch.arange(batch, device=pick.device) * count + pick
        target = [f[rows] for f in candidate_features]
        info = {
            "target_cosine_to_clean": [round(v, 4) for v in distance[torch.arange(batch), pick].tolist()],
            "deformation_change": [round(v, 4) for v in deformation.change[torch.arange(batch), pick].tolist()],
            "deformation_bending": [round(v, 4) for v in deformation.bending[torch.arange(batch), pick].tolist()],
        }
        return target, info

    # -- the mask-logit baseline ------------------------------------------------------------------------
    def _mask_prompts(self, images: torch.Tensor) -> list[Any]:
        from ..models.sam.prompts import draw_prompts

        return [draw_prompts(self.segmenter, images[i : i + 1], boxes_per_mask=1, points_per_mask=1, max_masks=self.max_masks, seed=self.seed) for i in range(images.shape[0])]

    def mask_loss(self, images: torch.Tensor, prompts: list[Any]) -> torch.Tensor:
        """Attack-SAM: per image, mean squared hinge of the prompted mask logits above ``-margin``."""
        losses = []
        for index, drawn in enumerate(prompts):
            if len(drawn) == 0:
                losses.append(images.new_zeros(()))
                continue
            features = self.segmenter.encode(images[index : index + 1])
            parts = []
            if len(drawn.boxes):
                parts.append(self.segmenter.predict_from_features(features, boxes=drawn.boxes).flatten())
            if drawn.points is not None:
                labels = torch.ones(drawn.points.shape[:2])
                parts.append(self.segmenter.predict_from_features(features, points=drawn.points, point_labels=labels).flatten())
            losses.append(F.relu(torch.cat(parts) + self.margin).pow(2).mean())
        return torch.stack(losses)

    # -- the prompt-agnostic mask term -----------------------------------------------------------------
    def random_boxes(self, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """``box_count`` boxes (P, 4) x0, y0, x1, y1 in pixels: sides 15-90 % of the photo's, anywhere inside it."""
        side = torch.rand(self.box_count, 2, generator=generator) * 0.75 + 0.15
        centre = side / 2 + torch.rand(self.box_count, 2, generator=generator) * (1 - side)
        scale = torch.tensor([width, height], dtype=torch.float32)
        return torch.cat([(centre - side / 2) * scale, (centre + side / 2) * scale], dim=1)

    def box_loss(self, encoded: SegmenterFeatures, clean: SegmenterFeatures, generator: torch.Generator) -> torch.Tensor:
        """Per image: mean soft IoU between the protected photo's masks (sigmoid of the logits) and the
        clean photo's masks for fresh random boxes; (B,)."""
        height, width = encoded.input_size
        losses = []
        for i in range(encoded.embedding.shape[0]):
            boxes = self.random_boxes(height, width, generator).to(encoded.embedding.device)
            with torch.no_grad():
                reference = self.segmenter.predict_from_features(_one(clean, i), boxes=boxes)[:, 0] > 0
            probability = torch.sigmoid(self.segmenter.predict_from_features(_one(encoded, i), boxes=boxes)[:, 0])
            reference = reference.to(probability.dtype)
            overlap = (probability * reference).flatten(1).sum(1)
            union = (probability + reference - probability * reference).flatten(1).sum(1)
            losses.append((overlap / union.clamp_min(1.0)).mean())
        return torch.stack(losses)

    # -- the objective ----------------------------------------------------------------------------------
    def objective(self, images: torch.Tensor) -> Objective:
        """The loss the engine minimises for these clean images, with a measure of segmentation agreement."""
        check_image(images, "images")
        images = images.detach()
        info: dict[str, Any] = {"variant": self.variant, "layers": list(self.layers), "segmenter": type(self.segmenter).__name__}
        if self.embedding:
            info["embedding"] = True
        with torch.no_grad():
            clean = [f.detach() for f in self.features(images)]
        if self.variant in ("uad", "feature"):
            target = None
            if self.variant == "uad":
                target, details = self.choose_target(images, clean)
                info.update(details)
            if self.box_weight > 0:
                info["box_weight"] = self.box_weight
                generator = torch.Generator().manual_seed(self.seed)
                with torch.no_grad():
                    clean_encoded = self.segmenter.encode(images)

                def loss_fn(x: torch.Tensor) -> torch.Tensor:
                    encoded = self.segmenter.encode(x, layers=self.layers)
                    features = self._read(encoded)
                    loss = self.feature_loss(features, clean, target) if features else 0.0
                    return loss + self.box_weight * self.box_loss(encoded, clean_encoded, generator)

            else:

                def loss_fn(x: torch.Tensor) -> torch.Tensor:
                    return self.feature_loss(self.features(x), clean, target)

        else:
            prompts = self._mask_prompts(images)
            info["mask_prompts"] = [len(p) for p in prompts]

            def loss_fn(x: torch.Tensor) -> torch.Tensor:
                return self.mask_loss(x, prompts)

        measure = self._measure(images, clean) if self.measure else None
        engine = dict(DEFORMATION_ENGINE) if self.variant in ("uad", "feature") else {}
        return Objective(loss_fn=loss_fn, measure=measure, info=info, steps_scale=STEPS_SCALE, engine=engine)

    def _measure(self, images: torch.Tensor, clean: list[torch.Tensor]):
        """A report measure: feature cosine to the clean photo and box-prompt mIoU / ASR@50 against it."""
        from ..models.sam.prompts import (
            draw_prompts,
            predict_prompts,
            segmentation_agreement,
        )

        cache: dict[int, tuple[Any, Any]] = {}

        def measure(x: torch.Tensor) -> dict[str, Any]:
            with torch.no_grad():
                cosine = self.feature_loss(self.features(x), clean, None)
            figures: dict[str, Any] = {"feature_cosine": [round(v, 4) for v in cosine.tolist()], "miou": [], "asr50": []}
            for i in range(x.shape[0]):
                if i not in cache:
                    prompts = draw_prompts(self.segmenter, images[i : i + 1], max_masks=self.max_masks, seed=self.seed)
                    cache[i] = (prompts, predict_prompts(self.segmenter, images[i : i + 1], prompts))
                prompts, reference = cache[i]
                agreement = segmentation_agreement(self.segmenter, images[i : i + 1], x[i : i + 1], prompts, reference)
                figures["miou"].append(round(agreement["miou"], 4))
                figures["asr50"].append(round(agreement["asr50"], 4))
            return figures

        return measure


def _one(features: SegmenterFeatures, index: int) -> SegmenterFeatures:
    """Image ``index`` of a batch's features, as a batch of one (its embedding only)."""
    return dataclasses.replace(features, embedding=features.embedding[index : index + 1], layers={})


def deformation_objective(
    images: torch.Tensor,
    segmenter: Segmenter | str | os.PathLike = "sam-litemedsam",
    variant: str = "feature",
    seed: int | None = None,
    **options: Any,
) -> Objective:
    """``protect(..., method="deformation", segmenter=NAME|PATH|Segmenter, variant="feature"|"uad"|"mask")``."""
    model = resolve_segmenter(segmenter, images.device)
    seed = int(torch.initial_seed() % (2**31)) if seed is None else seed
    return DeformationProtection(model, variant=variant, seed=seed, **options).objective(images)


__getattr__ = renamed_getattr(__name__, globals(), ("DeformationAttack",))  # the old name, deprecated
