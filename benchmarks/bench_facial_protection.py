"""How well facial protection hides identity, judged by the attacked model and by independent judges.

For every bundled face photo, at each epsilon, with the default preset (and again without
shaping), the protected photo, its JPEG q75 and q50 copies are compared with the original by:

* ``dlib-port``: photoshield's dlib ResNet port (the model that was attacked), distance, same person < 0.6;
* ``sface``: SFace + YuNet through onnxruntime (independent), cosine, same person >= 0.363;
* ``dlib``: dlib itself (independent code, same network) where the ``judges`` extra is installed.

Each judge detects and aligns the face anew on the pixels it is given. Printed as a markdown
table: mean score and the fraction of faces pushed past the judge's threshold ("no face" counts
as protected), with PSNR/SSIM and seconds per photo. Usage::

    python benchmarks/bench_facial_protection.py [--epsilons 4 8 12] [--limit 8] [--preset standard]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import torch

from photoshield import attacks, data
from photoshield.errors import PhotoshieldError
from photoshield.evaluate.metrics import psnr, ssim
from photoshield.models import face, load
from photoshield.models.face_judge import DlibJudge
from photoshield.protect import protect

VARIANTS = {"png": None, "jpeg75": "jpeg:quality=75", "jpeg50": "jpeg:quality=50"}


def _judges() -> dict[str, tuple[Callable[[torch.Tensor], Any], Callable[[Any, Any], float], Callable[[float], bool]]]:
    """name -> (embed, score(clean, other), protected(score))."""
    sface = load("face-judge-sface")
    judges = {
        "dlib-port": (
            lambda x: face.embed_faces(x),
            lambda a, b: float(face.identity_distance(a, b).detach()[0]),
            lambda score: score > 0.6,
        ),
        "sface": (sface.embed, lambda a, b: float(a @ b), lambda score: score < sface.threshold),
    }
    try:
        dlib = DlibJudge()
        judges["dlib"] = (dlib.embed, lambda a, b: float(np.linalg.norm(a - b)), lambda score: score > 0.6)
    except PhotoshieldError as error:
        print(f"(dlib judge skipped: {error})")
    return judges


def evaluate(epsilons: list[float], names: list[str], preset: str, steps: int | None) -> list[dict[str, Any]]:
    judges = _judges()
    rows = []
    for shaping in (True, False):
        for epsilon in epsilons:
            scores: dict[tuple[str, str], list[float]] = defaultdict(list)
            hidden: dict[tuple[str, str], list[bool]] = defaultdict(list)
            quality = {"psnr": [], "ssim": [], "seconds": []}
            for name in names:
                photo = data.sample(name)
                clean = {judge: embed(photo) for judge, (embed, _, _) in judges.items()}
                started = time.perf_counter()
                result = protect(photo, "facial", epsilon=epsilon / 255, preset=preset, steps=steps, shaping=shaping, progress=False)
                quality["seconds"].append(time.perf_counter() - started)
                quality["psnr"].append(float(psnr(photo, result.image)))
                quality["ssim"].append(float(ssim(photo, result.image)))
                for variant, spec in VARIANTS.items():
                    pixels = result.image if spec is None else attacks.get(spec)(result.image)
                    for judge, (embed, score, is_hidden) in judges.items():
                        try:
                            value = score(clean[judge], embed(pixels))
                            scores[variant, judge].append(value)
                            hidden[variant, judge].append(is_hidden(value))
                        except PhotoshieldError:  # the judge no longer finds a face: protected
                            hidden[variant, judge].append(True)
            for variant in VARIANTS:
                row = {"epsilon": epsilon, "shaping": shaping, "variant": variant}
                row.update({k: float(np.mean([x for x in v if np.isfinite(x)] or [np.nan])) for k, v in quality.items()})
                row["unchanged"] = int(sum(not np.isfinite(x) for x in quality["psnr"]))  # no face found to protect
                for judge in judges:
                    values = scores[variant, judge]
                    row[f"{judge}_mean"] = float(np.mean(values)) if values else float("nan")
                    row[f"{judge}_hidden"] = float(np.mean(hidden[variant, judge]))
                rows.append(row)
                print(_format([row], list(judges), header=not rows[:-1]), flush=True)
    return rows


def _format(rows: list[dict[str, Any]], judges: list[str], header: bool = True) -> str:
    lines = []
    if header:
        columns = ["eps/255", "shaping", "photo"] + [f"{j} (mean, past thr.)" for j in judges] + ["PSNR dB", "SSIM", "s/photo", "unchanged"]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row['epsilon']:g}", "yes" if row["shaping"] else "no", row["variant"]]
        cells += [f"{row[f'{j}_mean']:.3f}, {100 * row[f'{j}_hidden']:.0f} %" for j in judges]
        cells += [f"{row['psnr']:.1f}", f"{row['ssim']:.3f}", f"{row['seconds']:.1f}", str(row["unchanged"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[4, 8, 12], help="L_inf budgets in /255")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N face photos")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    args = parser.parse_args()
    names = data.samples("faces")[: args.limit]
    print(f"{len(names)} photos: {', '.join(names)}; preset {args.preset}; torch {torch.get_num_threads()} threads\n")
    evaluate(args.epsilons, names, args.preset, args.steps)


if __name__ == "__main__":
    main()
