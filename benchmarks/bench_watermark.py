"""Watermark quality and robustness on the held-out bundled sample photos, at their native sizes.

    python benchmarks/bench_watermark.py [--model PATH] [--threads 1] [--json out.json]

For every bundled sample (none of them was trained on): embed a random ID, round to 8 bits, then
PSNR/SSIM of the marked photo, and bit accuracy / detection at FPR 1e-6 (message known) clean and
after JPEG 75 and 50, resize 0.5, crop 0.75 and blur 1; plus embed and decode seconds at 512 x 512.
The comparison against the invisible-watermark baselines is bench_watermark_peers.py's. Writes
benchmarks/results/watermark_bundled.json (stamped).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from _common import add_results_argument, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="watermark-diffmark", help="registry name or checkpoint path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from photoshield import attacks, data
    from photoshield.metrics import ssim
    from photoshield.image import quantize
    from photoshield.watermark import embed, load, verify

    model = load(args.model, device="cpu")
    checks = {"clean": None, "jpeg75": attacks.get("jpeg", quality=75), "jpeg50": attacks.get("jpeg", quality=50),
              "resize0.5": attacks.get("resize", scale=0.5), "crop0.75": attacks.get("crop", area=0.75),
              "blur1": attacks.get("blur", sigma=1.0)}
    rows = []
    for index, name in enumerate(data.samples()):
        photo = data.sample(name)
        message = f"ID-{index:04d}"
        marked = quantize(embed(photo, message, key="bench", model=model, seed=index))
        mse = (marked - photo).pow(2).mean().clamp_min(1e-12)
        row = {"photo": name, "size": list(photo.shape[-2:]), "psnr": float(10 * torch.log10(1 / mse)),
               "ssim": float(ssim(marked, photo).mean())}
        for check, attack in checks.items():
            seen = marked if attack is None else attack(marked)
            result = verify(seen, message, key="bench", model=model)
            row[f"acc_{check}"], row[f"det_{check}"] = result.bit_accuracy, result.detected
        rows.append(row)
        print(json.dumps(row))
    square = torch.rand(1, 3, 512, 512)
    start = time.perf_counter()
    marked = embed(square, "x", model=model)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    verify(marked, "x", model=model)
    decode_s = time.perf_counter() - start
    summary = {"photos": len(rows), "psnr": sum(r["psnr"] for r in rows) / len(rows),
               "psnr_min": min(r["psnr"] for r in rows),
               "ssim": sum(r["ssim"] for r in rows) / len(rows), "embed_s_512": embed_s, "decode_s_512": decode_s}
    for check in checks:
        summary[f"acc_{check}"] = sum(r[f"acc_{check}"] for r in rows) / len(rows)
        summary[f"tpr_{check}"] = sum(r[f"det_{check}"] for r in rows) / len(rows)
    print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in summary.items()}))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"rows": rows, "summary": summary}, handle, indent=1)
    lines = [f"The {len(rows)} bundled sample photos (none trained on) at their native sizes, each marked with its own "
             f"ID by `embed` with the defaults (the strongest mark that keeps 40 dB, bound to the photo's content, "
             f"refined), rounded to 8 bits: PSNR {summary['psnr']:.1f} dB on average, {summary['psnr_min']:.1f} dB at the "
             f"lowest, SSIM {summary['ssim']:.3f}. Bit accuracy and detections at FPR 1e-6 "
             "(message known):", "", "| copy | bit accuracy | detected |", "|---|---|---|"]
    lines += [f"| {check} | {100 * summary[f'acc_{check}']:.1f} % | {round(summary[f'tpr_{check}'] * len(rows))} of {len(rows)} |"
              for check in checks]
    lines += ["", f"Embed {summary['embed_s_512']:.2f} s and verify {summary['decode_s_512']:.3f} s for a 512 x 512 photo "
              f"({torch.get_num_threads()} threads; time on an idle machine)."]
    write_result("watermark_bundled", "\n".join(lines), args.results_dir, rows=rows, summary=summary)


if __name__ == "__main__":
    main()
