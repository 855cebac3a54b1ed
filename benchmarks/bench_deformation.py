"""Deformation protection judged by the segmenter it was computed on and by one it never saw (transfer).

Two real segmenters of different architectures: LiteMedSAM (TinyViT + SAM decoder, the registry's
``sam-litemedsam``) and ``sam-distilled-small`` (a convolutional encoder distilled from it, trained by
photoshield). Every photo (the first ``--limit`` scenes and faces, long side ``--max-side``) is protected
with each variant (``uad``, ``feature`` = untargeted feature cosine, ``mask`` = Attack-SAM logits) computed
on each segmenter in ``--protect-with``, plus random sign noise of the same budget, at epsilon 8/255
through ``protect(method="deformation")`` with its default steps for the preset. Each judge draws its own box
prompts on the clean photo (3 per mask: tight plus two jittered; neither model takes point prompts) and
compares its masks on the protected photo, and on its JPEG q75 copy, with its clean masks: mIoU and ASR@50
(share of prompts with IoU < 0.5); ASR@50 also after each of ``--purify`` (the cheap purifications of the
``robust`` preset). A row is white-box when the protection was computed on the judge.

Also printed: each segmenter's bare encoder forward+backward at its input size, next to the cost of a
protection step. Writes benchmarks/results/deformation.json (stamped). Usage::

    python benchmarks/bench_deformation.py [--limit 5] [--workers 2] [--max-side 512] [--variants uad feature mask noise] \\
        [--protect-with sam-litemedsam sam-distilled-small] [--judges sam-litemedsam sam-distilled-small]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

import photoshield.protect.deformation  # noqa: F401  (registers method="deformation")
from _common import CHEAP_PURIFICATIONS, add_results_argument, map_jobs, write_result
from photoshield import attacks, data
from photoshield.evaluate.editing import noise_baseline
from photoshield.image import quantize, resize_to
from photoshield.metrics import psnr
from photoshield.models.sam.prompts import draw_prompts, mask_iou, predict_prompts, segmentation_agreement
from photoshield.protect import protect
from photoshield.protect.deformation import resolve_segmenter

SEGMENTERS = ("sam-litemedsam", "sam-distilled-small")
VARIANTS = ("uad", "feature", "mask", "noise")
PURIFY = tuple(CHEAP_PURIFICATIONS.values())


def bare_step_seconds(segmenter, repeats: int = 2) -> float:
    """Seconds of one forward+backward of the whole image encoder at the segmenter's input size (best of ``repeats``)."""
    pixels = torch.rand(1, 3, segmenter.image_size, segmenter.image_size, requires_grad=True)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        segmenter.encode(pixels).embedding.pow(2).mean().backward()
        best = min(best, time.perf_counter() - started)
    return best


STATE: dict = {}  # the parsed arguments and loaded segmenters, shared with forked workers


def measure_photo(job: tuple[int, str]) -> tuple[dict, dict, str]:
    """Protect one photo every way asked and judge it by every judge: (figures, costs, printed lines)."""
    index, name = job
    args, models = STATE["args"], STATE["models"]
    torch.set_num_threads(args.threads)
    epsilon = args.epsilon / 255
    jpeg = attacks.get("jpeg", quality=75)
    figures: dict[tuple[str, str, str, str], float] = {}
    costs: dict[tuple[str, str, str], float] = {}
    photo = data.sample(name)
    if args.max_side and max(photo.shape[-2:]) > args.max_side:
        scale = args.max_side / max(photo.shape[-2:])
        photo = quantize(resize_to(photo, (round(photo.shape[-2] * scale), round(photo.shape[-1] * scale))))
    drawn = {}
    for judge in args.judges:
        prompts = draw_prompts(models[judge], photo)
        drawn[judge] = (prompts, predict_prompts(models[judge], photo, prompts))
        lossy = segmentation_agreement(models[judge], photo, jpeg(photo), *drawn[judge])
        for key, value in (("miou", 1.0), ("asr50", 0.0), ("jpeg_miou", lossy["miou"]), ("jpeg_asr50", lossy["asr50"])):
            figures["clean", "-", judge, key] = value
    agreement = {}
    for reference_judge in args.judges:  # how far the judges agree on the clean photo, on one judge's prompts
        prompts, reference = drawn[reference_judge]
        for other in args.judges:
            if other != reference_judge and len(prompts):
                ious = mask_iou(predict_prompts(models[other], photo, prompts)["box"], reference["box"])
                agreement[other, reference_judge] = float(ious.mean())
    log = [f"{name} {tuple(photo.shape[-2:])}: prompts " + ", ".join(f"{j} {len(p)}" for j, (p, _) in drawn.items())]
    runs = [("noise", "-")] if "noise" in args.variants else []
    runs += [(variant, source) for source in args.protect_with for variant in args.variants if variant != "noise"]
    for variant, source in runs:
        started = time.perf_counter()
        if variant == "noise":
            protected, per_step = noise_baseline(photo, epsilon, seed=index), None
        else:
            result = protect(photo, method="deformation", segmenter=models[source], variant=variant, epsilon=epsilon,
                             steps=args.steps, preset=args.preset, measure=False, progress=False, seed=index)
            protected, per_step = result.image, result.report["seconds_per_step"]
        seconds = time.perf_counter() - started
        costs[variant, source, "seconds"] = seconds
        costs[variant, source, "psnr"] = float(psnr(photo, protected))
        if per_step is not None:
            costs[variant, source, "seconds_per_step"] = per_step
        cells = []
        purified = {spec: attacks.get(spec)(protected) for spec in args.purify}
        for judge in args.judges:
            plain = segmentation_agreement(models[judge], photo, protected, *drawn[judge])
            lossy = segmentation_agreement(models[judge], photo, jpeg(protected), *drawn[judge])
            for key, value in (("miou", plain["miou"]), ("asr50", plain["asr50"]), ("jpeg_miou", lossy["miou"]),
                               ("jpeg_asr50", lossy["asr50"])):
                figures[variant, source, judge, key] = value
            for spec, image in purified.items():
                figures[variant, source, judge, f"asr50 after {spec}"] = segmentation_agreement(
                    models[judge], photo, image, *drawn[judge])["asr50"]
            cells.append(f"{judge}: ASR {plain['asr50']:.2f} / JPEG {lossy['asr50']:.2f}")
        log.append(f"  {variant} on {source}: " + " | ".join(cells) + f" | {costs[variant, source, 'psnr']:.1f} dB, {seconds:.0f} s")
    return figures, costs, agreement, "\n".join(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5, help="first N photos of each kind (scenes, faces)")
    parser.add_argument("--max-side", type=int, default=512, help="photos are resized to this long side (0: native)")
    parser.add_argument("--steps", type=int, default=None, help="engine steps (default: the method's for the preset)")
    parser.add_argument("--epsilon", type=float, default=8.0, help="L_inf budget in /255")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--protect-with", nargs="+", default=list(SEGMENTERS), help="segmenters the protections are computed on")
    parser.add_argument("--judges", nargs="+", default=list(SEGMENTERS), help="segmenters that judge every protected photo")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--purify", nargs="*", default=list(PURIFY), help="purifications each protected photo is also judged after")
    parser.add_argument("--workers", type=int, default=1, help="photos measured in parallel (forked processes)")
    parser.add_argument("--preset", default="standard", help="protect() preset; standard adds differentiable-JPEG q75 EOT")
    parser.add_argument("--name", default="deformation", help="results file name (benchmarks/results/NAME.json)")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: resolve_segmenter(name, "cpu") for name in dict.fromkeys(args.protect_with + args.judges)}
    bare = {name: round(bare_step_seconds(models[name]), 3) for name in args.protect_with}
    names = [n for kind in ("scenes", "faces") for n in data.samples(kind)[: args.limit]]
    print(f"torch threads: {torch.get_num_threads()}; bare encoder forward+backward s: {bare}", flush=True)

    STATE.update(args=args, models=models)
    figures: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)  # (variant, source, judge, key)
    costs: dict[tuple[str, str, str], list[float]] = defaultdict(list)  # (variant, source, key)
    jobs = list(enumerate(names))
    outcomes = map_jobs(measure_photo, jobs, args.workers)  # photos in parallel; the models are loaded once
    agreement: dict[tuple[str, str], list[float]] = defaultdict(list)
    for photo_figures, photo_costs, photo_agreement, log in outcomes:
        print(log, flush=True)
        for key, value in photo_agreement.items():
            agreement[key].append(value)
        for key, value in photo_figures.items():
            figures[key].append(value)
        for key, value in photo_costs.items():
            costs[key].append(value)

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    lines = [f"{len(names)} photos ({', '.join(names)}), long side {args.max_side or 'native'} px, epsilon "
             f"{args.epsilon:g}/255, preset `{args.preset}`, steps {args.steps or 'the method default'}; box prompts "
             f"drawn by each judge on the clean photo. torch threads {torch.get_num_threads()} per worker, "
             f"{args.workers} worker(s).", ""]
    sources = ["-"] + list(args.protect_with)
    for (other, reference_judge), values in agreement.items():
        lines.append(f"On the clean photos, `{other}`'s masks agree with `{reference_judge}`'s for `{reference_judge}`'s "
                     f"prompts at mIoU {100 * mean(values):.1f} % ({len(values)} photos).")
    if agreement:
        lines.append("")
    for judge in args.judges:
        lines += [f"**Judged by `{judge}`** (white-box where the protection was computed on it)", "",
                  "| protection | computed on | mIoU % | ASR@50 % | mIoU % after JPEG 75 | ASR@50 % after JPEG 75 | PSNR dB | s / photo |",
                  "|---|---|---|---|---|---|---|---|"]
        for variant in ("clean",) + tuple(args.variants):
            for source in sources:
                row = {key: mean(figures.get((variant, source, judge, key), [])) for key in ("miou", "asr50", "jpeg_miou", "jpeg_asr50")}
                if np.isnan(row["miou"]):
                    continue
                seen = "white-box" if source == judge else "unseen" if source != "-" else "-"
                psnr_cell = f"{mean(costs[variant, source, 'psnr']):.1f}" if costs.get((variant, source, "psnr")) else "-"
                seconds_cell = f"{mean(costs[variant, source, 'seconds']):.0f}" if costs.get((variant, source, "seconds")) else "-"
                label = f"{source} ({seen})" if source != "-" else "-"
                lines.append(f"| {variant} | {label} | {100 * row['miou']:.1f} | {100 * row['asr50']:.1f} | "
                             f"{100 * row['jpeg_miou']:.1f} | {100 * row['jpeg_asr50']:.1f} | {psnr_cell} | {seconds_cell} |")
        lines.append("")
        if args.purify:
            lines += [f"ASR@50 % by `{judge}` after each purification (the protection's last line of defence)", "",
                      "| protection | computed on | " + " | ".join(f"`{spec}`" for spec in args.purify) + " |",
                      "|---|---|" + "---|" * len(args.purify)]
            for variant in args.variants:
                for source in sources:
                    values = [figures.get((variant, source, judge, f"asr50 after {spec}"), []) for spec in args.purify]
                    if not values[0]:
                        continue
                    seen = "white-box" if source == judge else "unseen" if source != "-" else "-"
                    label = f"{source} ({seen})" if source != "-" else "-"
                    lines.append(f"| {variant} | {label} | " + " | ".join(f"{100 * mean(v):.1f}" for v in values) + " |")
            lines.append("")
    lines += ["**Cost of a protection step** against the segmenter's bare encoder forward+backward at its input size",
              "", "| computed on | bare forward+backward s | " + " | ".join(f"{v} s / step" for v in args.variants if v != "noise") + " |",
              "|---|---|" + "---|" * len([v for v in args.variants if v != "noise"])]
    for source in args.protect_with:
        cells = [f"{mean(costs[v, source, 'seconds_per_step']):.2f}" for v in args.variants if v != "noise"]
        lines.append(f"| {source} | {bare[source]:.2f} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    write_result(args.name, text, args.results_dir, photos=names, epsilon=args.epsilon, steps=args.steps,
                 preset=args.preset, bare_forward_backward_s=bare,
                 figures={":".join(key): values for key, values in figures.items()},
                 costs={":".join(key): values for key, values in costs.items()},
                 agreement={":".join(key): values for key, values in agreement.items()})


if __name__ == "__main__":
    main()
