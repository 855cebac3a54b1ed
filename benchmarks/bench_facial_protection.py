"""Facial protection judged by identity models it never saw: the leave-one-out table, SFace and dlib.

For every bundled face photo and each budget (a face-region PSNR floor ``psnr35``, the default, or an
L_inf ``linf8``), the photo is protected

* with the full default ensemble (``photoshield.protect.facial.DEFAULT_ENSEMBLE``), and
* for each ensemble member M, with the ensemble minus M ("leave-one-out"),

and the protected photo, its JPEG q75 copy, a resize 0.5 + JPEG q75 copy and three purified copies
(Gaussian noise + JPEG, total-variation denoising, noisy upscaling) are judged: each judge
detects the main face anew and compares it with the clean photo's (``IdentityJudges``). A face is
"protected" for a judge when the judge no longer calls it the same person (or finds no face).
The headline rows are each left-out model judging the protection computed without it, and SFace
and real dlib (never in any ensemble) judging the full ensemble's protection. PSNR/SSIM are reported
over the photo and over the detected face boxes, where the eye looks; the PSNR budgets at 32, 35 and
38 dB trace how much identity change a given face quality buys. Usage::

    python benchmarks/bench_facial_protection.py [--budgets psnr35 psnr32 psnr38 linf8] [--limit 8] [--preset standard]
    python benchmarks/bench_facial_protection.py --tables-only   # re-print the tables of the last results file

Prints markdown tables and writes benchmarks/results/facial_protection.json (stamped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, stamp  # noqa: E402

from photoshield import attacks, data  # noqa: E402
from photoshield.metrics import psnr, region_psnr, region_ssim, ssim  # noqa: E402
from photoshield.protect import protect  # noqa: E402
from photoshield.protect.facial import DEFAULT_ENSEMBLE, IdentityJudges, face_boxes_mask, find_faces  # noqa: E402

VARIANTS = {"png": None, "jpeg75": "jpeg:quality=75", "resize0.5+jpeg75": "resize:scale=0.5+jpeg:quality=75",
            # purifications (photoshield.attacks.purify at strength 0.5) that strip adversarial perturbations
            "noise+jpeg": "noise-jpeg:sigma=0.05,quality=72", "tv": "tv:weight=0.075",
            "noisy-upscale": "noisy-upscale:sigma=0.05,scale=0.625"}
OUTSIDERS = ("sface", "dlib")  # never in any ensemble


def _variants(image: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for name, spec in VARIANTS.items():
        out[name] = image if spec is None else attacks.parse(spec)(image, generator=torch.Generator().manual_seed(0))
    return out


def budget_options(label: str) -> dict[str, float]:
    """``psnr35`` -> ``{"psnr": 35.0}`` (the default pixel cap); ``linf8`` -> ``{"epsilon": 8 / 255}``."""
    if label.startswith("psnr"):
        return {"psnr": float(label[4:])}
    if label.startswith("linf"):
        return {"epsilon": float(label[4:]) / 255}
    raise SystemExit(f"a budget is psnrDB or linfN (e.g. psnr35, linf8), got {label!r}")


def run(budgets: list[str], names: list[str], preset: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    judges = IdentityJudges()
    for name, reason in judges.skipped.items():
        print(f"(judge {name} skipped: {reason})")
    ensembles = {"full": ()} | {f"without {m}": (m,) for m in DEFAULT_ENSEMBLE}
    records = []
    for budget in budgets:
        for name in names:
            photo = data.sample(name)
            reference = judges.reference(photo)
            faces = find_faces(photo)
            boxes = face_boxes_mask(photo, faces) if len(faces) else None
            for ensemble, excluded in ensembles.items():
                started = time.perf_counter()
                result = protect(photo, "facial", preset=preset, exclude=excluded, progress=False,
                                 **budget_options(budget), **options)
                seconds = time.perf_counter() - started
                record = {"budget": budget, "photo": name, "ensemble": ensemble, "excluded": list(excluded),
                          "status": result.report["status"], "seconds": seconds,
                          "psnr": float(psnr(photo, result.image)), "ssim": float(ssim(photo, result.image))}
                if boxes is not None:
                    record["face_psnr"] = float(region_psnr(photo, result.image, boxes))
                    record["face_ssim"] = float(region_ssim(photo, result.image, boxes))
                judged = judges.names if ensemble == "full" else [*excluded, *OUTSIDERS]
                for variant, pixels in _variants(result.image).items():
                    for judge, (score, same) in judges.score(reference, pixels, judged).items():
                        record[f"{variant}:{judge}"] = [score, not same]
                records.append(record)
                print(f"{budget} {name:13s} {ensemble:22s} {seconds:5.1f} s  face PSNR {record.get('face_psnr', float('nan')):.1f}  "
                      + "  ".join(f"{k.split(':')[1]}@{k.split(':')[0]} {v[0]:.3f}{'*' if v[1] else ''}"
                                  for k, v in record.items() if ":" in k and k.startswith("png")), flush=True)
    return records


def tables(records: list[dict[str, Any]], judge_names: list[str]) -> str:
    """The leave-one-out table, the outsiders' table and the quality/cost table, as markdown."""
    lines = []
    by_budget = defaultdict(list)
    for record in records:  # older records name an L_inf epsilon instead of a budget
        by_budget[record.get("budget", f"linf{record.get('epsilon', 0):g}")].append(record)
    header = "| budget | judge | attacked by | " + " | ".join(f"{v}: protected" for v in VARIANTS) + " | mean score (png) |"
    lines += ["Leave-one-out: each model judging the protection computed without it; SFace and dlib (never "
              "attacked) judging the full ensemble's. \"protected\" = share of faces the judge no longer calls "
              "the same person (scores: cosine, dlib distance).", "", header, "|" + "---|" * (4 + len(VARIANTS))]
    for budget, rows in by_budget.items():
        cases = [(m, f"without {m}", "the others") for m in DEFAULT_ENSEMBLE]
        cases += [(j, "full", "full ensemble") for j in OUTSIDERS if j in judge_names]
        for judge, ensemble, label in cases:
            chosen = [r for r in rows if r["ensemble"] == ensemble and f"png:{judge}" in r]
            if not chosen:
                continue
            cells = [budget, judge, label]
            for variant in VARIANTS:
                hits = [r[f"{variant}:{judge}"][1] for r in chosen if f"{variant}:{judge}" in r]
                cells.append(f"{100 * np.mean(hits):.0f} % ({len(hits)})")
            scores = [r[f"png:{judge}"][0] for r in chosen if np.isfinite(r[f"png:{judge}"][0])]
            cells.append(f"{np.mean(scores):.3f}" if scores else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
        cells = [budget, "**leave-one-out mean**", ""]
        for variant in VARIANTS:
            hits = [r[f"{variant}:{r['excluded'][0]}"][1] for r in rows if r["excluded"] and f"{variant}:{r['excluded'][0]}" in r]
            cells.append(f"**{100 * np.mean(hits):.0f} %**")
        lines.append("| " + " | ".join(cells + [""]) + " |")
    lines += ["", "White-box (the full ensemble judged by its own members) and quality:", "",
              "| budget | " + " | ".join(f"{m} protected (png / jpeg75)" for m in DEFAULT_ENSEMBLE)
              + " | PSNR dB | SSIM | face PSNR dB | face SSIM | s/photo (full) |",
              "|" + "---|" * (6 + len(DEFAULT_ENSEMBLE))]
    for budget, rows in by_budget.items():
        full = [r for r in rows if r["ensemble"] == "full"]
        cells = [budget]
        for model in DEFAULT_ENSEMBLE:
            png = [r[f"png:{model}"][1] for r in full if f"png:{model}" in r]
            jpeg = [r[f"jpeg75:{model}"][1] for r in full if f"jpeg75:{model}" in r]
            cells.append(f"{100 * np.mean(png):.0f} % / {100 * np.mean(jpeg):.0f} %")
        for key in ("psnr", "ssim", "face_psnr", "face_ssim", "seconds"):
            values = [r[key] for r in full if key in r and np.isfinite(r[key])]
            cells.append(f"{np.mean(values):.3f}" if key.endswith("ssim") else f"{np.mean(values):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", default=["psnr35", "psnr32", "psnr38"],
                        help="psnrDB: a face-region PSNR floor (psnr35 is the default protection); linfN: L_inf N/255")
    parser.add_argument("--epsilons", type=float, nargs="+", help="L_inf budgets in /255 instead (linfN budgets)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N bundled face photos")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "facial_protection.json")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the tables of --output from its records")
    args = parser.parse_args()
    if args.tables_only:
        result = json.loads(args.output.read_text())
        judge_names = sorted({key.split(":")[1] for record in result["records"] for key in record if ":" in key})
        result["tables"] = tables(result["records"], judge_names)
        temporary = args.output.with_suffix(".tmp")
        temporary.write_text(json.dumps(result, indent=1))
        temporary.replace(args.output)
        print(result["tables"])
        return
    names = data.samples("faces")[: args.limit]
    options = {} if args.steps is None else {"steps": args.steps}
    print(f"{len(names)} photos: {', '.join(names)}; preset {args.preset}; torch {torch.get_num_threads()} threads\n")
    budgets = [f"linf{e:g}" for e in args.epsilons] if args.epsilons else args.budgets
    records = run(budgets, names, args.preset, options)
    judge_names = sorted({key.split(":")[1] for record in records for key in record if ":" in key})
    text = tables(records, judge_names)
    print("\n" + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".tmp")
    temporary.write_text(json.dumps({"stamp": stamp("cpu"), "photos": names, "preset": args.preset,
                                     "ensemble": list(DEFAULT_ENSEMBLE), "records": records, "tables": text}, indent=1))
    temporary.replace(args.output)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
