"""Train the watermark embedder and decoder (accelerate), with noise layers taken from ``attacks/``.

Random crops of real photos (128 to 256 px, marked the way ``embed`` marks a full-size photo: the
residual is made at the model's size, resized up, masked and added), random 96-bit words, a random
diffusion timestep (mostly the DDIM steps sampling visits); the embedder predicts the watermarked
x0, a noise layer attacks it, and the decoder's bit cross-entropy trains both. The residual's RMS is
fixed by the model (image quality by design); training anneals it from a large value (where the
decoder finds the bits at once) down to the shipped budget, and moves from easy noise (a warm-up) to
the full set: differentiable JPEG, real JPEG and WebP (straight-through), resize, crop, blur, noise,
colour changes, the round trip through ``autoencoder-small`` (the latent autoencoder trained here:
DiffMark's deepfake simulation, since regeneration and face-swap pipelines re-encode every pixel)
and the graphics face swap of ``attacks/deepfake.py`` (straight-through).

The loop, checkpoint and metrics log are :mod:`training.loop`'s: one resumable checkpoint
(``<out>/checkpoint.pt``, tensors and numbers only, read back with ``torch.load(weights_only=True)``);
metrics go to ``<out>/metrics.jsonl``.

    python -m training.train_watermark --photos runs/watermark/photos --out runs/watermark \\
        --minutes 80 --export photoshield/assets/weights/watermark_diffmark.safetensors [--whiten]

Run it again with the same ``--out`` to resume.
"""

from __future__ import annotations

import argparse
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from photoshield.attacks import get
from photoshield.image import quantize, resize_to
from photoshield.models import load
from photoshield.models.registry import safetensors_metadata
from photoshield.watermark.model import WatermarkConfig, WatermarkModel, add_residual
from photoshield.watermark.readout import resampled_patterns
from training.loop import LoopSettings, PhotoCrops, StepResult, TrainingRun, heldout_crops, psnr, run_arguments
from training.whiten_watermark import whiten_from_photos

__all__ = ["NoiseLayers", "PhotoCrops", "TrainConfig", "initial_weights", "psnr", "train"]


# --------------------------------------------------------------------------- noise layers


def _straight_through(attack: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = attack(images.detach())
        return images + (out - images).detach()

    return apply


class NoiseLayers:
    """Random attacks from ``photoshield.attacks`` (one per batch), plus the autoencoder round trip."""

    def __init__(self, autoencoder: Callable[[torch.Tensor], torch.Tensor] | None, seed: int = 0):
        self.autoencoder = autoencoder
        self.rng = random.Random(seed)
        self.face_swap = _straight_through(get("faceswap"))

    def names(self, warmup: bool) -> list[str]:
        if warmup:
            return ["identity", "noise", "diffjpeg"]
        return ["identity", "diffjpeg", "diffjpeg", "jpeg", "webp", "resize", "crop", "crop+jpeg", "blur", "noise",
                "color", "autoencoder", "faceswap"]

    def __call__(self, images: torch.Tensor, warmup: bool) -> tuple[torch.Tensor, str]:
        name = self.rng.choice(self.names(warmup))
        r = self.rng.uniform
        if name == "identity":
            out = images
        elif name == "diffjpeg":
            out = get("jpeg-diff", quality=r(60, 95) if warmup else r(35, 90))(images)
        elif name == "jpeg":
            out = get("jpeg", quality=int(r(40, 90)), straight_through=True)(images)
        elif name == "webp":
            out = get("webp", quality=int(r(50, 90)), straight_through=True)(images)
        elif name == "resize":
            out = get("resize", scale=r(0.4, 0.9))(images)
        elif name == "crop":
            out = get("crop", area=r(0.45, 0.95), position="random")(images)
        elif name == "crop+jpeg":
            out = get("jpeg-diff", quality=r(50, 90))(get("crop", area=r(0.5, 0.95), position="random")(images))
        elif name == "blur":
            out = get("blur", sigma=r(0.4, 1.8))(images)
        elif name == "noise":
            out = get("noise", sigma=r(0.005, 0.02) if warmup else r(0.01, 0.05))(images)
        elif name == "color":
            kind = self.rng.choice(["brightness", "contrast", "saturation", "hue"])
            params = {"brightness": {"delta": r(-0.25, 0.25)}, "contrast": {"factor": r(0.6, 1.5)},
                      "saturation": {"factor": r(0.5, 1.5)}, "hue": {"degrees": r(-15, 15)}}[kind]
            out = get(kind, **params)(images)
            name = kind
        elif name == "autoencoder":
            out = self.autoencoder(images) if self.autoencoder is not None else images
        elif name == "faceswap":
            out = self.face_swap(images)
        else:  # pragma: no cover - names() and this table are kept together
            raise AssertionError(name)
        return out, name


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """How long and how hard to train (the model's own sizes live in ``WatermarkConfig``)."""

    batch_size: int = 8
    lr: float = 1e-3
    minutes: float = 80.0
    max_steps: int = 100_000
    warmup_steps: int = 300
    rms_start: float = 0.08
    rms_anneal_steps: int = 2500
    rms_final: float | None = None  # set the shipped residual RMS (the model's budget), e.g. on resuming
    cover_sizes: tuple[int, ...] = (128, 192, 256)  # covers at these sides, marked as full-size photos are
    checkpoint_minutes: float = 3.0
    eval_every: int = 200
    log_every: int = 10
    seed: int = 0


@torch.no_grad()
def evaluate(model: WatermarkModel, covers: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Full embed path (DDIM sampling, mask, 8-bit rounding) on fixed held-out crops: PSNR, bit accuracy."""
    generator = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (covers.shape[0], model.n_bits), generator=generator).float()
    marked = quantize(model.embed(covers, bits, generator=generator))
    metrics = {"val_psnr": float(psnr(marked, covers).mean())}
    for name, attack in (("clean", None), ("jpeg75", get("jpeg", quality=75)), ("jpeg50", get("jpeg", quality=50)),
                         ("resize50", get("resize", scale=0.5)), ("crop75", get("crop", area=0.75))):
        seen = marked if attack is None else attack(marked)
        metrics[f"val_acc_{name}"] = float(((model.decode(seen) > 0) == (bits > 0.5)).float().mean())
    return metrics


def initial_weights(model: WatermarkModel, path: str | Path) -> list[str]:
    """Copy every tensor of an exported model at ``path`` whose name and shape match; the names left as built.

    A run can start from the shipped weights with some sizes changed (e.g. a finer message pattern and
    read-out): the rest of the network keeps what it learned.
    """
    from safetensors.torch import load_file

    source = load_file(str(path))
    own = model.state_dict()
    kept = {name: value for name, value in source.items() if name in own and own[name].shape == value.shape}
    kept.update(resampled_patterns(source, own))
    model.load_state_dict(kept, strict=False)
    return sorted(name for name in own if name not in kept)


def train(photos: str | Path, out: str | Path, config: TrainConfig | None = None,
          model_config: WatermarkConfig | None = None, export: str | Path | None = None,
          progress: bool = True, init: str | Path | None = None) -> WatermarkModel:
    """Train (or resume) under ``out``; returns the model and, with ``export``, writes its weights there.

    ``init``: an exported model to start a new run from (ignored when ``out`` holds a checkpoint).
    """
    config = config or TrainConfig()
    run = TrainingRun(out, config.seed)
    state = run.state
    if state is not None:
        model_config = WatermarkConfig.from_json(state["model_config"])
    model_config = model_config or WatermarkConfig()
    if config.rms_final is not None:
        model_config.residual_rms = float(config.rms_final)
    model = WatermarkModel(model_config)
    if state is None and init is not None:
        fresh = initial_weights(model, init)
        print(f"started from {init}; built anew: {', '.join(fresh) or 'nothing'}")
    data = PhotoCrops(photos, max(config.cover_sizes), "train", seed=config.seed)
    val = heldout_crops(photos, 256, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = run.resume()
        random.seed(config.seed + step)
        torch.manual_seed(config.seed + step)
    accelerator = run.accelerator
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model: WatermarkModel = accelerator.unwrap_model(model)
    device = run.device
    run.start()

    def checkpoint() -> dict:
        return {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "model_config": raw_model.config.to_json()}

    autoencoder = get("vae", model=load("autoencoder-small", device=device))
    noise = NoiseLayers(autoencoder, seed=config.seed + run.step)
    embedder = raw_model.embedder
    sampling_t = embedder.inference_timesteps().to(device)

    def train_step(step: int, _: float) -> StepResult:
        model.train()
        warmup = step < config.warmup_steps
        fraction = min(1.0, step / max(1, config.rms_anneal_steps))
        embedder.residual_rms = math.exp(
            math.log(config.rms_start) + fraction * (math.log(raw_model.config.residual_rms) - math.log(config.rms_start))
        )
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / 100)
        side = random.choice(config.cover_sizes)
        photo = resize_to(data.batch(config.batch_size).to(device), (side, side))
        cover = resize_to(photo, (raw_model.config.size, raw_model.config.size))
        bits = torch.randint(0, 2, (cover.shape[0], raw_model.n_bits), device=device).float()
        if random.random() < 0.75:
            t = sampling_t[torch.randint(0, len(sampling_t), (cover.shape[0],))]
        else:
            t = torch.randint(0, raw_model.config.num_train_timesteps, (cover.shape[0],), device=device)
        noisy = embedder.add_noise(cover, torch.randn_like(cover), t)
        x0 = embedder.predict_x0(noisy, t, cover, bits)
        marked = add_residual(photo, x0 - cover)  # the residual made at size, added to the photo as embed() does
        attacked, attack = noise(marked, warmup)
        logits = raw_model.decode(attacked)
        loss = F.binary_cross_entropy_with_logits(logits, bits)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        accuracy = float(((logits > 0) == (bits > 0.5)).float().mean())
        metrics = {"loss": loss.item(), "acc": accuracy, "psnr": float(psnr(marked.detach(), photo).mean()),
                   f"acc_{attack}": accuracy}
        return StepResult(metrics, fixed={"rms": round(embedder.residual_rms, 5)},
                          postfix={"loss": f"{loss.item():.3f}", "acc": f"{accuracy:.3f}",
                                   "rms": f"{embedder.residual_rms:.4f}"})

    def validate() -> dict[str, float]:
        model.eval()
        embedder.residual_rms = raw_model.config.residual_rms
        return {k: round(v, 4) for k, v in evaluate(raw_model, val).items()}

    run.loop(train_step, LoopSettings.of(config), desc="watermark", checkpoint=checkpoint, evaluate=validate,
             stage="watermark", digits=4, progress=progress)
    embedder.residual_rms = raw_model.config.residual_rms
    run.save(checkpoint())
    model.eval()
    run.write({"stage": "final", "step": run.step, **{k: round(v, 4) for k, v in evaluate(raw_model, val).items()}})
    run.close()
    if export is not None:
        raw_model.save(export)
    return raw_model


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the photoshield watermark embedder and decoder.")
    run_arguments(parser, TrainConfig, Path("runs/watermark"), "model")
    parser.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps,
                        help="steps with mild noise only, at the start")
    parser.add_argument("--rms-start", type=float, default=TrainConfig.rms_start,
                        help="residual RMS at the start, annealed to the model's budget")
    parser.add_argument("--rms-anneal-steps", type=int, default=TrainConfig.rms_anneal_steps)
    parser.add_argument("--rms-final", type=float, help="the shipped residual RMS (default: the model config's, 0.008)")
    parser.add_argument("--init", type=Path, help="start a new run from this exported model (tensors of the same "
                        "name and shape are kept), e.g. photoshield/assets/weights/watermark_diffmark.safetensors")
    parser.add_argument("--message-skip-size", type=int, help="side of the message pattern (new runs; default 32)")
    parser.add_argument("--decoder-linear-size", type=int, help="side of the decoder's linear read-out (new runs; default 32)")
    parser.add_argument("--whiten", action="store_true", help="whiten the decoder's read-out (64 px) before exporting "
                        "(training.whiten_watermark with its defaults: the shipped model's last step, ~20 min)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.export_only:
        if args.export is None:
            parser.error("--export-only needs --export PATH")
        state = torch.load(args.out / "checkpoint.pt", map_location="cpu", weights_only=True)
        model = WatermarkModel(WatermarkConfig.from_json(state["model_config"]))
        model.load_state_dict(state["model"])
        _export(model, args.export, args.photos if args.whiten else None)
        print(f"wrote {args.export} (step {state['step']}{', whitened' if args.whiten else ''})")
        return
    config = TrainConfig(batch_size=args.batch_size, lr=args.lr, minutes=args.minutes, max_steps=args.max_steps,
                         warmup_steps=args.warmup_steps, rms_start=args.rms_start,
                         rms_anneal_steps=args.rms_anneal_steps, rms_final=args.rms_final, seed=args.seed)
    model_config = WatermarkConfig()
    if args.init is not None:
        model_config = WatermarkConfig.from_json(safetensors_metadata(args.init, "watermark checkpoint")["config"])
    for name in ("message_skip_size", "decoder_linear_size"):
        if getattr(args, name) is not None:
            setattr(model_config, name, getattr(args, name))
    model = train(args.photos, args.out, config, model_config=model_config, init=args.init)
    if args.export is not None:
        _export(model, args.export, args.photos if args.whiten else None)


def _export(model: WatermarkModel, path: Path, whiten_on: Path | None) -> None:
    """Write ``model`` to ``path``; with ``whiten_on`` (the photos folder), its whitened read-out instead."""
    if whiten_on is not None:
        model = whiten_from_photos(model.cpu().eval(), whiten_on)  # the shipped recipe's settings
    model.save(path)


if __name__ == "__main__":
    main()
