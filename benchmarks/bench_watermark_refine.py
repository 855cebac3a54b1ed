"""What limits the watermark decoder, and what informed embedding (``refine``) buys, on the bundled photos.

    python benchmarks/bench_watermark_refine.py [--model watermark-diffmark] [--strengths 1 0.5]
        [--through-autoencoder] [--parts decoder refinement capacity] [--limit 21] [--threads 2]

Part 1, the decoder: for each photo, the spread (standard deviation over bits) of each decoder branch's
logits on the unmarked photo (the CNN and the linear read-out), and the mean shift the mark gives each
branch in the direction of its bits. A branch whose shift is ~0 reads nothing; logits that spread more
on the unmarked photo than the mark shifts them are host interference, the source of bit errors.

Part 2, refinement: mean PSNR and bit accuracy (clean, real JPEG 50, the ``autoencoder-small`` round
trip) without refinement, with the default 60 steps, and (``--through-autoencoder``, at the first
strength) refined through that round trip too.

Part 3, capacity (``--parts capacity``): for each photo, the smallest change to it that makes the decoder
read every bit right (its logits linearised in the image, which they are: the decoder reads a linear
map of it; a quadratic programme solved in its dual), as a PSNR. Above that PSNR no additive mark,
from any embedder, refined or not, can carry all 96 bits of that photo to this decoder.

Each part writes benchmarks/results/watermark_<decoder_branches|refinement|capacity>.json (stamped).
"""

from __future__ import annotations

# Marks are embedded unbound (bind=False) so that the bits read compare with payload.encode(message, key):
# binding only changes which keystream scrambles the codeword, not how well the decoder reads it.

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_results_argument, write_result  # noqa: E402


def emit(lines: list[str], text: str) -> None:
    """Print a line of a table as it is measured, and keep it for the results file."""
    print(text, flush=True)
    lines.append(text)


def branch_logits(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's two branches separately: CNN logits and linear read-out logits, (n_bits,) each."""
    decoder = model.decoder
    cnn = decoder.cnn_logits(images)[0]
    if decoder.linear is None:
        return cnn, torch.zeros_like(cnn)
    return cnn, decoder.linear(decoder.linear_features(images))[0]


def least_change_for_every_bit(model, photo: torch.Tensor, bits: torch.Tensor, margin: float = 0.0,
                               iterations: int = 3000) -> torch.Tensor:
    """The smallest (L2) change to ``photo`` that puts every bit's logit ``margin`` on its side.

    min |d|^2 subject to s_b (h_b + J_b d) >= margin, with h the unmarked photo's logits and J their
    Jacobian in the image; solved by projected gradient ascent on the dual (d = sum_b lambda_b s_b J_b,
    lambda >= 0). Any additive mark, from any embedder, with or without a perceptual mask, changes the
    photo at least this much to be read in full by this decoder.
    """
    change = torch.zeros_like(photo, requires_grad=True)
    logits = model.decoder(photo + change)[0]
    signs = bits.float() * 2 - 1
    signed = torch.stack([torch.autograd.grad(logits[b], change, retain_graph=True)[0].flatten() * signs[b]
                          for b in range(len(logits))])
    gram = signed @ signed.T
    need = margin - signs * logits.detach()
    step = 1.0 / torch.linalg.eigvalsh(gram).max()
    dual = torch.zeros_like(need)
    for _ in range(iterations):
        dual = (dual - step * (gram @ dual - need)).clamp_min(0)
    return (signed.T @ dual).view_as(photo)


def capacity(model, photos: dict[str, torch.Tensor], strengths: list[float]) -> str:
    """Part 3: the PSNR at which each photo can still carry every bit, against the PSNR of each strength."""
    from photoshield.metrics import psnr
    from photoshield.watermark import embed, payload

    lines: list[str] = []
    print("\n### Capacity: the highest PSNR at which the decoder can read every bit of the photo\n")
    emit(lines, "| photo | all bits fit up to | " + " | ".join(f"strength {s:g}" for s in strengths) + " |")
    emit(lines, "|---|---|" + "---|" * len(strengths))
    fits = {strength: 0 for strength in strengths}
    for index, (name, photo) in enumerate(photos.items()):
        message = f"ID-{index:05d}"
        bits = payload.encode(message, key="bench")
        change = least_change_for_every_bit(model, photo, bits)
        ceiling = float(-10 * torch.log10(change.pow(2).mean()))
        cells = []
        for strength in strengths:
            quality = float(psnr(embed(photo, message, key="bench", strength=strength, model=model, refine_steps=0, bind=False), photo))
            fits[strength] += ceiling >= quality
            cells.append(f"{quality:.1f} dB" + (" (fits)" if ceiling >= quality else ""))
        emit(lines, f"| {name} | {ceiling:.1f} dB | " + " | ".join(cells) + " |")
    emit(lines, "\nPhotos whose every bit fits: " + ", ".join(f"{fits[s]} of {len(photos)} at strength {s:g}" for s in strengths) + ".")
    return "\n".join(lines)


def branches(model, photos: dict[str, torch.Tensor]) -> str:
    """Part 1: each decoder branch's spread on the unmarked photo and the shift the mark gives it."""
    from photoshield.watermark import embed, payload

    lines: list[str] = []
    print("\n### The decoder's branches on unmarked photos and under the mark (strength 1, unrefined)\n")
    emit(lines, "| photo | CNN spread | CNN shift | linear spread | linear shift |\n|---|---|---|---|---|")
    with torch.no_grad():
        for index, (name, photo) in enumerate(photos.items()):
            bits = payload.encode(f"ID-{index:05d}", key="bench")
            signs = bits.float() * 2 - 1
            marked = embed(photo, f"ID-{index:05d}", key="bench", model=model, refine_steps=0, bind=False)
            host_cnn, host_linear = branch_logits(model, photo)
            mark_cnn, mark_linear = branch_logits(model, marked)
            emit(lines, f"| {name} | {host_cnn.std():.2f} | {(signs * (mark_cnn - host_cnn)).mean():.2f} | "
                 f"{host_linear.std():.2f} | {(signs * (mark_linear - host_linear)).mean():.2f} |")
    return "\n".join(lines)


def refinement(model, photos: dict[str, torch.Tensor], strengths: list[float], through_autoencoder: bool) -> str:
    """Part 2: PSNR and bit accuracy without and with refinement (and refined through the autoencoder)."""
    from photoshield import attacks, models
    from photoshield.metrics import psnr
    from photoshield.watermark import embed, payload

    autoencoder = attacks.get("vae", model=models.load("autoencoder-small", device="cpu"))
    reads = {"clean": lambda x: x, "JPEG 50": attacks.get("jpeg", quality=50), "autoencoder": autoencoder}
    variants = [(strength, steps, ()) for strength in strengths for steps in (0, 60)]
    if through_autoencoder:
        variants.append((strengths[0], 60, (autoencoder,)))
    lines: list[str] = []
    print(f"\n### Refinement on {len(photos)} bundled photos: mean PSNR, bit accuracy % (minimum)\n")
    emit(lines, "| strength | refinement | PSNR | " + " | ".join(reads) + " | s / photo |")
    emit(lines, "|---|---|---|" + "---|" * (len(reads) + 1))
    for strength, steps, through in variants:
        quality, accuracy, seconds = [], {read: [] for read in reads}, []
        for index, (name, photo) in enumerate(photos.items()):
            message = f"ID-{index:05d}"
            started = time.perf_counter()
            marked = embed(photo, message, key="bench", strength=strength, model=model, refine_steps=steps, bind=False,
                           refine_through=through)
            seconds.append(time.perf_counter() - started)
            quality.append(float(psnr(marked, photo)))
            bits = payload.encode(message, key="bench")
            with torch.no_grad():
                for read, attack in reads.items():
                    decoded = (model.decode(attack(marked)) > 0).long()[0]
                    accuracy[read].append(float((decoded == bits).float().mean()))
        label = "none" if steps == 0 else (f"{steps} steps" + (" through the autoencoder" if through else ""))
        cells = [f"{100 * np.mean(v):.1f} ({100 * np.min(v):.1f})" for v in accuracy.values()]
        emit(lines, f"| {strength:g} | {label} | {np.mean(quality):.2f} dB | " + " | ".join(cells) +
             f" | {np.mean(seconds):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="watermark-diffmark")
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--through-autoencoder", action="store_true")
    parser.add_argument("--parts", nargs="+", choices=("decoder", "refinement", "capacity"),
                        default=["decoder", "refinement"], help="which parts to run (capacity: ~2 s a photo)")
    parser.add_argument("--limit", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from photoshield import data
    from photoshield.watermark import load

    model = load(args.model, device="cpu")
    photos = {name: data.sample(name) for name in data.samples()[: args.limit]}

    described = f"The first {len(photos)} bundled photos ({', '.join(photos)}) at native size, model `{args.model}`."
    if "decoder" in args.parts:
        text = ("Spread: standard deviation over bits of each branch's logits on the unmarked photo; shift: the mean "
                "move the mark gives each branch towards its bits (strength 1, unrefined).\n\n" + branches(model, photos))
        write_result("watermark_decoder_branches", described + " " + text, args.results_dir, photos=list(photos))
    if "refinement" in args.parts:
        text = ("Mean PSNR and bit accuracy % (worst photo) without and with the refinement.\n\n"
                + refinement(model, photos, args.strengths, args.through_autoencoder))
        write_result("watermark_refinement", described + " " + text, args.results_dir, photos=list(photos))
    if "capacity" in args.parts:
        text = ("The highest PSNR at which the decoder can read every bit of the photo (the least change, solved as a "
                "quadratic programme), next to the PSNR of the unrefined mark at each strength.\n\n"
                + capacity(model, photos, args.strengths))
        write_result("watermark_capacity", described + " " + text, args.results_dir, photos=list(photos))


if __name__ == "__main__":
    main()
