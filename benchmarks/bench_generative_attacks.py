"""What the model-free face swap and the bundled autoencoder do to the bundled photos.

- Face swap (``faceswap``, default settings, ``source="auto"``): the independent SFace judge's
  similarity between each single-face bundled photo and its swapped copy (same person at or
  above the judge's threshold, 0.363).
- Autoencoder round trip (``vae`` with ``autoencoder-small``): PSNR on the bundled scenes at
  long side 256 (none is a training photo), next to bicubic 4x down and up as a reference.

    python benchmarks/bench_generative_attacks.py

Writes benchmarks/results/generative_attacks.json (stamped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: training/

from photoshield import attacks, data, models  # noqa: E402
from photoshield.metrics import psnr  # noqa: E402
from photoshield.image import quantize, resize_to, working_size  # noqa: E402
from training.train_autoencoder import evaluate_scenes  # noqa: E402
from _common import add_results_argument, write_result  # noqa: E402

SINGLE_FACES = ("obama", "obama2", "biden", "einstein", "grace_hopper", "astronaut", "barbara")


def bicubic_4x(image: torch.Tensor) -> torch.Tensor:
    """Bicubic 4x down (antialiased) and back up: what a 4x-downsampling autoencoder has to beat."""
    small = F.interpolate(image, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)
    return quantize(F.interpolate(small, size=image.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    judge = models.load("face-judge-sface")
    print(f"face swap: SFace similarity to the original (same person >= {judge.threshold})")
    swaps = ["Face swap (`faceswap`, default settings): the SFace judge's cosine similarity between each single-face "
             f"bundled photo and its swapped copy (same person at or above {judge.threshold}).", "",
             "| photo | SFace similarity | swapped-in face |", "|---|---|---|"]
    below, rows = 0, {}
    for name in SINGLE_FACES:
        photo = data.sample(name)
        swap = attacks.get("faceswap", seed=0)
        similarity = judge.similarity(photo, swap(photo))
        below += similarity < judge.threshold
        source = swap.last_report['images'][0].get('source', '?')
        rows[name] = {"sface": similarity, "source": source}
        print(f"  {name:14s} {similarity:6.3f}   source {source}")
        swaps.append(f"| {name} | {similarity:.3f} | {source} |")
    print(f"  below the threshold: {below} of {len(SINGLE_FACES)}")
    swaps += ["", f"Below the threshold: {below} of {len(SINGLE_FACES)}."]

    scores = evaluate_scenes(models.load("autoencoder-small"))
    print("\nautoencoder-small round trip vs bicubic 4x, scenes at long side 256 (PSNR dB)")
    round_trip = ["`autoencoder-small` round trip (the `vae` attack) against bicubic 4x down and up, bundled scenes "
                  "at long side 256 (none is a training photo): PSNR dB.", "",
                  "| scene | autoencoder | bicubic 4x |", "|---|---|---|"]
    reference = []
    for name in data.samples("scenes"):
        image = data.sample(name)
        image = quantize(resize_to(image, working_size(*image.shape[-2:], 256)))
        reference.append(float(psnr(bicubic_4x(image), image)))
        print(f"  {name:16s} {scores['psnr_' + name]:6.2f}   bicubic {reference[-1]:6.2f}")
        round_trip.append(f"| {name} | {scores['psnr_' + name]:.2f} | {reference[-1]:.2f} |")
    print(f"  mean             {scores['scenes_psnr']:6.2f}   bicubic {sum(reference) / len(reference):6.2f}")
    round_trip.append(f"| **mean** | **{scores['scenes_psnr']:.2f}** | **{sum(reference) / len(reference):.2f}** |")
    write_result("generative_attacks", "\n".join(swaps + [""] + round_trip), args.results_dir, faceswap=rows,
                 autoencoder_psnr=scores, bicubic_psnr=dict(zip(data.samples("scenes"), reference)))


if __name__ == "__main__":
    main()
