"""The one optimisation engine every protection uses: projected gradient steps on a perturbation.

A protection supplies ``loss_fn(x_adv) -> loss per image`` (lower is better for the
protector); the engine owns the budget (an L_inf or L_2 ball, or a root-mean-square
bound over a region, which is a PSNR floor, all in [0, 1] pixel units),
the step rule (signed PGD or Adam), step-size schedules, MI-FGSM momentum, input
diversity, expectation over transformations, region masks, shaping, early stop,
seeding, the progress bar and Ctrl-C handling.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from ..progress import tqdm

LossFn = Callable[[torch.Tensor], torch.Tensor]
Shaper = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Transform = Callable[..., torch.Tensor]


@dataclass
class PGDConfig:
    """How to optimise a perturbation. ``epsilon`` and ``step_size`` are in [0, 1] pixel units.

    Args:
        epsilon: the budget: L_inf bound per pixel (``linf``), the L_2 norm of the whole perturbation
            (``l2``), or its root-mean-square change over the region ``run_pgd`` is given (``rms``: a PSNR
            floor of ``-20 log10(epsilon)`` dB over that region; see :func:`rms_for_psnr`).
        steps: optimisation steps (0: judge the clean images only).
        norm: ``linf``, ``l2`` or ``rms``. Under ``l2`` and ``rms`` the steps follow the normalised gradient,
            so the budget goes where the loss gains most from it.
        linf_cap: under ``l2`` and ``rms``, no pixel moves more than this (None: no cap).
        step_size: the base step; None for 2.5 * epsilon / steps (Madry et al.), at least epsilon / 50.
        optimizer: ``sign`` (signed gradient, PGD) or ``adam``.
        schedule: step size over the run: ``constant``, ``linear`` or ``cosine`` (down to 5 %).
        momentum: MI-FGSM gradient momentum (0: none).
        input_diversity: DI-FGSM probability of a random shrink-and-pad each step.
        smooth_gradient: TI-FGSM Gaussian sigma in pixels applied to each gradient (0: none).
        eot: transformations (e.g. attacks) sampled each step: expectation over transformations.
        eot_samples: transformations averaged per step.
        target_loss: stop an image once its loss is at or below this.
        random_start: start from uniform noise inside the budget.
        seed: seeds the engine's own randomness.
        autocast: ``bf16`` or ``fp16`` mixed precision for the model's forward pass; None for float32.
        progress: show a progress bar.
        description: the progress bar's label.

    Raises:
        ValueError: an unknown choice, a non-positive epsilon, negative steps, or an L_inf epsilon above 1.

    Examples:
        >>> from photoshield.protect import PGDConfig
        >>> config = PGDConfig(epsilon=8 / 255, steps=10, schedule="cosine")
        >>> round(config.base_step() * 255, 2), round(config.step_at(9) * 255, 2)
        (2.0, 0.1)
    """

    epsilon: float = 8 / 255
    steps: int = 50
    norm: Literal["linf", "l2", "rms"] = "linf"
    linf_cap: float | None = None
    step_size: float | None = None
    optimizer: Literal["sign", "adam"] = "sign"
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    momentum: float = 0.0
    input_diversity: float = 0.0
    smooth_gradient: float = 0.0  # TI-FGSM: Gaussian sigma (pixels) applied to each gradient; low-frequency steps transfer better
    eot: Sequence[Transform] = ()
    eot_samples: int = 1
    target_loss: float | None = None
    random_start: bool = False
    seed: int = 0
    autocast: Literal["bf16", "fp16"] | None = None
    progress: bool = True
    description: str = "protect"

    def __post_init__(self) -> None:
        if self.norm not in ("linf", "l2", "rms"):
            raise ValueError(f"norm must be 'linf', 'l2' or 'rms', got {self.norm!r}")
        if self.optimizer not in ("sign", "adam"):
            raise ValueError(f"optimizer must be 'sign' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"schedule must be 'constant', 'linear' or 'cosine', got {self.schedule!r}")
        if self.autocast not in (None, "bf16", "fp16"):
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {self.autocast!r}")
        if self.epsilon <= 0 or self.steps < 0:
            raise ValueError("epsilon must be positive and steps non-negative")
        if self.norm in ("linf", "rms") and self.epsilon > 1:
            raise ValueError(f"epsilon is in [0, 1] pixel units (8/255 = {8 / 255:.4f}); got {self.epsilon}")
        if self.linf_cap is not None and not 0 < self.linf_cap <= 1:
            raise ValueError(f"linf_cap is in (0, 1] pixel units, got {self.linf_cap}")

    def base_step(self) -> float:
        """The step size: given, or 2.5 * epsilon / steps (Madry et al.'s rule) with a floor."""
        if self.step_size is not None:
            return self.step_size
        return max(2.5 * self.epsilon / max(self.steps, 1), self.epsilon / 50)

    def step_at(self, index: int) -> float:
        """The scheduled step size at step ``index`` (0-based)."""
        base = self.base_step()
        progress = index / max(self.steps - 1, 1)
        if self.schedule == "linear":
            return base * (1.0 - progress) + base * 0.05 * progress
        if self.schedule == "cosine":
            return base * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))
        return base


@dataclass
class PGDResult:
    """The best perturbation found per image, with the loss history.

    Args:
        delta: the perturbation kept for each image (the lowest loss seen).
        adversarial: ``images + delta``.
        loss_before: each image's loss before any step.
        loss_after: each image's loss with ``delta``.
        history: the batch's mean loss at each step.
        steps_run: steps taken (fewer after an early stop or Ctrl-C).
        seconds: time spent.
        interrupted: stopped by Ctrl-C.
        early_stopped: every image reached ``target_loss``.

    Shapes:
        - delta, adversarial: (B, 3, H, W)
        - loss_before, loss_after: (B,)

    Examples:
        >>> import torch
        >>> from photoshield.protect import PGDConfig, run_pgd
        >>> result = run_pgd(lambda x: x.mean(dim=(1, 2, 3)), torch.full((2, 3, 8, 8), 0.5),
        ...                  PGDConfig(steps=3, progress=False))
        >>> result.steps_run, len(result.history), result.loss_after.shape
        (3, 3, torch.Size([2]))
    """

    delta: torch.Tensor
    adversarial: torch.Tensor
    loss_before: torch.Tensor
    loss_after: torch.Tensor
    history: list[float] = field(default_factory=list)
    steps_run: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    early_stopped: bool = False


def rms_for_psnr(psnr_db: float) -> float:
    """The root-mean-square change in [0, 1] pixel units that a PSNR of ``psnr_db`` allows.

    Examples:
        >>> round(rms_for_psnr(35.0) * 255, 2)
        4.53
    """
    return 10 ** (-psnr_db / 20)


def _clamp_linf(delta: torch.Tensor, epsilon: float, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return delta.clamp(-epsilon, epsilon)
    bound = (epsilon * mask).to(delta)
    return torch.maximum(torch.minimum(delta, bound), -bound)


def project(
    delta: torch.Tensor,
    images: torch.Tensor,
    epsilon: float | torch.Tensor,
    norm: str,
    mask: torch.Tensor | None = None,
    range_bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    cap: float | None = None,
) -> torch.Tensor:
    """Project ``delta`` onto the epsilon ball and keep ``images + delta`` inside [0, 1].

    Under L_inf a ``mask`` in [0, 1] scales the budget per pixel (epsilon * mask);
    under L_2 the perturbation is kept where the mask is non-zero, each pixel is clamped to
    ``cap * mask`` when a cap is given, and ``epsilon`` may be one radius per image (B, 1, 1, 1).
    ``range_bounds``, ``(-images, 1 - images)`` computed once, saves two passes over the image per call.
    """
    if norm == "linf":
        delta = _clamp_linf(delta, epsilon, mask)
    else:
        if mask is not None:
            delta = delta * (mask > 0)
        if cap is not None:
            delta = _clamp_linf(delta, cap, mask)
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta * (epsilon / norms).clamp(max=1.0)
    if range_bounds is not None:
        return torch.clamp(delta, *range_bounds)
    return (images + delta).clamp(0.0, 1.0) - images


def diverse_input(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """DI-FGSM input diversity: with ``probability``, shrink by up to 10 % and pad back at a random offset."""
    if probability <= 0 or torch.rand((), generator=generator).item() >= probability:
        return images
    height, width = images.shape[-2:]
    scale = 0.9 + 0.1 * torch.rand((), generator=generator).item()
    new_h, new_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    resized = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top = int(torch.randint(0, height - new_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - new_w + 1, (), generator=generator))
    return F.pad(resized, (left, width - new_w - left, top, height - new_h - top), value=0.5)


def _autocast(config: PGDConfig, device: torch.device) -> torch.autocast | contextlib.nullcontext:
    """Mixed precision for the model's forward pass when asked; the perturbation stays float32."""
    if config.autocast is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.autocast == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _expected_loss(loss_fn: LossFn, x: torch.Tensor, config: PGDConfig, generator: torch.Generator) -> torch.Tensor:
    """Loss per image averaged over the sampled transformations (EOT) and input diversity."""
    with _autocast(config, x.device):
        return _sampled_loss(loss_fn, x, config, generator).float()


def _sampled_loss(loss_fn: LossFn, x: torch.Tensor, config: PGDConfig, generator: torch.Generator) -> torch.Tensor:
    if not config.eot and config.input_diversity <= 0:
        return loss_fn(x)
    total = 0.0
    for _ in range(max(1, config.eot_samples)):
        view = x
        if config.eot:
            index = int(torch.randint(0, len(config.eot), (), generator=generator))
            view = config.eot[index](view, generator=generator)
        view = diverse_input(view, config.input_diversity, generator)
        total = total + loss_fn(view)
    return total / max(1, config.eot_samples)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (kernel of 2 * ceil(3 sigma) + 1 taps)."""
    import kornia

    size = 2 * math.ceil(3 * sigma) + 1
    size = min(size, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
    return kornia.filters.gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="reflect") if size >= 3 else x


def _escape_flat_points(gradient: torch.Tensor, generator: torch.Generator) -> None:
    """Give an image whose gradient is exactly zero a seeded random direction, in place.

    A clean photo is often a stationary point of its own objective (cosine similarity to the clean
    embedding is at its maximum there), so a signed step of a zero gradient would never leave it.
    """
    flat = gradient.flatten(1).abs().amax(1) == 0
    if bool(flat.any()):
        noise = torch.randn(gradient.shape, generator=generator).to(gradient)
        gradient.copy_(torch.where(flat.view(-1, 1, 1, 1), noise, gradient))


def _check_loss(loss: torch.Tensor, batch: int) -> torch.Tensor:
    if loss.ndim == 0:
        loss = loss.expand(batch) if batch == 1 else loss
    if loss.shape != (batch,):
        raise ValueError(f"loss_fn must return one loss per image, shape ({batch},); got {tuple(loss.shape)}")
    return loss


def run_pgd(
    loss_fn: LossFn,
    images: torch.Tensor,
    config: PGDConfig | None = None,
    mask: torch.Tensor | None = None,
    shaping: Shaper | None = None,
    region: torch.Tensor | None = None,
) -> PGDResult:
    """Minimise ``loss_fn(images + delta)`` per image over ``delta`` inside the budget.

    ``mask`` (B or 1, 1, H, W) in [0, 1] says where the perturbation may go and, under
    L_inf, how much of the budget each pixel gets;
    ``shaping(update, images) -> update`` reshapes each step before projection.
    ``region`` (B or 1, 1, H, W) in {0, 1} is where a ``norm="rms"`` budget is measured (None: the
    whole image): the perturbation's energy, wherever it lies, is at most what ``epsilon`` root-mean-square
    change over that region allows, so the region's PSNR stays at or above ``-20 log10(epsilon)``.
    Returns the lowest-loss perturbation seen for each image. Each step's loss (with
    EOT when configured) judges the perturbation it was computed on; at the end the best
    candidate and the final perturbation are judged again without gradients (so without
    an objective's own randomness) and the better one is kept.

    Args:
        loss_fn: ``loss_fn(x_adv) -> (B,)`` losses, lower is better for the protector.
        images: the clean images (not changed).
        config: the budget and step rule; None for ``PGDConfig()``.
        mask: where the perturbation may go (see above); None for everywhere.
        shaping: reshapes each update before the projection.
        region: where an ``rms`` budget is measured.

    Shapes:
        - images: (B, 3, H, W) in [0, 1]
        - mask, region: (B or 1, 1, H, W) in [0, 1]
        - loss_fn output: (B,)

    Returns:
        The result, a :class:`PGDResult`; ``images + result.delta`` stays in [0, 1] and inside the budget.

    Examples:
        >>> import torch
        >>> from photoshield.protect import PGDConfig, run_pgd
        >>> images = torch.full((1, 3, 8, 8), 0.5)
        >>> result = run_pgd(lambda x: x.mean(dim=(1, 2, 3)), images, PGDConfig(epsilon=4 / 255, steps=5, progress=False))
        >>> round(float(result.delta.abs().max()) * 255, 3), bool(result.loss_after < result.loss_before)
        (4.0, True)
    """
    config = config or PGDConfig()
    images = images.detach()
    batch = images.shape[0]
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    if mask is not None:
        mask = mask.to(images).expand(batch, 1, *images.shape[-2:])
    # An rms budget is an L_2 ball whose radius (per image) is epsilon times the root of the region's size;
    # its steps are in rms units too.
    norm, radius, step_scale = config.norm, config.epsilon, 1.0
    if norm == "rms":
        norm = "l2"
        area = (torch.full((batch,), float(images.shape[-2] * images.shape[-1]), device=images.device) if region is None
                else region.to(images).expand(batch, 1, *images.shape[-2:]).flatten(1).sum(1))
        step_scale = torch.sqrt(images.shape[1] * area).view(-1, 1, 1, 1)
        radius = config.epsilon * step_scale

    delta = torch.zeros_like(images)
    if config.random_start:
        noise = torch.rand(images.shape, generator=generator).to(images) * 2 - 1
        delta = noise * config.epsilon if norm == "linf" else noise * radius / math.sqrt(noise[0].numel())
        delta = project(delta, images, radius, norm, mask, cap=config.linf_cap)
    delta.requires_grad_(True)
    adam = torch.optim.Adam([delta], lr=config.base_step()) if config.optimizer == "adam" else None
    momentum = torch.zeros_like(images)

    plain = not config.eot and config.input_diversity <= 0
    loss_before = None
    if config.random_start or not plain or config.steps == 0:
        with torch.no_grad():
            loss_before = _check_loss(loss_fn(images), batch).detach().float()
    best_loss = torch.full((batch,), float("inf"), device=images.device)
    best = {"delta": torch.zeros_like(images)}
    # [0, 1] range as bounds on delta, computed once (the projection runs every step).
    range_bounds = (-images, 1.0 - images)
    active = torch.ones(batch, dtype=torch.bool, device=images.device)
    history: list[float] = []
    started = time.perf_counter()
    interrupted = early_stopped = False
    steps_run = 0

    def keep_best(loss: torch.Tensor, candidate: torch.Tensor) -> None:
        # ``candidate`` is never modified afterwards (each step makes a new delta, or Adam's
        # in-place path passes a clone), so the common all-improved case keeps a reference.
        improved = loss < best_loss
        best_loss.copy_(torch.where(improved, loss, best_loss))
        if bool(improved.all()):
            best["delta"] = candidate
        elif bool(improved.any()):
            best["delta"] = torch.where(improved.view(-1, 1, 1, 1), candidate, best["delta"])

    progress = tqdm(total=config.steps, desc=config.description, unit="step", disable=not config.progress, leave=False)
    try:
        for step in range(config.steps):
            loss = _check_loss(_expected_loss(loss_fn, images + delta, config, generator), batch)
            (gradient,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                # The loss of this step belongs to the perturbation before the update.
                loss = loss.detach().float()
                if loss_before is None:
                    loss_before = loss.clone()
                history.append(loss.mean().item())
                keep_best(loss, delta.detach() if adam is None else delta.detach().clone())
                steps_run = step + 1
                gate = None  # per-image 0/1 factor once some images have reached the target loss
                if config.target_loss is not None:
                    active &= best_loss > config.target_loss
                    if not bool(active.any()):
                        early_stopped = True
                        progress.update(1)
                        break
                    gate = None if bool(active.all()) else active.view(-1, 1, 1, 1).to(gradient.dtype)
                gradient = torch.nan_to_num_(gradient)
                if config.smooth_gradient > 0:
                    gradient = _gaussian_blur(gradient, config.smooth_gradient)
                _escape_flat_points(gradient, generator)
                if gate is not None:
                    gradient.mul_(gate)
                if config.momentum > 0:
                    scale = gradient.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                    momentum = config.momentum * momentum + gradient / scale
                    gradient = momentum
                step_size = config.step_at(step)
                if adam is not None:
                    for group in adam.param_groups:
                        group["lr"] = step_size
                    previous = delta.detach().clone()
                    delta.grad = gradient
                    adam.step()
                    update = delta.detach() - previous
                    delta.copy_(previous)
                elif norm == "linf":
                    update = gradient.sign().mul_(-step_size)
                else:
                    norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                    update = -step_size * step_scale * gradient / norms
                if shaping is not None:
                    # Shaping decides the pattern of the step, not its length: rescale to the
                    # unshaped step's energy so a low-pass shaper does not shrink the step size.
                    before = update.flatten(1).norm(dim=1)
                    update = shaping(update, images)
                    after = update.flatten(1).norm(dim=1).clamp_min(1e-12)
                    update = update * (before / after).view(-1, 1, 1, 1)
                if mask is not None and norm == "l2":
                    update = update * mask
                new_delta = project(delta + (update if gate is None else update * gate), images, radius, norm, mask,
                                    range_bounds, config.linf_cap)
                if adam is not None:
                    delta.copy_(new_delta)  # Adam holds this tensor
                else:
                    delta = new_delta.requires_grad_(True)
            progress.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()

    if not early_stopped:
        with torch.no_grad():
            # Step losses can be stochastic (EOT, input diversity, an objective's own jitter): judge the best
            # candidate and the last one again, the same way, and keep the better of the two per image.
            best_loss.copy_(_check_loss(loss_fn(images + best["delta"]), batch).float())
            keep_best(_check_loss(loss_fn(images + delta), batch).float(), delta.detach())
    if loss_before is None:
        loss_before = best_loss.clone()
    best_delta = best["delta"].detach()
    return PGDResult(
        delta=best_delta,
        adversarial=(images + best_delta).clamp(0, 1),
        loss_before=loss_before,
        loss_after=best_loss,
        history=history,
        steps_run=steps_run,
        seconds=time.perf_counter() - started,
        interrupted=interrupted,
        early_stopped=early_stopped,
    )
