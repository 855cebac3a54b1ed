"""Which choices of the facial protection carry over to face recognition it never saw.

Each variant protects every photo with the full default ensemble (dlib port, FaceRes, FaceRes-deep) and
is judged by the two recognisers that never enter any objective: OpenCV's SFace and real dlib, on the
protected PNG and on its JPEG q75 copy. The variants compare the budget (an even L_inf budget against a
face-region PSNR floor that lets the change go where it moves the models most), the transfer recipe of the
literature (MI-FGSM momentum, TI-FGSM gradient smoothing, DI-FGSM input diversity) and the objective's own
parts (mid-level feature term, loss balancing, alignment jitter, the pixel cap, another ensemble member)
and the ``robust`` preset (the cheap purifications in the expectation). "protected" = share of faces the judge no longer calls the same person (or no longer finds).

Photos: the bundled face samples (``--photos bundled``, where the defaults were chosen) or the face crops
of ``tools/fetch_face_photos.py`` that are not bundled (``--photos heldout``: 22 people photoshield was not
tuned on; one crop per face, runs/faces). Usage::

    python benchmarks/bench_facial_choices.py [--photos bundled|heldout] [--variants NAME ...] [--limit N]

Prints a markdown table and writes benchmarks/results/facial_choices[_heldout].json (stamped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_results_argument, write_result  # noqa: E402

from photoshield import attacks, data  # noqa: E402
from photoshield.io import read_image  # noqa: E402
from photoshield.metrics import region_psnr  # noqa: E402
from photoshield.protect import PRESETS, protect  # noqa: E402
from photoshield.protect.facial import DEFAULT_ENSEMBLE, IdentityJudges, face_boxes_mask, find_faces  # noqa: E402

PLAIN = {"momentum": 0.0, "smooth_gradient": 0.0, "input_diversity": 0.0}  # no transfer recipe
HALF_SIZE_EOT = (*PRESETS["standard"]["eot"], "resize:scale=0.5")  # the default's JPEG and a half-size copy
#: name -> protect() options; the default protection is ``{}``.
VARIANTS: dict[str, dict[str, Any]] = {
    "L_inf 8/255": {"epsilon": 8 / 255, **PLAIN},
    "L_inf 5/255": {"epsilon": 5 / 255, **PLAIN},
    "PSNR 35 dB": {"psnr": 35.0, **PLAIN},
    "PSNR 35 dB + MI/TI/DI (default)": {},
    "default, pixel cap 8/255": {"psnr": 35.0, "epsilon": 8 / 255},
    "default, pixel cap 16/255": {"psnr": 35.0, "epsilon": 16 / 255},
    "default, no feature term": {"feature_weight": 0.0},
    "default, no loss balancing": {"balance": False},
    "default, no alignment jitter": {"jitter": 0.0},
    "default + mobileface": {"models": [*DEFAULT_ENSEMBLE, "mobileface"]},
    "default, robust preset": {"preset": "robust"},
    "default, TI 3 px": {"smooth_gradient": 3.0},
    "default + half-size EOT": {"eot": HALF_SIZE_EOT},
    "default, TI 3 px + half-size EOT": {"smooth_gradient": 3.0, "eot": HALF_SIZE_EOT},
    "PSNR 32 dB + MI/TI/DI": {"psnr": 32.0},
    "PSNR 38 dB + MI/TI/DI": {"psnr": 38.0},
}
JUDGES = ("sface", "dlib")
#: what the protected photo goes through before it is judged (--copies; png and jpeg75 by default)
COPIES = {"png": None, "jpeg75": "jpeg:quality=75",
          "diffpure": "diffpure:strength=0.5,seed=0", "gridpure": "gridpure:strength=0.5,seed=0"}
CLEAN = "(clean photo)"  # the row of the unprotected photo: what the copy alone does to recognition


def photos(which: str, limit: int | None) -> list[tuple[str, torch.Tensor]]:
    """(name, (1, 3, H, W)) pairs: the bundled face samples, or the held-out crops of runs/faces."""
    if which == "bundled":
        names = data.samples("faces")[:limit]
        return [(name, data.sample(name)) for name in names]
    manifest = REPO / "runs" / "faces" / "manifest.json"
    if not manifest.exists():
        raise SystemExit(f"{manifest} not found: write the corpus first with python tools/fetch_face_photos.py")
    entries = [e for e in json.loads(manifest.read_text())["faces"] if e["split"] == "calibration" and not e["duplicate_of"]]
    return [(Path(e["file"]).stem, read_image(manifest.parent / e["file"])) for e in entries[:limit]]


def run(variants: list[str], pictures: list[tuple[str, torch.Tensor]], copies: list[str]) -> list[dict[str, Any]]:
    judges = IdentityJudges(JUDGES)
    for name, reason in judges.skipped.items():
        print(f"(judge {name} skipped: {reason})")
    transforms = {copy: attacks.parse(COPIES[copy]) if COPIES[copy] else None for copy in copies}

    def judged(record: dict[str, Any], reference: dict[str, Any], image: torch.Tensor) -> None:
        for copy, transform in transforms.items():
            pixels = image if transform is None else transform(image, generator=torch.Generator().manual_seed(0))
            for judge, (score, same) in judges.score(reference, pixels, list(JUDGES)).items():
                record[f"{copy}:{judge}"] = [score, not same]

    records = []
    for name, photo in pictures:
        faces = find_faces(photo)
        if len(faces) == 0:
            print(f"{name}: no face found, left out")
            continue
        reference = judges.reference(photo)
        boxes = face_boxes_mask(photo, faces)
        if any(COPIES[copy] for copy in copies if copy != "jpeg75"):  # a copy that may change recognition by itself
            record = {"variant": CLEAN, "photo": name, "seconds": 0.0, "face_psnr": float("inf"), "members_protected": {}}
            judged(record, reference, photo)
            records.append(record)
        for variant in variants:
            started = time.perf_counter()
            result = protect(photo, "facial", progress=False, judges=(), **VARIANTS[variant])
            record: dict[str, Any] = {"variant": variant, "photo": name, "seconds": time.perf_counter() - started,
                                      "face_psnr": float(region_psnr(photo, result.image, boxes)[0]),
                                      "linf_255": result.report.get("linf_255")}
            members = result.report.get("protected", {})
            record["members_protected"] = {m: members.get(f"{m}_faces_past_threshold", 0) / max(len(faces), 1)
                                           for m in DEFAULT_ENSEMBLE}
            judged(record, reference, result.image)
            records.append(record)
            print(f"{variant:34s} {name:16s} {record['seconds']:5.1f} s  face PSNR {record['face_psnr']:.1f}  "
                  + "  ".join(f"{k} {v[0]:.3f}{'*' if v[1] else ''}" for k, v in record.items() if ":" in k), flush=True)
    return records


def table(records: list[dict[str, Any]], variants: list[str], copies: list[str] = ("png", "jpeg75")) -> str:
    """One row per variant: face PSNR, SFace and dlib (never attacked) after each copy, the members (white-box), time."""
    names = " / ".join(copies)
    lines = [f"| variant | face PSNR dB | SFace protected ({names}) | SFace mean cosine (png) | dlib protected "
             f"({names}) | members protected (white-box) | s/photo | photos |", "|" + "---|" * 8]
    for variant in ([CLEAN] if any(r["variant"] == CLEAN for r in records) else []) + list(variants):
        rows = [r for r in records if r["variant"] == variant]
        if not rows:
            continue

        def share(key: str) -> str:
            hits = [r[key][1] for r in rows if key in r]
            return f"{100 * np.mean(hits):.0f} %" if hits else "n/a"

        cosines = [r["png:sface"][0] for r in rows if "png:sface" in r and np.isfinite(r["png:sface"][0])]
        members = [np.mean(list(r["members_protected"].values())) for r in rows if r["members_protected"]]
        quality = [r["face_psnr"] for r in rows if np.isfinite(r["face_psnr"])]
        lines.append(f"| {variant} | {f'{np.mean(quality):.1f}' if quality else '-'} | "
                     f"{' / '.join(share(f'{c}:sface') for c in copies)} | {np.mean(cosines):.3f} | "
                     f"{' / '.join(share(f'{c}:dlib') for c in copies)} | "
                     f"{f'{100 * np.mean(members):.0f} %' if members else '-'} | "
                     f"{np.mean([r['seconds'] for r in rows]):.1f} | {len(rows)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", choices=("bundled", "heldout"), default="bundled")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--copies", nargs="+", default=["png", "jpeg75"], choices=list(COPIES),
                        help="what each protected photo goes through before it is judged (png: as it is)")
    parser.add_argument("--name", help="results file name (default facial_choices, or facial_choices_heldout)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pictures = photos(args.photos, args.limit)
    print(f"{len(pictures)} {args.photos} photos; {len(args.variants)} variants; torch {torch.get_num_threads()} threads\n")
    records = run(args.variants, pictures, args.copies)
    text = table(records, args.variants, args.copies)
    print("\n" + text)
    name = args.name or ("facial_choices" if args.photos == "bundled" else "facial_choices_heldout")
    write_result(name, text, args.results_dir, photos=[n for n, _ in pictures], ensemble=list(DEFAULT_ENSEMBLE),
                 copies={copy: COPIES[copy] for copy in args.copies},
                 variants={v: {k: (round(x * 255, 3) if k == "epsilon" else x) for k, x in VARIANTS[v].items()}
                           for v in args.variants}, records=records)


if __name__ == "__main__":
    main()
