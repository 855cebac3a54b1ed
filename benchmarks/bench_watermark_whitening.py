"""The whitened read-out (``photoshield.watermark.readout``, measured by ``training.whiten_watermark``) against the trained model it starts from, on held-out photos.

    git show 6982c50:photoshield/assets/weights/watermark_diffmark.safetensors > runs/watermark/trained.safetensors
    python benchmarks/bench_watermark_whitening.py [--model runs/watermark/trained.safetensors]
        [--photos runs/watermark/photos] [--limit 20] [--skip 0] [--strengths 0.5 1] [--through-autoencoder]
        [--side 64] [--crops 12000] [--error-every 4] [--alpha 64 ...] [--shrink 1e-3 ...] [--gain 2 ...]
        [--stats CACHE] [--save CKPT] [--skip-start]

The decoder reads its bits through its linear read-out, logits = W f(x) + b; ``whiten`` replaces W by
W (S_host + alpha S_ae + ridge)^-1 from statistics of random crops of the *training* photos and moves the
embedder's message pattern to the new read-out's adjoint (``--side``: resample both to a finer grid
first; 0 keeps the trained one). The defaults are the shipped recipe's. The start is the model training
exported, before whitening (the shipped ``watermark-diffmark`` is whitened already; the command above
takes the trained export from git history). Both are then measured the same way on the held-out photos
at native sizes: mean PSNR and bit accuracy (clean, real JPEG 50, the autoencoder round trip; mean and
worst photo) after the default refinement. ``--save`` writes the whitened model for every other
script's ``--model``; ``--stats`` caches the statistics so a sweep of settings measures them once.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photoshield.watermark.readout import DEFAULT_ALPHA, DEFAULT_GAIN, DEFAULT_SHRINK  # noqa: E402
from training.whiten_watermark import DEFAULT_CROPS, DEFAULT_ERROR_EVERY, DEFAULT_SIDE  # noqa: E402


def measure(label: str, model, autoencoder, photos: list[torch.Tensor], strengths: list[float], through: bool) -> None:
    """One table row per strength: PSNR and bit accuracy (mean, minimum) after the default refinement."""
    from photoshield import attacks
    from photoshield.metrics import psnr
    from photoshield.watermark import embed, payload

    reads = {"clean": lambda x: x, "JPEG 50": attacks.get("jpeg", quality=50), "autoencoder": autoencoder}
    for strength in strengths:
        quality, accuracy, started = [], {read: [] for read in reads}, time.perf_counter()
        for index, photo in enumerate(photos):
            message = f"ID-{index:05d}"
            marked = embed(photo, message, key="bench", strength=strength, model=model,
                           refine_through=(autoencoder,) if through else ())
            quality.append(float(psnr(marked, photo)))
            bits = payload.encode(message, key="bench")
            with torch.no_grad():
                for read, attack in reads.items():
                    accuracy[read].append(float(((model.decode(attack(marked)) > 0).long()[0] == bits).float().mean()))
        cells = " | ".join(f"{100 * np.mean(v):.1f} ({100 * np.min(v):.1f})" for v in accuracy.values())
        print(f"| {label} | {strength:g} | {np.mean(quality):.2f} dB | {cells} | "
              f"{(time.perf_counter() - started) / len(photos):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("runs/watermark/trained.safetensors"),
                        help="the trained model before whitening (see the module docstring)")
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--skip", type=int, default=0, help="leave out the first held-out photos (e.g. the peer table's 10)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--through-autoencoder", action="store_true", help="refine through the round trip too")
    parser.add_argument("--side", type=int, default=DEFAULT_SIDE, help="resample the pattern and read-out to this "
                        "side before whitening (0: keep)")
    parser.add_argument("--crops", type=int, default=DEFAULT_CROPS, help="training crops for the statistics")
    parser.add_argument("--error-every", type=int, default=DEFAULT_ERROR_EVERY,
                        help="autoencoder round trip on every n-th batch")
    parser.add_argument("--alpha", type=float, nargs="+", default=[DEFAULT_ALPHA], help="weight of the autoencoder's error")
    parser.add_argument("--shrink", type=float, nargs="+", default=[DEFAULT_SHRINK],
                        help="ridge, in units of the mean host variance")
    parser.add_argument("--gain", type=float, nargs="+", default=[DEFAULT_GAIN],
                        help="read-out row norms relative to the start's")
    parser.add_argument("--stats", type=Path, help="cache of the statistics: read when it exists, else written")
    parser.add_argument("--save", type=Path, help="write the whitened model here")
    parser.add_argument("--skip-start", action="store_true", help="measure the whitened model only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from bench_watermark_peers import held_out
    from photoshield import attacks, models
    from photoshield.watermark import load
    from photoshield.watermark.readout import FeatureStatistics, resampled, whiten
    from training.whiten_watermark import photo_statistics

    if not args.model.is_file():
        parser.error(f"{args.model}: no trained (unwhitened) model there; get it with: git show "
                     f"6982c50:photoshield/assets/weights/watermark_diffmark.safetensors > {args.model}")
    model = load(args.model, device="cpu")
    start = resampled(model, args.side) if args.side else model
    if args.stats and args.stats.exists():
        stats = FeatureStatistics(**torch.load(args.stats, weights_only=True))
    else:
        stats = photo_statistics(start, args.photos, args.crops, error_every=args.error_every)
        if args.stats:
            torch.save(dataclasses.asdict(stats), args.stats)
    settings = list(itertools.product(args.alpha, args.shrink, args.gain))
    if args.save and len(settings) > 1:
        parser.error("--save needs one alpha, one shrink and one gain")
    autoencoder = attacks.get("vae", model=models.load("autoencoder-small", device="cpu"))
    photos, described = held_out(args.photos, args.skip + args.limit)
    photos = photos[args.skip:]
    described = f"{described} (from number {args.skip + 1})" if args.skip else described
    print(f"\n### {args.model} vs its whitened read-out on {described}: bit accuracy % (minimum)"
          + (", refined through the autoencoder" if args.through_autoencoder else "") + "\n")
    print("| read-out | strength | PSNR | clean | JPEG 50 | autoencoder | s / photo |\n|---|---|---|---|---|---|---|")
    if not args.skip_start:
        measure("start", model, autoencoder, photos, args.strengths, args.through_autoencoder)
    for alpha, shrink, gain in settings:
        candidate = whiten(start, stats, alpha, shrink, gain)
        if args.save:
            candidate.save(args.save)
            print(f"wrote {args.save}")
        label = (f"whitened {start.config.decoder_linear_size} px (alpha {alpha:g}, shrink {shrink:g}, "
                 f"gain {gain:g}, {stats.count} crops)")
        measure(label, candidate, autoencoder, photos, args.strengths, args.through_autoencoder)


if __name__ == "__main__":
    main()
