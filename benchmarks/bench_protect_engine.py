"""The PGD engine's cost: overhead over a bare forward+backward, and against a PhotoGuard-style loop.

Two models, each measured in one run so the ratios compare like with like:

* ``face-embedder``: the bundled dlib ResNet port, aligned chip from the photo (FaceShield's path);
* ``sd-vae``: an AutoencoderKL with Stable Diffusion's VAE architecture (random weights: the
  speed does not depend on them) at 256x256, the PhotoGuard encoder attack's model.

For each: seconds per step of (a) a bare loop of forward+backward to the pixels, (b) the engine
(``run_pgd``, no progress bar), (c) a straight PhotoGuard-style loop (clone, grad, signed step,
clamp), then the engine with channels-last memory, with bf16 autocast, and with a batch of 4
photos (seconds per photo-step). Writes benchmarks/results/protect_engine.json (stamped). Usage::

    python benchmarks/bench_protect_engine.py [--steps N] [--rounds 3] [--models face-embedder sd-vae]
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F

from _common import add_results_argument, face_photo, write_result
from photoshield.protect.optim import PGDConfig, run_pgd

LossFn = Callable[[torch.Tensor], torch.Tensor]
# Enough steps that the engine's one closing forward pass (it judges the last update) is
# amortised as in real use (60 steps in the standard preset), yet each case stays short.
DEFAULT_STEPS = {"face-embedder": 30, "sd-vae": 10}


def face_case() -> tuple[torch.nn.Module, torch.Tensor, Callable[[torch.nn.Module, torch.Tensor], LossFn]]:
    """The dlib embedder on a real face photo; loss = cosine similarity to the clean embedding."""
    from photoshield.models import face, load

    image = face_photo(480)
    box = face.detect_faces(image)[0]["boxes"][:1]
    with torch.no_grad():
        points = face.landmarks68(image, box)
    model = load("face-embedder", device="cpu")

    def make_loss(net: torch.nn.Module, images: torch.Tensor) -> LossFn:
        count = images.shape[0]
        landmarks = points.expand(count, -1, -1)
        with torch.no_grad():
            clean = net(face.align_faces(images, landmarks, image_index=torch.arange(count)))

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            embedding = net(face.align_faces(x, landmarks, image_index=torch.arange(count)))
            return F.cosine_similarity(embedding.float(), clean, dim=-1)

        return loss_fn

    return model, image, make_loss


def vae_case() -> tuple[torch.nn.Module, torch.Tensor, Callable[[torch.nn.Module, torch.Tensor], LossFn]]:
    """Stable Diffusion's VAE encoder architecture at 256x256; loss = distance to the grey latent."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=256,
    ).eval().requires_grad_(False)
    image = F.interpolate(face_photo(480), size=(256, 256), mode="bilinear", antialias=True, align_corners=False)

    def make_loss(net: torch.nn.Module, images: torch.Tensor) -> LossFn:
        with torch.no_grad():
            target = net.encode(torch.zeros_like(images)).latent_dist.mean

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            latent = net.encode(x * 2 - 1).latent_dist.mean
            return (latent.float() - target).pow(2).flatten(1).mean(1)

        return loss_fn

    return vae, image, make_loss


def bare_loop(loss_fn: LossFn, images: torch.Tensor, steps: int) -> float:
    """Seconds per step of forward+backward to the pixels, nothing else."""
    started = time.perf_counter()
    for _ in range(steps):
        x = images.clone().requires_grad_(True)
        torch.autograd.grad(loss_fn(x).sum(), x)
    return (time.perf_counter() - started) / steps


def photoguard_loop(loss_fn: LossFn, images: torch.Tensor, steps: int, epsilon: float = 8 / 255, step: float = 1 / 255) -> float:
    """Seconds per step of the straight loop PhotoGuard's notebooks use (signed step, clamp to the ball)."""
    started = time.perf_counter()
    x_adv = images.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = loss_fn(x_adv).sum()
        (gradient,) = torch.autograd.grad(loss, [x_adv])
        x_adv = x_adv.detach() - step * gradient.sign()
        x_adv = (images + (x_adv - images).clamp(-epsilon, epsilon)).clamp(0, 1)
    return (time.perf_counter() - started) / steps


def engine(loss_fn: LossFn, images: torch.Tensor, steps: int, **settings) -> float:
    """Seconds per step of run_pgd."""
    result = run_pgd(loss_fn, images, PGDConfig(steps=steps, progress=False, **settings))
    return result.seconds / max(result.steps_run, 1)


def measure(name: str, steps: int, rounds: int) -> tuple[str, dict[str, float]]:
    """Best seconds per step of every variant on one model; returns (markdown table, {variant: s/step})."""
    model, image, make_loss = {"face-embedder": face_case, "sd-vae": vae_case}[name]()
    loss_fn = make_loss(model, image)
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    image_cl = image.contiguous(memory_format=torch.channels_last)
    loss_cl = make_loss(channels_last, image_cl)
    batch = image.expand(4, -1, -1, -1).contiguous()
    loss_batch = make_loss(model, batch)
    variants: dict[str, Callable[[], float]] = {
        "bare forward+backward": lambda: bare_loop(loss_fn, image, steps),
        "engine (run_pgd)": lambda: engine(loss_fn, image, steps),
        "PhotoGuard-style loop": lambda: photoguard_loop(loss_fn, image, steps),
        "engine + channels-last": lambda: engine(loss_cl, image_cl, steps),
        "engine + bf16 autocast": lambda: engine(loss_fn, image, steps, autocast="bf16"),
        "engine, batch of 4 (per photo)": lambda: engine(loss_batch, batch, steps) / 4,
    }
    bare_loop(loss_fn, image, 1)  # warm-up
    # Rounds interleave the variants and the best round counts, so load from other
    # processes on the machine hits every variant alike instead of skewing one.
    best = {label: float("inf") for label in variants}
    for _ in range(rounds):
        for label, run in variants.items():
            best[label] = min(best[label], run())

    print(f"\n{name} ({tuple(image.shape[-2:])}, {steps} steps x best of {rounds} rounds, {torch.get_num_threads()} threads)")
    print(f"{'':<32} {'s/step':>8} {'vs bare':>9} {'vs PhotoGuard':>14}")
    bare, photoguard = best["bare forward+backward"], best["PhotoGuard-style loop"]
    lines = [f"`{name}` at {image.shape[-2]} x {image.shape[-1]}, {steps} steps, best of {rounds} interleaved rounds:", "",
             "| variant | s / step | vs bare | vs PhotoGuard loop |", "|---|---|---|---|"]
    for label, seconds in best.items():
        print(f"{label:<32} {seconds:8.3f} {100 * (seconds / bare - 1):+8.1f}% {100 * (seconds / photoguard - 1):+13.1f}%")
        lines.append(f"| {label} | {seconds:.3f} | {100 * (seconds / bare - 1):+.1f} % | {100 * (seconds / photoguard - 1):+.1f} % |")
    return "\n".join(lines), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 30 face-embedder, 10 sd-vae)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["face-embedder", "sd-vae"])
    add_results_argument(parser)
    args = parser.parse_args()
    tables, figures = [], {}
    for name in args.models:
        table, figures[name] = measure(name, args.steps or DEFAULT_STEPS[name], args.rounds)
        tables.append(table)
    write_result("protect_engine", "\n\n".join(tables), args.results_dir, seconds_per_step=figures)


if __name__ == "__main__":
    main()
