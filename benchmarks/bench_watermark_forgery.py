"""Can someone without the key forge or remove an owner's watermark? Three attacks, on the bundled photos.

* **replay**: read the raw bits of one marked photo with the public decoder and embed the same bits into
  another photo with the public embedder (no key, no original).
* **average**: estimate the mark as the mean high-pass (x - gaussian_blur(x, sigma 2)) of N marked photos
  and add it (x1 and x2) to unmarked photos (arXiv 2406.09026).
* **remove**: subtract four times that estimate from the marked photos.

Every photo is marked with the same key and message (the owner's); "forged" counts unmarked photos that
then verify as the owner's at the default FPR, "removed" counts marked photos that no longer do.
Usage::

    python benchmarks/bench_watermark_forgery.py [--size 256] [--marked 10] [--strength 1.0]

Prints a markdown table and writes benchmarks/results/watermark_forgery.json (stamped).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import kornia
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, stamp  # noqa: E402

from photoshield import data  # noqa: E402
from photoshield.image import quantize, resize_to  # noqa: E402
from photoshield.metrics import psnr  # noqa: E402
from photoshield.watermark import embed, load, verify  # noqa: E402

MESSAGE, KEY = "ID-004217", "owner's secret"


def high_pass(images: torch.Tensor) -> torch.Tensor:
    return images - kornia.filters.gaussian_blur2d(images, (13, 13), (2.0, 2.0), border_type="reflect")


def detected(images: torch.Tensor) -> list[bool]:
    results = verify(images, MESSAGE, key=KEY)
    return [r.detected for r in (results if isinstance(results, list) else [results])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="photos are resized to size x size")
    parser.add_argument("--marked", type=int, default=10, help="how many marked photos the attacker holds (N)")
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "watermark_forgery.json")
    args = parser.parse_args()
    names = data.samples()
    if len(names) < args.marked + 2:
        raise SystemExit(f"need at least {args.marked + 2} bundled photos, have {len(names)}")
    photos = torch.cat([resize_to(data.sample(name), (args.size, args.size)) for name in names])
    owner, others = photos[: args.marked], photos[args.marked :]
    print(f"{len(owner)} marked photos held by the attacker, {len(others)} unmarked targets, {args.size} px, "
          f"strength {args.strength}; torch {torch.get_num_threads()} threads", flush=True)
    marked = quantize(torch.cat([embed(photo[None], MESSAGE, key=KEY, strength=args.strength) for photo in owner]))
    model = load()
    rows = {"owner's marked photos detected": (sum(detected(marked)), len(marked), float(psnr(owner, marked).mean())),
            "unmarked targets detected (false positives)": (sum(detected(others)), len(others), float("inf"))}
    with torch.no_grad():  # replay: raw bits of marked photo i % N into target i, with the public model
        raw = (model.decode(marked) > 0).float()
        generator = torch.Generator().manual_seed(0)
        replayed = quantize(torch.cat([model.embed(target[None], raw[i % len(raw)][None], strength=args.strength,
                                                   generator=generator) for i, target in enumerate(others)]))
    rows["replay: raw bits copied into unmarked photos"] = (sum(detected(replayed)), len(others), float(psnr(others, replayed).mean()))
    estimate = high_pass(marked).mean(0, keepdim=True)
    for scale in (1, 2):
        forged = quantize((others + scale * estimate).clamp(0, 1))
        rows[f"average x{scale}: estimate added to unmarked photos"] = (sum(detected(forged)), len(others), float(psnr(others, forged).mean()))
    stripped = quantize((marked - 4 * estimate).clamp(0, 1))
    kept = sum(detected(stripped))
    rows["remove: 4 x estimate subtracted (still detected)"] = (kept, len(marked), float(psnr(owner, stripped).mean()))
    lines = ["| attack | verified as the owner's | PSNR dB vs the photo before |", "|---|---|---|"]
    lines += [f"| {name} | {hits} of {total} | {quality:.1f} |" for name, (hits, total, quality) in rows.items()]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".tmp")
    temporary.write_text(json.dumps({"stamp": stamp("cpu"), "size": args.size, "marked": args.marked, "strength": args.strength,
                                     "photos": names, "rows": {k: list(v) for k, v in rows.items()}, "table": text}, indent=1))
    temporary.replace(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
