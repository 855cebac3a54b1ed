"""Reading the watermark through crops, rotations and aspect changes: detection, false positives, speed.

    python benchmarks/bench_watermark_geometry.py [--photos runs/watermark/photos] [--limit 20] [--exhaustive 0]
        [--fpr-crops 2000] [--threads 2]

Detection: the held-out photos (``<photos>/heldout``, never trained on; the bundled samples when that
folder is missing) at native sizes, each marked by ``embed`` with the defaults (40 dB, bound to the
photo's content) under its own ID, then each geometric attack below; ``verify(search=True)`` at FPR 1e-6
(FFT registration, ``watermark.register``) against the plain read. ``--exhaustive N`` also reads the
first N photos' copies with the exhaustive grid search (``watermark.sync.search_logits``, seconds a read),
for the same union bound.

False positives: ``--fpr-crops`` random crops (128-512 px, any aspect) of the unmarked training and
held-out photos, each read with ``verify(search=True)`` against a fixed message and key: the share
detected at several claimed rates.

Speed: median seconds of a plain and a searched ``verify`` of one photo resized to 512 and 1024 px
(``--threads`` torch threads; time on an idle machine). Writes benchmarks/results/watermark_geometry.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_results_argument, stamp, write_result  # noqa: E402
from bench_watermark_peers import clean_photos, held_out, random_crop  # noqa: E402

FPR = 1e-6


def uncropped(area: float, seed: int):
    """A random crop keeping ``area`` of the photo at its aspect ratio, not zoomed back."""
    def attack(image: torch.Tensor) -> torch.Tensor:
        rng = random.Random(seed)
        height, width = image.shape[-2:]
        h, w = round(height * area**0.5), round(width * area**0.5)
        top, left = rng.randrange(height - h + 1), rng.randrange(width - w + 1)
        return image[..., top : top + h, left : left + w]
    return attack


def aspect(factor: float):
    """The width scaled by ``factor``, the height kept (a non-uniform resize)."""
    def attack(image: torch.Tensor) -> torch.Tensor:
        from photoshield.image import resize_to

        return resize_to(image, (image.shape[-2], round(image.shape[-1] * factor)))
    return attack


def then_jpeg(first, quality: int = 75):
    from photoshield import attacks

    jpeg = attacks.get("jpeg", quality=quality)
    return lambda image: jpeg(first(image))


def geometric_attacks(seed: int) -> dict:
    from photoshield import attacks

    crop = lambda area: attacks.get("crop", area=area, position="random", seed=seed)  # noqa: E731
    return {
        "crop 0.5, zoomed back": crop(0.5),
        "crop 0.5, not zoomed": uncropped(0.5, seed),
        "crop 0.75 + JPEG 75": then_jpeg(crop(0.75)),
        "rotation 15°": attacks.get("rotation", degrees=15),
        "rotation -15° + JPEG 75": then_jpeg(attacks.get("rotation", degrees=-15)),
        "width 0.9 (aspect change)": aspect(0.9),
        "width 1.1 + JPEG 75": then_jpeg(aspect(1.1)),
    }


def exhaustive_verify(copy: torch.Tensor, message: str, model):
    """``verify(search=True)`` with the exhaustive grid search in place of the registration."""
    from photoshield.watermark import register, sync, verify

    fast, calls = register.register_logits, []

    def exhaustive(decoder, image, score, codewords, size=128):
        calls.append(1)
        return sync.search_logits(model.decode, image, score, size=size)

    register.register_logits = exhaustive
    try:
        result = verify(copy, message, key="geometry", fpr=FPR, model=model, search=True)
    finally:
        register.register_logits = fast
    plain = verify(copy, message, key="geometry", fpr=FPR, model=model)
    # the grid search ran, unless a conclusive plain read skipped the search altogether
    assert calls or plain.detected, "the exhaustive search did not run: verify no longer calls register_logits"
    return result


def marking_variants() -> dict:
    """``embed`` keyword arguments of each way of marking that the detection table compares."""
    from photoshield.watermark.sync import realigned_crops

    return {"default": {}, "refined for crops": {"refine_through": realigned_crops()}}


def detection(args, model) -> tuple[dict, str]:
    from photoshield.progress import tqdm
    from photoshield.watermark import embed, verify

    photos, what = held_out(args.photos, args.limit)
    rows: dict[str, dict[str, list]] = {}
    embed_seconds: dict[str, list[float]] = {}
    for index, photo in enumerate(tqdm(photos, desc="geometry", unit="photo")):
        message = f"ID-{index:05d}"
        for variant, options in marking_variants().items():
            start = time.perf_counter()
            marked = embed(photo, message, key="geometry", model=model, **options)
            embed_seconds.setdefault(variant, []).append(time.perf_counter() - start)
            for label, attack in geometric_attacks(seed=index).items():
                copy = attack(marked)
                row = rows.setdefault(label, {})
                if variant == "default":
                    row.setdefault("plain", []).append(verify(copy, message, key="geometry", fpr=FPR, model=model).detected)
                found = verify(copy, message, key="geometry", fpr=FPR, model=model, search=True)
                row.setdefault(f"registered {variant}", []).append(found.detected)
                if variant == "default" and index < args.exhaustive:
                    row.setdefault("exhaustive", []).append(exhaustive_verify(copy, message, model).detected)
                    row.setdefault("registered subset", []).append(found.detected)
    figures = {label: {column: {"tpr": sum(values) / len(values), "photos": len(values)} for column, values in row.items()}
               for label, row in rows.items()}
    columns = ["registered default", "registered refined for crops"] + (["exhaustive"] if args.exhaustive else [])
    names = {"registered default": "`search=True`, default mark",
             "registered refined for crops": "`search=True`, marked with `--refine-for-crops`",
             "exhaustive": f"the first {args.exhaustive} photos, default mark: exhaustive grid search / registration"}
    lines = ["| attack | plain read, default mark | " + " | ".join(names[c] for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]

    def cell(f: dict, column: str) -> str:
        if column == "exhaustive":
            return f"{100 * f['exhaustive']['tpr']:.0f} % / {100 * f['registered subset']['tpr']:.0f} %"
        return f"{100 * f[column]['tpr']:.0f} %"

    for label, f in figures.items():
        lines.append(f"| {label} | {100 * f['plain']['tpr']:.0f} % | " + " | ".join(cell(f, c) for c in columns) + " |")
    seconds = {variant: statistics.median(values) for variant, values in embed_seconds.items()}
    text = (f"Detection (TPR) at FPR 1e-6 on {what} at native sizes, each marked by `embed` (40 dB, bound to its "
            "content) with the defaults and with `refine_through=watermark.sync.realigned_crops()` (CLI "
            "`--refine-for-crops`); random crop positions; the search pays for its grid in the p-value "
            "(union bound):\n\n" + "\n".join(lines) + "\n\nMedian embed seconds: "
            + ", ".join(f"{variant} {value:.1f} s" for variant, value in seconds.items())
            + f" ({torch.get_num_threads()} torch threads, photos of any size).")
    print("\n" + text)
    return {"photos": what, "rows": figures, "embed_seconds": seconds}, text


def false_positives(args, model) -> tuple[dict, str]:
    from photoshield.progress import tqdm
    from photoshield.watermark import verify

    images, rng = clean_photos(args.photos), random.Random(2)
    p_values = []
    for _ in tqdm(range(args.fpr_crops), desc="clean crops", unit="crop"):
        crop = random_crop(rng.choice(images), rng, min_side=128)
        p_values.append(verify(crop, "ID-00042", key="fpr", model=model, search=True).p_value)
    claimed = (1e-1, 1e-2, 1e-3, 1e-6)
    rates = {f"{c:g}": sum(p <= c for p in p_values) / len(p_values) for c in claimed}
    text = (f"`verify(search=True)` on {len(p_values)} random clean crops (128-512 px, any aspect) of the unmarked "
            "training and held-out photos:\n\n| claimed FPR | " + " | ".join(f"{c:g}" for c in claimed)
            + " |\n|---|" + "---|" * len(claimed) + "\n| measured | "
            + " | ".join(f"{rates[f'{c:g}']:.4f}" for c in claimed) + f" |\n\nSmallest p-value: {min(p_values):.3g}.")
    print("\n" + text)
    return {"crops": len(p_values), "measured": rates, "min_p": min(p_values)}, text


def speed(args, model) -> tuple[dict, str]:
    from photoshield import attacks, data
    from photoshield.image import resize_to
    from photoshield.watermark import embed, verify

    crop = attacks.get("crop", area=0.75, position="random", seed=0)
    rotation = attacks.get("rotation", degrees=15)
    figures = {}
    for side in (512, 1024):
        photo = resize_to(data.sample("kodim23"), (side, side))
        marked = embed(photo, "ID-00001", key="speed", model=model)
        reads = {"plain": (marked, False), "searched, as marked": (marked, True), "searched, crop 0.75": (crop(marked), True),
                 "searched, rotation 15": (rotation(marked), True)}
        times: dict[str, list[float]] = {label: [] for label in reads}
        for _ in range(args.repeats):
            for label, (copy, search) in reads.items():
                start = time.perf_counter()
                verify(copy, "ID-00001", key="speed", model=model, search=search)
                times[label].append(time.perf_counter() - start)
        figures[str(side)] = {label: statistics.median(values) for label, values in times.items()}
    text = ("| photo | plain `verify` | `verify(search=True)`: the marked photo | a crop of 0.75 zoomed back "
            "| a rotation by 15° |\n|---|---|---|---|---|\n" + "\n".join(
                f"| {side} x {side} | {f['plain']:.3f} s | {f['searched, as marked']:.3f} s | "
                f"{f['searched, crop 0.75']:.3f} s | {f['searched, rotation 15']:.3f} s |" for side, f in figures.items())
            + f"\n\nMedian of {args.repeats} reads, {torch.get_num_threads()} torch threads. A plain read past what any "
            "searched read could reach skips the search.")
    print("\n" + text)
    return figures, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="watermark-diffmark", help="registry name or checkpoint path")
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--limit", type=int, default=20, help="held-out photos")
    parser.add_argument("--exhaustive", type=int, default=0, help="also read the first N photos with the grid search")
    parser.add_argument("--fpr-crops", type=int, default=2000, help="clean crops read with the search (0: skip)")
    parser.add_argument("--repeats", type=int, default=5, help="reads per timing")
    parser.add_argument("--parts", nargs="+", default=["detection", "false-positives", "speed"],
                        choices=["detection", "false-positives", "speed"])
    parser.add_argument("--threads", type=int, default=2)
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    from photoshield.watermark import load

    model = load(args.model, device="cpu")
    # a run of some parts keeps the others' figures from the results file
    previous = Path(args.results_dir) / "watermark_geometry.json" if args.results_dir else None
    kept = json.loads(previous.read_text()).get("parts", {}) if previous and previous.exists() else {}
    parts = {name: kept[name] for name in ("detection", "false_positives", "speed") if name in kept}
    for part, run in (("detection", detection), ("false-positives", false_positives), ("speed", speed)):
        if part in args.parts and not (part == "false-positives" and args.fpr_crops == 0):
            figures, text = run(args, model)
            parts[part.replace("-", "_")] = {"figures": figures, "text": text, "stamp": stamp()}
    write_result("watermark_geometry", "\n\n".join(_with_provenance(part) for part in parts.values()),
                 args.results_dir, parts=parts)


def _with_provenance(part: dict) -> str:
    """A part's table, with the command, commit and date that measured it when another run wrote the page."""
    own = part["stamp"]
    if own["command"] == stamp()["command"]:
        return part["text"]
    commit = (own.get("git_commit") or "?")[:10] + (" (with uncommitted changes)" if own.get("git_uncommitted_changes") else "")
    return f"{part['text']}\n\n(This part: `{own['command']}` at commit `{commit}` on {own['date']}, {own['threads']} threads.)"


if __name__ == "__main__":
    main()
