"""A whitened read-out for the watermark decoder, built in closed form, against the shipped one.

    python benchmarks/bench_watermark_whitening.py [--photos runs/watermark/photos] [--limit 20]
        [--strengths 0.5 1] [--through-autoencoder] [--alpha 64] [--shrink 1e-4] [--gain 2] [--save CKPT]

The shipped decoder reads its bits through the linear read-out alone (its CNN's logits barely move,
``bench_watermark_refine.py --parts decoder``), so logits = W f(x) + b, with f the high-passed 32 x 32
copy. The photo's own f(x) leaks into every bit (host interference). The read-out that best rejects it
is W' = W (S_host + alpha S_ae + shrink * mean-variance * I)^-1: the host covariance S_host and the
autoencoder round trip's error S_ae are measured on random crops of the *training* photos, W' rows keep
W's norms times ``gain``, the bias centres the host mean, and the embedder's message pattern becomes W''s
adjoint (the 32 x 32 pattern that moves each bit's logit most per unit of energy). No training: a minute
of statistics. Both models are then measured the same way on the held-out photos: mean PSNR and bit
accuracy (clean, real JPEG 50, the autoencoder round trip) after the default 60-step refinement.
``--save`` writes the whitened model as a checkpoint that every other script takes with ``--model``.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def decoder_input(model, images: torch.Tensor) -> torch.Tensor:
    """The decoder's ``size`` copy in [-1, 1], which both of its branches read."""
    from photoshield.image import resize_to

    return resize_to(images, (model.decoder.size,) * 2) * 2 - 1


def features(model, images: torch.Tensor) -> torch.Tensor:
    """What the decoder's linear read-out sees: the high-passed ``linear_size`` copy, flattened."""
    from photoshield.image import resize_to

    decoder = model.decoder
    x = decoder_input(model, images)
    small = resize_to(x, (decoder.linear_size, decoder.linear_size))
    return (small - F.avg_pool2d(small, 5, stride=1, padding=2, count_include_pad=False)).flatten(1)


def statistics(model, autoencoder, folder: Path, crops_per_photo: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Host mean and covariance of the features, the autoencoder's error second moment, and the CNN's mean logits."""
    from tqdm import tqdm

    from bench_watermark_peers import random_crop
    from photoshield.io import read_image

    files = sorted((folder / "train").glob("*.png"))
    if not files:
        raise SystemExit(f"no training photos under {folder}/train: run python tools/fetch_training_photos.py")
    rng = random.Random(seed)
    host, errors, cnn = [], [], []
    decoder = model.decoder
    with torch.no_grad():
        for path in tqdm(files, desc="feature statistics"):
            image = read_image(path)
            for index in range(crops_per_photo):
                crop = random_crop(image, rng, min_side=128)
                host.append(features(model, crop))
                if index < 2:
                    errors.append(features(model, autoencoder(crop)) - host[-1])
                if index == 0:
                    cnn.append(decoder.head(decoder.features(decoder_input(model, crop)))[0])
    host_all, error_all = torch.cat(host).double(), torch.cat(errors).double()
    return {"mean": host_all.mean(0), "host": torch.cov(host_all.T), "ae": error_all.T @ error_all / len(error_all),
            "cnn": torch.stack(cnn).mean(0)}


def whitened(model, stats: dict[str, torch.Tensor], alpha: float, shrink: float, gain: float):
    """A copy of ``model`` with the whitened read-out and the embedder's message pattern matched to it."""
    new = copy.deepcopy(model)
    weight = model.decoder.linear.weight.detach().double()
    dim = weight.shape[1]
    total = stats["host"] + alpha * stats["ae"] + shrink * torch.trace(stats["host"]) / dim * torch.eye(dim, dtype=torch.float64)
    rows = torch.linalg.solve(total, weight.T).T
    rows = rows * weight.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True)
    new.decoder.linear.weight.data = (gain * rows).float()
    new.decoder.linear.bias.data = -(gain * rows @ stats["mean"]).float() - stats["cnn"].float()

    side = model.config.message_skip_size
    pattern = torch.zeros(rows.shape[0], 3, side, side, requires_grad=True)
    upsampled = F.interpolate(pattern, size=(model.config.size,) * 2, mode="bilinear", align_corners=False)
    (adjoint,) = torch.autograd.grad((features(model, upsampled) * rows.float()).sum(), pattern)
    skip = model.embedder.message_skip
    new.embedder.message_skip.weight.data = adjoint.flatten(1).T * skip.weight.norm() / adjoint.norm()
    new.embedder.message_skip.bias.data.zero_()
    return new


def measure(label: str, model, autoencoder, photos: list[torch.Tensor], strengths: list[float], through: bool) -> None:
    """One table row per strength: PSNR and bit accuracy (mean, minimum) after the default refinement."""
    from photoshield import attacks
    from photoshield.evaluate.metrics import psnr
    from photoshield.watermark import embed, payload

    reads = {"clean": lambda x: x, "JPEG 50": attacks.get("jpeg", quality=50),
             "autoencoder": autoencoder}
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
    parser.add_argument("--model", default="watermark-diffmark")
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--through-autoencoder", action="store_true", help="refine through the round trip too")
    parser.add_argument("--alpha", type=float, default=64.0, help="weight of the autoencoder's error")
    parser.add_argument("--shrink", type=float, default=1e-4, help="ridge, in units of the mean host variance")
    parser.add_argument("--gain", type=float, default=2.0, help="read-out row norms relative to the shipped ones")
    parser.add_argument("--save", type=Path, help="write the whitened model here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from bench_watermark_peers import held_out
    from photoshield import attacks, models
    from photoshield.watermark import load

    model = load(args.model, device="cpu")
    autoencoder = attacks.get("vae", model=models.load("autoencoder-small", device="cpu"))
    candidate = whitened(model, statistics(model, autoencoder, args.photos), args.alpha, args.shrink, args.gain)
    if args.save:
        candidate.save(args.save)
        print(f"wrote {args.save}")
    photos, described = held_out(args.photos, args.limit)
    print(f"\n### Shipped vs whitened read-out on {described}: bit accuracy % (minimum)"
          + (", refined through the autoencoder" if args.through_autoencoder else "") + "\n")
    print("| read-out | strength | PSNR | clean | JPEG 50 | autoencoder | s / photo |\n|---|---|---|---|---|---|---|")
    for label, each in (("shipped", model), (f"whitened (alpha {args.alpha:g}, shrink {args.shrink:g}, gain {args.gain:g})", candidate)):
        measure(label, each, autoencoder, photos, args.strengths, args.through_autoencoder)


if __name__ == "__main__":
    main()
