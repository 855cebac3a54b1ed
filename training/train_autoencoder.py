"""Train ``autoencoder-small``, the latent autoencoder (diffusers ``AutoencoderKL``) of photoshield, on CPU.

Random 128 px crops of the real photos that ``tools/fetch_training_photos.py`` fetched; the loss is
L1 on the reconstruction from a posterior sample plus a small KL term (weighted as Stable Diffusion's
autoencoder weights it, 1e-6 against per-pixel sums) and an optional L1 on image gradients, which
keeps edges sharper than L1 alone. The accelerate loop, photo crops, checkpoints and metrics log are
the ones every trainer uses (:mod:`training.loop`). Held-out PSNR (posterior mean, as
the ``vae`` attack decodes) is logged every ``eval_every`` steps; at the end the latent scaling factor
is set to 1 / std of the latents (as for Stable Diffusion's VAE), so diffusion models trained on
them see unit-variance latents.

    python -m training.train_autoencoder --photos runs/watermark/photos --out runs/autoencoder \\
        --minutes 30 --threads 2 --export runs/autoencoder/autoencoder_small.safetensors

Run it again with the same ``--out`` (and a larger ``--minutes``) to resume from ``<out>/checkpoint.pt``;
metrics go to ``<out>/metrics.jsonl``. The export loads with ``photoshield.models.load("autoencoder-small",
path=...)`` or ``AutoencoderKL(**read_config(path))`` plus ``load_state_dict``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from photoshield.attacks import get
from photoshield.data import sample, samples
from photoshield.image import quantize, resize_to, working_size
from photoshield.models.autoencoder import SMALL_CONFIG, public_config, save_autoencoder, small_autoencoder
from training.loop import (
    LoopSettings,
    PhotoCrops,
    StepResult,
    TrainingRun,
    heldout_crops,
    load_checkpoint,
    psnr,
    run_arguments,
    warmup_cosine_lr,
)

__all__ = ["AutoencoderTrainConfig", "evaluate", "evaluate_scenes", "reconstruct", "train"]


@dataclass
class AutoencoderTrainConfig:
    """How long and how hard to train (the network's sizes are its diffusers config)."""

    size: int = 128
    batch_size: int = 8
    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 50
    kl_weight: float = 1e-6
    edge_weight: float = 0.0
    minutes: float = 30.0
    max_steps: int = 100_000
    checkpoint_minutes: float = 3.0
    eval_every: int = 100
    eval_crops: int = 16
    log_every: int = 10
    seed: int = 0


def reconstruct(vae: torch.nn.Module, images: torch.Tensor, sample: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
    """Decode the posterior mean (or a sample) of images in [0, 1]; returns the images and the posterior."""
    posterior = vae.encode(images * 2 - 1).latent_dist
    latents = posterior.sample(generator) if sample else posterior.mode()
    return (vae.decode(latents).sample + 1) / 2, posterior


def _edges(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images[..., 1:, :] - images[..., :-1, :], images[..., :, 1:] - images[..., :, :-1]


def loss_terms(vae: torch.nn.Module, batch: torch.Tensor, config: AutoencoderTrainConfig) -> dict[str, torch.Tensor]:
    """The training loss and its parts for one batch (reconstruction from a posterior sample)."""
    out, posterior = reconstruct(vae, batch, sample=True)
    l1 = F.l1_loss(out, batch)
    # diffusers' kl() sums over latent cells; per pixel value, as SD weights it against summed pixel losses
    kl = posterior.kl().mean() / batch[0].numel()
    terms = {"l1": l1, "kl": kl}
    loss = l1 + config.kl_weight * kl
    if config.edge_weight > 0:
        edges = sum(F.l1_loss(a, b) for a, b in zip(_edges(out), _edges(batch)))
        terms["edge"] = edges
        loss = loss + config.edge_weight * edges
    terms["loss"] = loss
    return terms


@torch.no_grad()
def evaluate(vae: torch.nn.Module, images: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """PSNR and L1 of posterior-mean reconstructions of fixed images (8-bit rounded, as a saved photo would be)."""
    was_training = vae.training
    vae.eval()
    scores, errors = [], []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size]
        out = quantize(reconstruct(vae, chunk)[0].clamp(0, 1))
        scores.append(psnr(out, chunk))
        errors.append((out - chunk).abs().mean(dim=(1, 2, 3)))
    vae.train(was_training)
    return {"val_psnr": float(torch.cat(scores).mean()), "val_l1": float(torch.cat(errors).mean())}


@torch.no_grad()
def evaluate_scenes(vae: torch.nn.Module, max_side: int = 256) -> dict[str, float]:
    """PSNR of the ``vae`` attack's round trip on the bundled scene photos, long side ``max_side``."""
    attack = get("vae", model=vae)
    scores = {}
    for name in samples("scenes"):
        image = sample(name)
        image = quantize(resize_to(image, working_size(*image.shape[-2:], max_side)))
        scores[name] = float(psnr(quantize(attack(image)), image))
    return {"scenes_psnr": sum(scores.values()) / len(scores), **{f"psnr_{k}": round(v, 2) for k, v in scores.items()}}


@torch.no_grad()
def latent_scaling_factor(vae: torch.nn.Module, images: torch.Tensor) -> float:
    """1 / std of the posterior-mean latents of ``images`` (Stable Diffusion's recipe for its scaling factor)."""
    was_training = vae.training
    vae.eval()
    latents = torch.cat([vae.encode(chunk * 2 - 1).latent_dist.mode() for chunk in images.split(8)])
    vae.train(was_training)
    return float(1 / latents.std().clamp_min(1e-6))


def _learning_rate(config: AutoencoderTrainConfig, step: int, fraction: float) -> float:
    return warmup_cosine_lr(config.lr, step, fraction, config.warmup_steps, config.min_lr_fraction)


def train(photos: str | Path, out: str | Path, config: AutoencoderTrainConfig | None = None,
          model_config: dict[str, Any] | None = None, export: str | Path | None = None,
          progress: bool = True, scenes: bool = True) -> torch.nn.Module:
    """Train (or resume) under ``out``; returns the autoencoder and, with ``export``, writes it there."""
    config = config or AutoencoderTrainConfig()
    run = TrainingRun(out, config.seed)
    state = run.state
    if state is not None:
        model_config = json.loads(state["model_config"])
    model_config = dict(model_config or SMALL_CONFIG)
    vae = small_autoencoder(model_config, seed=config.seed)
    data = PhotoCrops(photos, config.size, "train", seed=config.seed)
    val = heldout_crops(photos, config.size, config.eval_crops)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = run.resume()
        data.rng.seed(config.seed + step)
        torch.manual_seed(config.seed + step)
    accelerator = run.accelerator
    vae, optimizer = accelerator.prepare(vae, optimizer)
    raw = accelerator.unwrap_model(vae)
    device = run.device
    val = val.to(device)
    run.start()

    def checkpoint() -> dict[str, Any]:
        return {"model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                "model_config": json.dumps(public_config(raw))}

    def train_step(step: int, fraction: float) -> StepResult:
        lr = _learning_rate(config, step, fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = data.batch(config.batch_size).to(device)
        terms = loss_terms(vae, batch, config)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(terms["loss"])
        accelerator.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        return StepResult({key: float(value.detach()) for key, value in terms.items()}, fixed={"lr": round(lr, 7)},
                          postfix={"l1": f"{float(terms['l1'].detach()):.4f}"})

    def validate() -> dict[str, float]:
        return {k: round(v, 4) for k, v in evaluate(raw, val).items()}

    vae.train()
    run.loop(train_step, LoopSettings.of(config), desc="autoencoder", checkpoint=checkpoint, evaluate=validate,
             eval_at_start=True, progress=progress)
    raw.register_to_config(scaling_factor=latent_scaling_factor(raw, data.batch(32).to(device)))
    run.save(checkpoint())
    final = {"stage": "final", "step": run.step, "scaling_factor": round(raw.config.scaling_factor, 5),
             **validate()}
    if scenes:
        final.update({k: round(v, 4) for k, v in evaluate_scenes(raw.eval()).items()})
    run.write(final)
    run.close()
    raw.eval()
    if export is not None:
        save_autoencoder(raw, export)
    return raw


def _export_checkpoint(out: Path, export: Path) -> None:
    """Write the autoencoder in ``out/checkpoint.pt`` to ``export`` without training."""
    state = load_checkpoint(out / "checkpoint.pt")
    if state is None:
        raise SystemExit(f"{out / 'checkpoint.pt'}: no checkpoint to export; train first")
    vae = small_autoencoder(json.loads(state["model_config"]))
    vae.load_state_dict(state["model"])
    save_autoencoder(vae, export)
    print(f"wrote {export} (step {state['step']})")


def main() -> None:
    parser = argparse.ArgumentParser(description="Train photoshield's small latent autoencoder (diffusers AutoencoderKL).")
    run_arguments(parser, AutoencoderTrainConfig, Path("runs/autoencoder"), "autoencoder")
    parser.add_argument("--size", type=int, default=AutoencoderTrainConfig.size, help="crop side in pixels")
    parser.add_argument("--kl-weight", type=float, default=AutoencoderTrainConfig.kl_weight)
    parser.add_argument("--edge-weight", type=float, default=AutoencoderTrainConfig.edge_weight,
                        help="weight of an L1 loss on image gradients (0: off)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.export_only:
        if args.export is None:
            parser.error("--export-only needs --export PATH")
        _export_checkpoint(args.out, args.export)
        return
    config = AutoencoderTrainConfig(size=args.size, batch_size=args.batch_size, lr=args.lr, kl_weight=args.kl_weight,
                                    edge_weight=args.edge_weight, minutes=args.minutes, max_steps=args.max_steps,
                                    seed=args.seed)
    train(args.photos, args.out, config, export=args.export)


if __name__ == "__main__":
    main()
