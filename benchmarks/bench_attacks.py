"""Throughput of each attack in the ``standard`` grid (plus jpeg-diff): images per second.

    python benchmarks/bench_attacks.py [--size 512] [--batch 4] [--repeats 5] [--grid standard] [--threads N]

Times ``attack(images)`` on a random-texture batch (median of ``repeats`` runs after one
warm-up) on CPU, or on CUDA with ``--device cuda``. Writes benchmarks/results/attacks_throughput.json (stamped).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import add_results_argument, write_result
from photoshield import attacks


def test_batch(size: int, batch: int, device: torch.device) -> torch.Tensor:
    """Smooth random texture plus gradients: codecs behave as on photos, not as on white noise."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 3, size // 16, size // 16, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    image = image + 0.05 * torch.randn(image.shape, generator=generator)
    return image.clamp(0, 1).to(device)


def time_attack(attack: attacks.Attack, images: torch.Tensor, repeats: int) -> float:
    """Median seconds per call after one warm-up call."""
    def once() -> float:
        if images.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            attack(images)
        if images.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grid", default="standard", choices=attacks.grid_names())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_results_argument(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = test_batch(args.size, args.batch, device)
    suite = attacks.grid(args.grid) + [attacks.get("jpeg-diff", quality=75)]
    print(f"{args.grid} grid + jpeg-diff, {args.batch} x 3 x {args.size} x {args.size}, device {device}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'attack':<36} {'ms/batch':>10} {'images/s':>10}")
    rows = []
    for attack in suite:
        seconds = time_attack(attack, images, args.repeats)
        print(f"{attack.describe():<36} {seconds * 1000:>10.1f} {args.batch / seconds:>10.1f}")
        rows.append({"attack": attack.describe(), "seconds_per_batch": seconds})
    lines = [f"The `{args.grid}` grid and `jpeg-diff` on a batch of {args.batch} random-texture images of "
             f"{args.size} x {args.size}, median of {args.repeats} calls after a warm-up.", "",
             "| attack | ms / batch | images / s |", "|---|---|---|"]
    lines += [f"| `{row['attack']}` | {1000 * row['seconds_per_batch']:.1f} | {args.batch / row['seconds_per_batch']:.1f} |"
              for row in rows]
    write_result("attacks_throughput", "\n".join(lines), args.results_dir, device, size=args.size, batch=args.batch,
                 grid=args.grid, rows=rows)


if __name__ == "__main__":
    main()
