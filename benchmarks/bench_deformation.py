"""How well UAD and its two baselines stop the real LiteMedSAM from cutting objects out of the bundled photos.

For every photo (scenes, then faces; ``--limit N`` takes the first N of each kind), prompts
are drawn on the clean photo (masks predicted from a grid of boxes; 3 boxes per mask, the
tight box plus two jittered ones; LiteMedSAM takes no point prompts). Each protection
(``uad``, ``mask`` = Attack-SAM logits, ``feature`` = untargeted feature cosine) runs at
epsilon 8/255 (preset ``standard``: differentiable-JPEG q75 expectation) through ``protect(method="deformation")``; the masks predicted on the
protected photo, and on its JPEG q75 copy, are compared with the clean masks: mIoU and
ASR@50 (share of prompts with IoU < 0.5). Prints a markdown table and writes
benchmarks/results/deformation.json (stamped). Usage::

    python benchmarks/bench_deformation.py [--limit 2] [--steps 40] [--epsilon 8] [--preset standard] [--segmenter sam-litemedsam]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

import photoshield.protect.deformation  # noqa: F401  (registers method="deformation")
from _common import add_results_argument, write_result
from photoshield import attacks, data
from photoshield.metrics import psnr
from photoshield.models.sam.prompts import (
    draw_prompts,
    predict_prompts,
    segmentation_agreement,
)
from photoshield.protect import protect
from photoshield.protect.deformation import resolve_segmenter

VARIANTS = ("uad", "mask", "feature")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N photos of each kind (scenes, faces)")
    parser.add_argument("--steps", type=int, default=40, help="final PGD steps (UAD: 40)")
    parser.add_argument("--epsilon", type=float, default=8.0, help="L_inf budget in /255")
    parser.add_argument("--deform-epochs", type=int, default=40)
    parser.add_argument("--segmenter", default="sam-litemedsam")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="standard", help="protect() preset; standard adds differentiable-JPEG q75 EOT")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    segmenter = resolve_segmenter(args.segmenter, "cpu")
    jpeg = attacks.get("jpeg", quality=75)
    names = [n for kind in ("scenes", "faces") for n in data.samples(kind)[: args.limit]]

    figures: dict[tuple[str, str], list[float]] = defaultdict(list)
    for name in names:
        photo = data.sample(name)
        prompts = draw_prompts(segmenter, photo)
        reference = predict_prompts(segmenter, photo, prompts)
        clean_jpeg = segmentation_agreement(segmenter, photo, jpeg(photo), prompts, reference)
        figures["clean", "miou"].append(1.0)
        figures["clean", "asr50"].append(0.0)
        figures["clean", "jpeg_miou"].append(clean_jpeg["miou"])
        figures["clean", "jpeg_asr50"].append(clean_jpeg["asr50"])
        print(f"{name} {tuple(photo.shape[-2:])}: {len(prompts.masks)} masks, {len(prompts)} prompts", flush=True)
        for variant in VARIANTS:
            started = time.perf_counter()
            result = protect(photo, method="deformation", segmenter=segmenter, variant=variant, epsilon=args.epsilon / 255,
                             steps=args.steps, preset=args.preset, deform_epochs=args.deform_epochs,
                             measure=False, progress=False)
            seconds = time.perf_counter() - started
            plain = segmentation_agreement(segmenter, photo, result.image, prompts, reference)
            lossy = segmentation_agreement(segmenter, photo, jpeg(result.image), prompts, reference)
            for key, value in (("miou", plain["miou"]), ("asr50", plain["asr50"]), ("jpeg_miou", lossy["miou"]),
                               ("jpeg_asr50", lossy["asr50"]), ("psnr", float(psnr(photo, result.image))), ("seconds", seconds)):
                figures[variant, key].append(value)
            print(f"  {variant}: mIoU {plain['miou']:.3f} ASR {plain['asr50']:.2f} | JPEG75 mIoU {lossy['miou']:.3f} "
                  f"ASR {lossy['asr50']:.2f} | {float(psnr(photo, result.image)):.1f} dB, {seconds:.0f} s", flush=True)

    lines = [f"Segmenter `{args.segmenter}`, {len(names)} photos ({', '.join(names)}) at native size, epsilon "
             f"{args.epsilon:g}/255, {args.steps} steps, preset `{args.preset}`, {args.deform_epochs} deformation epochs, "
             "box prompts drawn from the clean photo's masks.", "",
             "| protection | mIoU % | ASR@50 % | mIoU % after JPEG 75 | ASR@50 % after JPEG 75 | PSNR dB | s / photo |",
             "|---|---|---|---|---|---|---|"]
    for variant in ("clean",) + VARIANTS:
        row = {k: float(np.mean(v)) for (who, k), v in figures.items() if who == variant}
        psnr_cell = f"{row['psnr']:.1f}" if "psnr" in row else "-"
        seconds_cell = f"{row['seconds']:.0f}" if "seconds" in row else "-"
        lines.append(f"| {variant} | {100 * row['miou']:.1f} | {100 * row['asr50']:.1f} | {100 * row['jpeg_miou']:.1f} | "
                     f"{100 * row['jpeg_asr50']:.1f} | {psnr_cell} | {seconds_cell} |")
    text = "\n".join(lines)
    print("\n" + text)
    write_result("deformation", text, args.results_dir, photos=names, epsilon=args.epsilon, steps=args.steps,
                 preset=args.preset, figures={f"{who}:{key}": values for (who, key), values in figures.items()})


if __name__ == "__main__":
    main()
