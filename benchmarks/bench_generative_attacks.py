"""What the model-free face swap and the bundled autoencoder do to the bundled photos.

- Face swap (``faceswap``, default settings, ``source="auto"``): the independent SFace judge's
  similarity between each single-face bundled photo and its swapped copy (same person at or
  above the judge's threshold, 0.363).
- Autoencoder round trip (``vae`` with ``autoencoder-small``): PSNR on the bundled scenes at
  long side 256 (none is a training photo), next to bicubic 4x down and up as a reference.

    python benchmarks/bench_generative_attacks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: training/

from photoshield import attacks, data, models  # noqa: E402
from photoshield.metrics import psnr  # noqa: E402
from photoshield.image import quantize, resize_to, working_size  # noqa: E402
from training.train_autoencoder import evaluate_scenes  # noqa: E402

SINGLE_FACES = ("obama", "obama2", "biden", "einstein", "grace_hopper", "astronaut", "barbara")


def bicubic_4x(image: torch.Tensor) -> torch.Tensor:
    """Bicubic 4x down (antialiased) and back up: what a 4x-downsampling autoencoder has to beat."""
    small = F.interpolate(image, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)
    return quantize(F.interpolate(small, size=image.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1))


def main() -> None:
    torch.set_num_threads(2)
    judge = models.load("face-judge-sface")
    print(f"face swap: SFace similarity to the original (same person >= {judge.threshold})")
    below = 0
    for name in SINGLE_FACES:
        photo = data.sample(name)
        swap = attacks.get("faceswap", seed=0)
        similarity = judge.similarity(photo, swap(photo))
        below += similarity < judge.threshold
        print(f"  {name:14s} {similarity:6.3f}   source {swap.last_report['images'][0].get('source', '?')}")
    print(f"  below the threshold: {below} of {len(SINGLE_FACES)}")

    scores = evaluate_scenes(models.load("autoencoder-small"))
    print("\nautoencoder-small round trip vs bicubic 4x, scenes at long side 256 (PSNR dB)")
    reference = []
    for name in data.samples("scenes"):
        image = data.sample(name)
        image = quantize(resize_to(image, working_size(*image.shape[-2:], 256)))
        reference.append(float(psnr(bicubic_4x(image), image)))
        print(f"  {name:16s} {scores['psnr_' + name]:6.2f}   bicubic {reference[-1]:6.2f}")
    print(f"  mean             {scores['scenes_psnr']:6.2f}   bicubic {sum(reference) / len(reference):6.2f}")


if __name__ == "__main__":
    main()
