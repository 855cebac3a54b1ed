"""How fast the watermark decoder starts to read bits: the CNN alone against the CNN plus its linear read-out.

    python benchmarks/bench_watermark_decoder_start.py [--steps 300] [--rms 0.08]

A decoder and a learned 3 x 32 x 32 message pattern (the embedder's skip path, alone) are trained
together on random crops of the training photos (``runs/watermark/photos``), the pattern added at a
fixed RMS with the perceptual mask as ``embed`` adds it; bit accuracy of each batch, every 25 steps.
This is the start of training that decides whether a CPU run learns at all. Writes
benchmarks/results/watermark_decoder_start.json (stamped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_results_argument, write_result  # noqa: E402


def run(linear_size: int, args: argparse.Namespace) -> list[tuple[int, float]]:
    from photoshield.image import resize_to
    from training.loop import PhotoCrops
    from photoshield.watermark.model import WatermarkDecoder, add_residual

    torch.manual_seed(0)
    decoder = WatermarkDecoder(96, 128, (24, 48, 64, 96), linear_size)
    pattern = torch.nn.Linear(96, 3 * 32 * 32)
    data = PhotoCrops(args.photos, 256, "train", seed=0)
    optimizer = torch.optim.AdamW([*decoder.parameters(), *pattern.parameters()], lr=1e-3)
    curve = []
    for step in range(args.steps + 1):
        photo = resize_to(data.batch(8), (192, 192))
        bits = torch.randint(0, 2, (8, 96)).float()
        residual = F.interpolate(pattern(bits * 2 - 1).view(8, 3, 32, 32), size=(128, 128), mode="bilinear")
        residual = args.rms * residual / residual.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        logits = decoder(add_residual(photo, residual))
        loss = F.binary_cross_entropy_with_logits(logits, bits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            curve.append((step, float(((logits > 0) == (bits > 0.5)).float().mean())))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rms", type=float, default=0.08, help="residual RMS (0.08 is about 24 dB)")
    parser.add_argument("--threads", type=int, default=1)
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    curves = {"CNN": run(0, args), "CNN + linear read-out": run(32, args)}
    lines = [f"Bit accuracy of each training batch (8 crops), the message pattern alone at RMS {args.rms:g}:", "",
             "| step | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for index, (step, _) in enumerate(curves["CNN"]):
        lines.append(f"| {step} | " + " | ".join(f"{100 * curve[index][1]:.1f} %" for curve in curves.values()) + " |")
    text = "\n".join(lines)
    print(text)
    write_result("watermark_decoder_start", text, args.results_dir, rms=args.rms, curves=curves)


if __name__ == "__main__":
    main()
