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

One resumable checkpoint (``<out>/checkpoint.pt``, tensors and numbers only, read back with
``torch.load(weights_only=True)``); metrics go to ``<out>/metrics.jsonl``.

    python -m photoshield.watermark.train --photos runs/watermark/photos --out runs/watermark \\
        --minutes 80 --export photoshield/assets/weights/watermark_diffmark.safetensors [--whiten]

Run it again with the same ``--out`` to resume.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..training import MetricsLog, PhotoCrops, heldout_crops, load_checkpoint, psnr, save_checkpoint
from ..image import resize_to
from .model import WatermarkConfig, WatermarkModel, add_residual

__all__ = ["PhotoCrops", "TrainConfig", "NoiseLayers", "psnr", "train"]


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
        self.face_swap = self._face_swap()

    @staticmethod
    def _face_swap() -> Callable | None:
        if importlib.util.find_spec("photoshield.attacks.deepfake") is None:
            return None
        from ..attacks import base

        for name in ("face-swap", "faceswap", "face_swap"):
            try:
                return _straight_through(base.get(name))
            except Exception:  # not registered under this name, or it needs models that are missing
                continue
        return None

    def names(self, warmup: bool) -> list[str]:
        if warmup:
            return ["identity", "noise", "diffjpeg"]
        names = ["identity", "diffjpeg", "diffjpeg", "jpeg", "webp", "resize", "crop", "crop+jpeg", "blur", "noise",
                 "color", "autoencoder"]
        if self.face_swap is not None:
            names.append("faceswap")
        return names

    def __call__(self, images: torch.Tensor, warmup: bool) -> tuple[torch.Tensor, str]:
        from ..attacks import get

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
            out = _apply_or_strength(kind, params, images, self.rng)
            name = kind
        elif name == "autoencoder":
            out = self.autoencoder(images) if self.autoencoder is not None else images
        elif name == "faceswap":
            out = self.face_swap(images)
        else:  # pragma: no cover - names() and this table are kept together
            raise AssertionError(name)
        return out, name


def _apply_or_strength(kind: str, params: dict, images: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Call a colour attack with explicit parameters, or by strength when its parameter names differ."""
    from ..attacks import AttackError, get

    try:
        return get(kind, **params)(images)
    except AttackError:
        return get(kind, strength=rng.uniform(0.1, 0.6))(images)


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
    from ..attacks import get
    from ..image import quantize

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
    kept.update(_resampled_patterns(source, own))
    model.load_state_dict(kept, strict=False)
    return sorted(name for name in own if name not in kept)


def _resampled_patterns(source: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The message pattern and the linear read-out at a new side, resampled from the old one (bilinear), so a
    run that changes their size starts from what the old model wrote and read instead of from noise."""
    out = {}
    for name, axis in (("embedder.message_skip.weight", 0), ("embedder.message_skip.bias", 0),
                       ("decoder.linear.weight", 1)):
        if name not in source or name not in own or source[name].shape == own[name].shape:
            continue
        old_side = math.isqrt(source[name].shape[axis] // 3)
        new_side = math.isqrt(own[name].shape[axis] // 3)
        value = source[name].movedim(axis, -1)
        lead = value.shape[:-1]
        grid = value.reshape(-1, 3, old_side, old_side)
        grid = F.interpolate(grid, size=(new_side, new_side), mode="bilinear", align_corners=False)
        if name.startswith("decoder"):
            grid = grid * (old_side / new_side) ** 2  # as many more inputs, each weighted less: same logit scale
        out[name] = grid.reshape(*lead, -1).movedim(-1, axis).contiguous()
    return out


def train(photos: str | Path, out: str | Path, config: TrainConfig | None = None,
          model_config: WatermarkConfig | None = None, export: str | Path | None = None,
          progress: bool = True, init: str | Path | None = None) -> WatermarkModel:
    """Train (or resume) under ``out``; returns the model and, with ``export``, writes its weights there.

    ``init``: an exported model to start a new run from (ignored when ``out`` holds a checkpoint).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    torch.manual_seed(config.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())

    state = load_checkpoint(checkpoint_path)
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
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        random.seed(config.seed + step)
        torch.manual_seed(config.seed + step)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model: WatermarkModel = accelerator.unwrap_model(model)
    device = accelerator.device
    started = time.monotonic() - elapsed
    log = MetricsLog(metrics_path, started)
    last_save = time.monotonic()

    def save() -> None:
        save_checkpoint(checkpoint_path, {
            "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "elapsed": time.monotonic() - started, "model_config": raw_model.config.to_json(),
        })  # fmt: skip

    write = log.write
    budget_s = config.minutes * 60
    from ..attacks import get
    from ..models import load

    autoencoder = get("vae", model=load("autoencoder-small", device=device))

    noise = NoiseLayers(autoencoder, seed=config.seed + step)
    embedder = raw_model.embedder
    sampling_t = embedder.inference_timesteps().to(device)
    bar = tqdm(total=config.max_steps, initial=step, desc="watermark", disable=not progress)
    running: dict[str, list[float]] = {}
    while step < config.max_steps and time.monotonic() - started < budget_s:
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
        step += 1
        accuracy = float(((logits > 0) == (bits > 0.5)).float().mean())
        for key, value in (("loss", loss.item()), ("acc", accuracy), ("psnr", float(psnr(marked.detach(), photo).mean()))):
            running.setdefault(key, []).append(value)
        running.setdefault(f"acc_{attack}", []).append(accuracy)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{accuracy:.3f}", rms=f"{embedder.residual_rms:.4f}")
        if step % config.log_every == 0:
            row = {key: round(float(np.mean(values)), 4) for key, values in running.items()}
            write({"stage": "watermark", "step": step, "rms": round(embedder.residual_rms, 5), **row})
            running = {}
        if step % config.eval_every == 0:
            model.eval()
            embedder.residual_rms = raw_model.config.residual_rms
            write({"stage": "eval", "step": step, **{k: round(v, 4) for k, v in evaluate(raw_model, val).items()}})
        if time.monotonic() - last_save > config.checkpoint_minutes * 60:
            save()
            last_save = time.monotonic()
    bar.close()
    embedder.residual_rms = raw_model.config.residual_rms
    save()
    model.eval()
    write({"stage": "final", "step": step, **{k: round(v, 4) for k, v in evaluate(raw_model, val).items()}})
    log.close()
    if export is not None:
        raw_model.save(export)
    return raw_model


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the photoshield watermark embedder and decoder.")
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"),
                        help="folder written by tools/fetch_training_photos.py (train/ and heldout/)")
    parser.add_argument("--out", type=Path, default=Path("runs/watermark"), help="checkpoint and metrics folder")
    parser.add_argument("--minutes", type=float, default=TrainConfig.minutes, help="wall-clock budget, in total")
    parser.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps,
                        help="steps with mild noise only, at the start")
    parser.add_argument("--rms-start", type=float, default=TrainConfig.rms_start,
                        help="residual RMS at the start, annealed to the model's budget")
    parser.add_argument("--rms-anneal-steps", type=int, default=TrainConfig.rms_anneal_steps)
    parser.add_argument("--rms-final", type=float, help="the shipped residual RMS (default: the model config's, 0.008)")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, help="write the trained model (safetensors) here at the end")
    parser.add_argument("--init", type=Path, help="start a new run from this exported model (tensors of the same "
                        "name and shape are kept), e.g. photoshield/assets/weights/watermark_diffmark.safetensors")
    parser.add_argument("--message-skip-size", type=int, help="side of the message pattern (new runs; default 32)")
    parser.add_argument("--decoder-linear-size", type=int, help="side of the decoder's linear read-out (new runs; default 32)")
    parser.add_argument("--export-only", action="store_true", help="export the checkpoint in --out without training")
    parser.add_argument("--whiten", action="store_true", help="whiten the decoder's read-out (64 px) before exporting "
                        "(photoshield.watermark.whiten with its defaults: the shipped model's last step, ~20 min)")
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
        from ..models.registry import safetensors_metadata

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
        from .whiten import whiten_from_photos

        model = whiten_from_photos(model.cpu().eval(), whiten_on)  # the shipped recipe's settings
    model.save(path)


if __name__ == "__main__":
    main()
