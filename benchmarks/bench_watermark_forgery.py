"""Can someone without the key forge or remove an owner's watermark? Four attacks, bound and unbound marks.

The attacker holds N photos that the owner marked with one key and message (256 px crops of real
photos), the public model and no key:

* **replay**: read the raw bits of a marked photo with the public decoder and embed the same bits into
  another photo with the public embedder.
* **average** (blind, arXiv 2406.09026): estimate the mark as the mean high-pass (x - gaussian_blur(x,
  sigma 2)) of the N marked photos and add it (x1 and x2) to unmarked photos.
* **oracle average**: add the exact mean residual (marked - original) of the N photos, an upper bound on
  what any averaging attacker can estimate.
* **remove**: subtract k times the blind estimate from the marked photos (k = 4 and 16); the PSNR says what
  the attempt costs the photo.

Each attack runs on marks bound to the photo's content (``embed``'s default, ``watermark.binding``) and
on unbound marks (``bind=False``). "forged" counts unmarked photos that then verify as the owner's at the
default FPR 1e-6, "kept" counts marked photos that still do. Usage::

    python benchmarks/bench_watermark_forgery.py [--marked 10 50 200] [--targets 50] [--size 256]

Photos: the bundled samples, then the face photos of ``tools/fetch_face_photos.py`` (runs/faces, one frame
per video) and Debian's wallpapers and OpenCV sample photos where installed, six crops of each.
Prints a markdown table and writes benchmarks/results/watermark_forgery.json (stamped).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import kornia
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_results_argument, write_result  # noqa: E402

from photoshield import data  # noqa: E402
from photoshield.errors import PhotoshieldError  # noqa: E402
from photoshield.image import quantize, resize_to  # noqa: E402
from photoshield.io import read_image  # noqa: E402
from photoshield.metrics import psnr  # noqa: E402
from photoshield.watermark import embed, load, verify  # noqa: E402

MESSAGE, KEY = "ID-004217", "owner's secret"
EXTRA_FOLDERS = (REPO / "runs" / "faces" / "faces", Path("/usr/share/backgrounds"),
                 Path("/usr/share/doc/opencv-doc/examples/data"))


def photo_paths() -> list[Path]:
    """Real photos: one frame per video, no near-duplicate names."""
    paths, seen = [data.sample_path(name) for name in data.samples()], set()
    for folder in EXTRA_FOLDERS:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            stem = re.sub(r"(-f\d+|_crop|_small|\d+)$", "", path.stem)
            if path.suffix.lower() in {".png", ".jpg", ".jpeg"} and stem not in seen:
                seen.add(stem)
                paths.append(path)
    return paths


def crops(paths: list[Path], count: int, size: int, per_photo: int = 6, seed: int = 0) -> torch.Tensor:
    """``count`` size x size crops (per_photo of each photo at random places of a 1.6 x size copy)."""
    generator = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    for path in paths:
        try:
            photo = read_image(path)
        except PhotoshieldError:
            continue
        height, width = photo.shape[-2:]
        scale = 1.6 * size / min(height, width)
        if scale > 2:  # too small a photo to crop from
            continue
        photo = resize_to(photo, (max(size, round(height * scale)), max(size, round(width * scale))))
        height, width = photo.shape[-2:]
        for _ in range(per_photo):
            top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
            out.append(photo[..., top : top + size, left : left + size])
        if len(out) >= count:
            return torch.cat(out[:count])
    raise SystemExit(f"only {len(out)} crops from {len(paths)} photos; need {count}")


def high_pass(images: torch.Tensor) -> torch.Tensor:
    return images - kornia.filters.gaussian_blur2d(images, (13, 13), (2.0, 2.0), border_type="reflect")


def count_detected(images: torch.Tensor, bind: bool) -> int:
    found = 0
    for start in range(0, len(images), 32):
        results = verify(images[start : start + 32], MESSAGE, key=KEY, bind=bind)
        found += sum(r.detected for r in (results if isinstance(results, list) else [results]))
    return found


def attack_rows(owner: torch.Tensor, marked: torch.Tensor, targets: torch.Tensor, bind: bool) -> dict[str, tuple]:
    """{attack: (verified as the owner's, out of, PSNR dB vs the photo before)} for one N."""
    rows: dict[str, tuple] = {}
    estimate = high_pass(marked).mean(0, keepdim=True)
    for scale in (1, 2):
        forged = quantize((targets + scale * estimate).clamp(0, 1))
        rows[f"average x{scale}: forged"] = (count_detected(forged, bind), len(targets), float(psnr(targets, forged).mean()))
    forged = quantize((targets + (marked - owner).mean(0, keepdim=True)).clamp(0, 1))
    rows["oracle average: forged"] = (count_detected(forged, bind), len(targets), float(psnr(targets, forged).mean()))
    sample = marked[:50]
    for scale in (4, 16):
        stripped = quantize((sample - scale * estimate).clamp(0, 1))
        rows[f"remove {scale} x estimate: kept"] = (count_detected(stripped, bind), len(sample),
                                                    float(psnr(owner[:50], stripped).mean()))
    return rows


def markdown(table: dict[str, dict[str, list | tuple]]) -> str:
    """The bound-vs-unbound table: verified as the owner's, and the PSNR of the attacked photo, per attack."""
    lines = ["| attack | bound mark (default): verified as the owner's | PSNR dB | unbound mark: verified | PSNR dB |",
             "|---|---|---|---|---|"]
    for name, (hits, total, quality) in table["bound"].items():
        old, old_total, old_quality = table["unbound"][name]
        lines.append(f"| {name} | {hits} of {total} | {quality:.1f} | {old} of {old_total} | {old_quality:.1f} |")
    return "\n".join(lines)


def rebuild_tables(path: Path) -> None:
    """Rewrite the tables of a results file from its rows (its stamp kept)."""
    import json

    record = json.loads(path.read_text())
    record["tables"] = markdown(record["rows"])
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=1))
    temporary.replace(path)
    print(record["tables"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="crop side in px")
    parser.add_argument("--marked", type=int, nargs="+", default=[10, 50, 200], help="how many marked photos the attacker holds (N)")
    parser.add_argument("--targets", type=int, default=50, help="unmarked photos the attacker forges onto")
    parser.add_argument("--strength", type=float, help="fixed strength (default: embed's default, 40 dB PSNR)")
    parser.add_argument("--tables-only", type=Path, metavar="JSON", help="rebuild the tables of a results file and stop")
    add_results_argument(parser)
    args = parser.parse_args()
    if args.tables_only:
        return rebuild_tables(args.tables_only)
    most = max(args.marked)
    pool = crops(photo_paths(), most + args.targets, args.size)
    owner, targets = pool[:most], pool[most:]
    print(f"{len(owner)} photos to mark, {len(targets)} unmarked targets, {args.size} px, strength {args.strength}; "
          f"torch {torch.get_num_threads()} threads", flush=True)
    model = load()
    table: dict[str, dict[str, tuple]] = {}
    for bind in (True, False):
        mode = "bound" if bind else "unbound"
        started = time.perf_counter()
        marked = quantize(torch.cat([embed(photo[None], MESSAGE, key=KEY, strength=args.strength, bind=bind) for photo in owner]))
        print(f"{mode}: marked {len(owner)} photos in {time.perf_counter() - started:.0f} s", flush=True)
        rows = {"marked photos: kept": (count_detected(marked, bind), len(marked), float(psnr(owner, marked).mean())),
                "unmarked photos: forged (false positives)": (count_detected(targets, bind), len(targets), float("inf"))}
        with torch.no_grad():
            raw = (model.decode(marked) > 0).float()
            generator = torch.Generator().manual_seed(0)
            replayed = quantize(torch.cat([model.embed(target[None], raw[i % len(raw)][None], generator=generator,
                                                       refine_steps=60, **({"psnr": 40.0} if args.strength is None
                                                                           else {"strength": args.strength}))
                                           for i, target in enumerate(targets)]))
        rows["replay: forged"] = (count_detected(replayed, bind), len(targets), float(psnr(targets, replayed).mean()))
        for n in args.marked:
            for name, value in attack_rows(owner[:n], marked[:n], targets, bind).items():
                rows[f"N={n} {name}"] = value
        table[mode] = rows
        for name, (hits, total, quality) in rows.items():
            print(f"  {mode:8s} {name:45s} {hits:4d} of {total:<4d} {quality:5.1f} dB", flush=True)
    text = markdown(table)
    print(text)
    path = write_result("watermark_forgery", text, args.results_dir, size=args.size, marked=args.marked,
                        targets=args.targets, strength=args.strength,
                        rows={mode: {k: list(v) for k, v in rows.items()} for mode, rows in table.items()})
    if path:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
