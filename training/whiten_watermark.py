"""Whiten the watermark decoder's read-out on the training photos (the shipped model's last step).

Measures :class:`photoshield.watermark.readout.FeatureStatistics` on random crops of the training photos
(the autoencoder error through ``autoencoder-small``) and writes the model with its read-out whitened in
closed form (:func:`photoshield.watermark.readout.whiten`; the shipped recipe: about 20 minutes on 2 cores).

    python -m training.whiten_watermark MODEL OUT [--photos runs/watermark/photos] [--side 64] [--crops 12000]

``python -m training.train_watermark ... --whiten`` runs it as the last step of training.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import torch

from photoshield.attacks import get
from photoshield.models import load
from photoshield.watermark import load as load_watermark
from photoshield.watermark.model import WatermarkModel
from photoshield.watermark.readout import (
    DEFAULT_ALPHA,
    DEFAULT_GAIN,
    DEFAULT_SHRINK,
    FeatureStatistics,
    feature_statistics,
    resampled,
    whiten,
)
from training.loop import PhotoCrops

__all__ = ["photo_crops", "photo_statistics", "whiten_from_photos"]

DEFAULT_SIDE, DEFAULT_CROPS, DEFAULT_ERROR_EVERY = 64, 12000, 4  # the shipped model's recipe (about 20 minutes on 2 cores)


def photo_crops(photos: str | Path, count: int, side: int = 256, seed: int = 0, batch: int = 16) -> Iterable[torch.Tensor]:
    """``count`` random crops of the training photos (the ones training sees), in batches of ``batch``."""
    crops = PhotoCrops(photos, side, "train", seed=seed)
    for start in range(0, count, batch):
        yield crops.batch(min(batch, count - start))


def photo_statistics(model: WatermarkModel, photos: str | Path, crops: int = DEFAULT_CROPS, seed: int = 0,
                     error_every: int = DEFAULT_ERROR_EVERY, progress: bool = True) -> FeatureStatistics:
    """:class:`FeatureStatistics` on ``crops`` random crops of ``photos``/train, the error through ``autoencoder-small``."""
    device = next(model.parameters()).device
    autoencoder = get("vae", model=load("autoencoder-small", device=device))
    return feature_statistics(model, photo_crops(photos, crops, seed=seed), autoencoder, error_every, progress)


def whiten_from_photos(model: WatermarkModel, photos: str | Path, side: int | None = DEFAULT_SIDE,
                       crops: int = DEFAULT_CROPS, alpha: float = DEFAULT_ALPHA, shrink: float = DEFAULT_SHRINK,
                       gain: float = DEFAULT_GAIN, seed: int = 0, error_every: int = DEFAULT_ERROR_EVERY,
                       progress: bool = True) -> WatermarkModel:
    """The shipped recipe: resample to ``side`` (None: keep), measure :func:`photo_statistics`, ``whiten``."""
    if side and side != model.config.decoder_linear_size:
        model = resampled(model, side)
    stats = photo_statistics(model, photos, crops, seed, error_every, progress)
    return whiten(model, stats, alpha, shrink, gain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="watermark checkpoint (or registry name) as training exported it")
    parser.add_argument("out", type=Path, help="where to write the whitened checkpoint (safetensors)")
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--side", type=int, default=DEFAULT_SIDE, help="resample the message pattern and read-out "
                        "to this side first (0: keep)")
    parser.add_argument("--crops", type=int, default=DEFAULT_CROPS, help="random training crops for the statistics")
    parser.add_argument("--error-every", type=int, default=DEFAULT_ERROR_EVERY,
                        help="autoencoder round trip on every n-th batch of 16 crops")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="weight of the autoencoder's error")
    parser.add_argument("--shrink", type=float, default=DEFAULT_SHRINK, help="ridge, in units of the mean variance")
    parser.add_argument("--gain", type=float, default=DEFAULT_GAIN, help="read-out row norms relative to the old ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_watermark(args.model, device="cpu")
    whitened = whiten_from_photos(model, args.photos, args.side, args.crops, args.alpha, args.shrink, args.gain,
                                  args.seed, args.error_every)
    whitened.save(args.out)
    print(f"wrote {args.out} (read-out {whitened.config.decoder_linear_size} px, "
          f"{whitened.config.extra['whitened']})")


if __name__ == "__main__":
    main()
