"""The whitened read-out (``photoshield.watermark.readout``, measured by ``training.whiten_watermark``) against an unwhitened one, on held-out photos.

    python benchmarks/bench_watermark_whitening.py [--model watermark-diffmark]
        [--photos runs/watermark/photos] [--limit 20] [--skip 0] [--strengths 0.5 1] [--through-autoencoder]
        [--side 64] [--crops 12000] [--error-every 4] [--alpha 64 ...] [--shrink 1e-3 ...] [--gain 2 ...]
        [--stats CACHE] [--save CKPT] [--skip-start]

The decoder reads its bits through its linear read-out, logits = W f(x) + b; ``whiten`` replaces W by
W (S_host + alpha S_ae + ridge)^-1 from statistics of random crops of the *training* photos
(``tools/fetch_training_photos.py``) and moves the embedder's message pattern to the new read-out's
adjoint. The defaults are the shipped recipe's.

The start: with an unwhitened checkpoint (one training exported) as ``--model``, that model (``--side``:
its pattern and read-out resampled to a finer grid first; 0 keeps them). With the shipped, whitened
``watermark-diffmark`` (the default), its read-out undone: W = W' (S_host + alpha S_ae + ridge) with the
recorded settings, the row norms divided by the gain, the bias centred and the message pattern matched to
W as ``whiten`` matches it; whitening that start with the same settings gives back the shipped read-out.
Both are measured the same way on the held-out photos at native sizes: mean PSNR and bit accuracy (clean,
real JPEG 50, the autoencoder round trip; mean and worst photo) after the default refinement. ``--save``
writes the whitened model for every other script's ``--model``; ``--stats`` caches the statistics so a
sweep of settings measures them once. Writes benchmarks/results/watermark_whitening.json (stamped).
"""

from __future__ import annotations

# Marks are embedded unbound (bind=False) so that the bits read compare with payload.encode(message, key):
# binding only changes which keystream scrambles the codeword, not how well the decoder reads it.

import argparse
import copy
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_results_argument, write_result  # noqa: E402
from photoshield.watermark.readout import DEFAULT_ALPHA, DEFAULT_GAIN, DEFAULT_SHRINK  # noqa: E402
from training.whiten_watermark import DEFAULT_CROPS, DEFAULT_ERROR_EVERY, DEFAULT_SIDE  # noqa: E402


def unwhitened(model, stats, alpha: float, shrink: float, gain: float):
    """A copy of a whitened ``model`` whose read-out is W = W' (S_host + alpha S_error + ridge), rows at |W'| / gain,
    the bias centred on the photos' mean and the message pattern W's adjoint: ``whiten`` of it with the same
    statistics and settings gives W' back."""
    import torch.nn.functional as F

    new = copy.deepcopy(model)
    new.config.extra = {key: value for key, value in new.config.extra.items() if key != "whitened"}
    weight = model.decoder.linear.weight.detach().double().cpu()
    dim = weight.shape[1]
    ridge = shrink * torch.trace(stats.host) / dim
    rows = weight @ (stats.host + alpha * stats.error + ridge * torch.eye(dim, dtype=torch.float64))
    rows = rows * (weight.norm(dim=1, keepdim=True) / gain) / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    linear = new.decoder.linear
    linear.weight.data = rows.to(linear.weight)
    linear.bias.data = (-(rows @ stats.mean) - stats.cnn).to(linear.bias)
    skip = new.embedder.message_skip
    if skip is not None:  # the pattern that moves each bit's logit most per unit of energy, as whiten() sets it
        side, size = new.config.message_skip_size, new.config.size
        pattern = torch.zeros(rows.shape[0], 3, side, side, requires_grad=True)
        with torch.enable_grad():
            features = new.decoder.linear_features(F.interpolate(pattern, size=(size, size), mode="bilinear",
                                                                 align_corners=False))
            (adjoint,) = torch.autograd.grad((features * rows.to(features)).sum(), pattern)
        adjoint = adjoint.flatten(1).T
        skip.weight.data = (adjoint * skip.weight.norm() / adjoint.norm()).to(skip.weight)
        skip.bias.data.zero_()
    return new


def measure(label: str, model, autoencoder, photos: list[torch.Tensor], strengths: list[float], through: bool) -> list[str]:
    """One table row per strength: PSNR and bit accuracy (mean, minimum) after the default refinement."""
    from photoshield import attacks
    from photoshield.metrics import psnr
    from photoshield.watermark import embed, payload

    reads = {"clean": lambda x: x, "JPEG 50": attacks.get("jpeg", quality=50), "autoencoder": autoencoder}
    lines = []
    for strength in strengths:
        quality, accuracy, started = [], {read: [] for read in reads}, time.perf_counter()
        for index, photo in enumerate(photos):
            message = f"ID-{index:05d}"
            marked = embed(photo, message, key="bench", strength=strength, model=model, bind=False,
                           refine_through=(autoencoder,) if through else ())
            quality.append(float(psnr(marked, photo)))
            bits = payload.encode(message, key="bench")
            with torch.no_grad():
                for read, attack in reads.items():
                    accuracy[read].append(float(((model.decode(attack(marked)) > 0).long()[0] == bits).float().mean()))
        cells = " | ".join(f"{100 * np.mean(v):.1f} ({100 * np.min(v):.1f})" for v in accuracy.values())
        lines.append(f"| {label} | {strength:g} | {np.mean(quality):.2f} dB | {cells} | "
                     f"{(time.perf_counter() - started) / len(photos):.2f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="watermark-diffmark",
                        help="registry name or checkpoint: a whitened model (its read-out is undone for the start) "
                        "or one as training exported it")
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
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from bench_watermark_peers import held_out
    from photoshield import attacks, models
    from photoshield.watermark import load
    from photoshield.watermark.readout import FeatureStatistics, resampled, whiten
    from training.whiten_watermark import photo_statistics

    model = load(args.model, device="cpu")
    recorded = model.config.extra.get("whitened")  # the settings a whitened model was made with
    if recorded and args.side and args.side != model.config.decoder_linear_size:
        parser.error(f"--side {args.side}: {args.model} is whitened at {model.config.decoder_linear_size} px; "
                     "use --side 0 or that side")
    start = model if recorded or not args.side else resampled(model, args.side)
    if args.stats and args.stats.exists():
        stats = FeatureStatistics(**torch.load(args.stats, weights_only=True))
    else:  # the read-out's features and the CNN do not depend on W: the same statistics serve both
        stats = photo_statistics(start, args.photos, args.crops, error_every=args.error_every)
        if args.stats:
            torch.save(dataclasses.asdict(stats), args.stats)
    if recorded:
        start = unwhitened(model, stats, recorded["alpha"], recorded["shrink"], recorded["gain"])
    start_label = (f"unwhitened (the read-out of {args.model} undone)" if recorded else f"start ({args.model})")
    settings = list(itertools.product(args.alpha, args.shrink, args.gain))
    if args.save and len(settings) > 1:
        parser.error("--save needs one alpha, one shrink and one gain")
    autoencoder = attacks.get("vae", model=models.load("autoencoder-small", device="cpu"))
    photos, described = held_out(args.photos, args.skip + args.limit)
    photos = photos[args.skip:]
    described = f"{described} (from number {args.skip + 1})" if args.skip else described
    heading = (f"{args.model} with and without the whitened read-out on {described} at native sizes, after the default "
               "refinement" + (" through the autoencoder" if args.through_autoencoder else "") + ": mean PSNR, bit "
               f"accuracy % (worst photo); statistics from {stats.count} training crops.")
    lines = [heading, "", "| read-out | strength | PSNR | clean | JPEG 50 | autoencoder | s / photo |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines))
    if not args.skip_start:
        lines += measure(start_label, start, autoencoder, photos, args.strengths, args.through_autoencoder)
    for alpha, shrink, gain in settings:
        candidate = whiten(start, stats, alpha, shrink, gain)
        if args.save:
            candidate.save(args.save)
            print(f"wrote {args.save}")
        label = (f"whitened {start.config.decoder_linear_size} px (alpha {alpha:g}, shrink {shrink:g}, "
                 f"gain {gain:g}, {stats.count} crops)")
        lines += measure(label, candidate, autoencoder, photos, args.strengths, args.through_autoencoder)
    write_result("watermark_whitening", "\n".join(lines), args.results_dir, model=str(args.model),
                 settings=[list(s) for s in settings], strengths=args.strengths)


if __name__ == "__main__":
    main()
