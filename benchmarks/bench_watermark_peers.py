"""photoshield's watermark against the invisible-watermark baselines, and its empirical false-positive rate.

    python benchmarks/bench_watermark_peers.py [--model watermark-diffmark] [--photos runs/watermark/photos]
        [--limit 20] [--strengths default 1] [--grids standard purify] [--refine-steps 0 60] [--search] [--refine-for-crops] [--skip-baselines]
        [--fpr-crops 10000] [--json out.json]

Peers: on the held-out photos (``<photos>/heldout``, never trained on; the bundled samples when that
folder is missing) at their native sizes, each method marks every photo with a random payload
(photoshield: a 9-character ID through the 96-bit payload; dwtDct / dwtDctSvd / RivaGAN: 32 random
bits, their usual payload), then PSNR / SSIM of the marked photo, and under each attack of the
``standard`` grid plus the ``autoencoder-small`` round trip and the graphics face swap: bit accuracy
and the true-positive rate at FPR 1e-6 (the exact binomial test of the matching bits, message known,
for every method alike: 72 of 96 bits, 30 of 32; photoshield's marks are unbound here, ``bind=False``, so
that the bits compare with one codeword; a bound mark carries the same bits under its photo's key and
needs 74). Embed and decode seconds per 512 x 512 photo.

False positives: ``--fpr-crops`` random crops (64 to 512 px, any aspect) of the unmarked training and
held-out photos, each verified against a fixed message and key; the share detected at several
claimed rates, and a KS test of the p-values' uniformity (they are discrete, so the KS statistic is
against the exact binomial null). Writes benchmarks/results/watermark_peers.json (stamped).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_results_argument, write_result  # noqa: E402

FPR = 1e-6


def _strength(text: str) -> float | None:
    return None if text == "default" else float(text)


def held_out(folder: Path, limit: int) -> tuple[list[torch.Tensor], str]:
    from photoshield.data import sample, samples
    from photoshield.io import read_image

    files = sorted((folder / "heldout").glob("*.png"))[:limit]
    if files:
        return [read_image(path) for path in files], f"{len(files)} held-out photos"
    names = samples()[:limit]
    return [sample(name) for name in names], f"{len(names)} bundled samples"


def attack_grid(grids: tuple[str, ...] = ("standard",)) -> dict:
    from photoshield import attacks, models

    grid = {"none": None}
    for name in grids:
        for attack in attacks.grid(name):
            grid[attack.describe()] = attack
    grid["autoencoder-small round trip"] = attacks.get("vae", model=models.load("autoencoder-small", device="cpu"))
    grid["face swap"] = attacks.get("faceswap", seed=0)
    return grid


class Ours:
    """photoshield's watermark behind the same embed / bits interface as the baselines."""

    def __init__(self, model: str, strength: float | None = 1.0, refine_steps: int = 60, search: bool = False,
                 for_crops: bool = False):
        from photoshield.watermark import load

        self.model = load(model, device="cpu")
        self.bits = self.model.n_bits
        self.strength, self.refine_steps, self.search, self.for_crops = strength, refine_steps, search, for_crops
        self.name = "photoshield (diffmark)" + (" default (40 dB)" if strength is None else f" strength {strength:g}")
        self.name += " no refinement" if refine_steps == 0 else ("" if refine_steps == 60 else f" refine {refine_steps}")
        self.name += " refined for crops" if for_crops else ""
        self.name += " + search" if search else ""

    def embed(self, photo: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from photoshield.watermark import embed, payload

        message = f"ID-{index:05d}"
        expected = payload.encode(message, key="peers")
        from photoshield.watermark.sync import realigned_crops

        through = realigned_crops(seed=index) if self.for_crops else ()
        marked = embed(photo, message, key="peers", strength=self.strength, model=self.model, seed=index, bind=False,
                       refine_steps=self.refine_steps, refine_through=through)
        return marked, expected.long()

    def read(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (self.model.decode(image) > 0).long()[0]

    def verify_searched(self, image: torch.Tensor, index: int):
        from photoshield.watermark import verify

        return verify(image, f"ID-{index:05d}", key="peers", fpr=FPR, model=self.model, search=True, bind=False)


GEOMETRIC = ("crop", "rotation")


class Peer:
    def __init__(self, name: str):
        from photoshield.watermark.baselines import baseline

        self.method = baseline(name, bits=32)
        self.bits = 32
        self.name = name

    def embed(self, photo: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        bits = torch.randint(0, 2, (self.bits,), generator=torch.Generator().manual_seed(index))
        return self.method.embed(photo, bits), bits

    def read(self, image: torch.Tensor) -> torch.Tensor:
        return self.method.decode(image)[0].cpu()


def peers(args: argparse.Namespace) -> tuple[dict, str]:
    from photoshield.metrics import psnr, ssim
    from photoshield.image import quantize
    from photoshield.watermark.baselines import names
    from photoshield.watermark.payload import binomial_p_value

    photos, what = held_out(args.photos, args.limit)
    grid = attack_grid(tuple(args.grids))
    methods = [Ours(args.model, strength, steps) for strength in args.strengths for steps in args.refine_steps]
    methods += [Ours(args.model, strength, args.refine_steps[-1], search=True) for strength in args.strengths if args.search]
    methods += [Ours(args.model, strength, args.refine_steps[-1], search=True, for_crops=True)
                for strength in args.strengths if args.refine_for_crops]
    methods += [] if args.skip_baselines else [Peer(name) for name in names()]
    table = {}
    for method in methods:
        searching = getattr(method, "search", False)
        rows = {"psnr": [], "ssim": [], **{f"acc {a}": [] for a in grid}, **{f"tpr {a}": [] for a in grid}}
        for index, photo in enumerate(photos):
            marked, bits = method.embed(photo, index)
            marked = quantize(marked)
            rows["psnr"].append(float(psnr(marked, photo)))
            rows["ssim"].append(float(ssim(marked, photo)))
            for label, attack in grid.items():
                seen = marked if attack is None else attack(marked).clamp(0, 1)
                if searching and any(word in label for word in GEOMETRIC):
                    found = method.verify_searched(seen, index)
                    rows[f"acc {label}"].append(found.bit_accuracy)
                    rows[f"tpr {label}"].append(float(found.detected))
                    continue
                # with search, a plain read detects at p <= FPR / 2 (the union bound's share): a lower bound
                matches = int((method.read(seen) == bits).sum())
                rows[f"acc {label}"].append(matches / method.bits)
                rows[f"tpr {label}"].append(float(binomial_p_value(matches, method.bits) <= FPR / (2 if searching else 1)))
        table[method.name] = {key: float(np.mean(values)) for key, values in rows.items()}
        square = torch.rand(1, 3, 512, 512)
        started = time.perf_counter()
        marked, _ = method.embed(square, 0)
        table[method.name]["embed_s_512"] = time.perf_counter() - started
        started = time.perf_counter()  # a searching method's read is the search (it always runs the grid)
        method.verify_searched(marked, 0) if searching else method.read(marked)
        table[method.name]["decode_s_512"] = time.perf_counter() - started
        print(json.dumps({method.name: {k: round(v, 4) for k, v in table[method.name].items()}}), flush=True)

    lines = [f"Watermarks on {what} at native sizes: bit accuracy % / TPR % at FPR 1e-6 (message known; with "
             "`+ search`, the crop and rotation rows are read by `verify(search=True)` and the others by the plain "
             "read at FPR 5e-7, the union bound's share).", "",
             "| attack | " + " | ".join(m.name for m in methods) + " |", "|---|" + "---|" * len(methods),
             "| PSNR / SSIM | " + " | ".join(f"{table[m.name]['psnr']:.1f} dB / {table[m.name]['ssim']:.3f}" for m in methods) + " |"]
    for label in grid:
        cells = [f"{100 * table[m.name][f'acc {label}']:.1f} / {100 * table[m.name][f'tpr {label}']:.0f}" for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| embed / decode s (512 px) | " + " | ".join(
        f"{table[m.name]['embed_s_512']:.2f} / {table[m.name]['decode_s_512']:.3f}" for m in methods) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    return table, text


def false_positives(args: argparse.Namespace) -> tuple[dict, str]:
    from scipy import stats

    from photoshield.watermark import load, payload

    model = load(args.model, device="cpu")
    images = clean_photos(args.photos)
    rng = random.Random(0)
    expected = payload.encode("ID-00042", key="fpr").numpy().astype(np.uint8)
    n_bits = len(expected)
    p_values, searched = [], 0
    started = time.perf_counter()
    for _ in range(args.fpr_crops):
        crop = random_crop(rng.choice(images), rng, min_side=64)
        with torch.no_grad():
            hard = (model.decode(crop) > 0).numpy().astype(np.uint8)[0]
        p_values.append(payload.binomial_p_value(int((hard == expected).sum()), n_bits))
        searched += int(payload.match(hard, key="fpr").detected)
    p = np.array(p_values)
    # the exact null CDF of the binomial tail p-value, for a KS statistic that respects its discreteness
    tails = np.array([payload.binomial_p_value(k, n_bits) for k in range(n_bits + 1)])
    null_values = np.sort(np.unique(tails))
    null_cdf = np.array([sum(stats.binom.pmf(k, n_bits, 0.5) for k in range(n_bits + 1) if tails[k] <= v)
                         for v in null_values])
    empirical = np.array([(p <= v).mean() for v in null_values])
    result = {"crops": len(p), "seconds": time.perf_counter() - started,
              "ks_against_exact_null": float(np.abs(empirical - null_cdf).max()),
              "detected_without_message_at_1e-6": searched}
    for claimed in (1e-1, 1e-2, 1e-3, 1e-6):
        result[f"fpr_at_{claimed:g}"] = float((p <= claimed).mean())
    text = (f"False positives on {len(p)} random clean crops (64-512 px) of the unmarked photos, each verified against "
            "one message and key:\n\n| claimed FPR | 0.1 | 0.01 | 0.001 | 1e-6 |\n|---|---|---|---|---|\n| measured | "
            + " | ".join(f"{result[f'fpr_at_{c:g}']:.4f}" for c in (1e-1, 1e-2, 1e-3, 1e-6)) + " |\n\n"
            f"KS distance to the exact binomial null: {result['ks_against_exact_null']:.4f}; "
            f"detected with no message given (BCH search, FPR 1e-6): {searched} of {len(p)}.")
    print("\n" + text)
    return result, text


def random_crop(image: torch.Tensor, rng: random.Random, min_side: int, max_side: int = 512) -> torch.Tensor:
    """A random crop of any aspect ratio (each side from ``min_side`` up), shrunk to at most ``max_side`` px."""
    from photoshield.image import resize_to, working_size

    height, width = image.shape[-2:]
    crop_h, crop_w = rng.randint(min(min_side, height), height), rng.randint(min(min_side, width), width)
    top, left = rng.randrange(height - crop_h + 1), rng.randrange(width - crop_w + 1)
    crop = image[..., top : top + crop_h, left : left + crop_w]
    return resize_to(crop, working_size(crop_h, crop_w, max_side))


def clean_photos(folder: Path) -> list[torch.Tensor]:
    """The unmarked training and held-out photos (the bundled samples when they are not fetched)."""
    from photoshield.io import read_image

    files = sorted((folder / "train").glob("*.png")) + sorted((folder / "heldout").glob("*.png"))
    if not files:
        from photoshield.data import sample_path, samples

        files = [sample_path(name) for name in samples()]
    return [read_image(path) for path in files]


def searched_false_positives(args: argparse.Namespace) -> tuple[dict, str]:
    """verify(search=True) on ``--fpr-search-crops`` clean crops: the share detected at several claimed rates."""
    from photoshield.watermark import load, verify

    model = load(args.model, device="cpu")
    images, rng, count = clean_photos(args.photos), random.Random(1), args.fpr_search_crops
    p_values = []
    for _ in range(count):
        crop = random_crop(rng.choice(images), rng, min_side=128)
        p_values.append(verify(crop, "ID-00042", key="fpr", model=model, search=True).p_value)
    p = np.array(p_values)
    rates = {f"search_fpr_at_{c:g}": float((p <= c).mean()) for c in (1e-1, 1e-2, 1e-3)}
    text = (f"`verify(search=True)` on {count} random clean crops (128-512 px):\n\n"
            "| claimed FPR | 0.1 | 0.01 | 0.001 |\n|---|---|---|---|\n| measured | "
            + " | ".join(f"{rates[f'search_fpr_at_{c:g}']:.3f}" for c in (1e-1, 1e-2, 1e-3)) + " |\n\n"
            f"Smallest p-value: {p.min():.3g}.")
    print("\n" + text)
    return {"search_crops": count, **rates, "search_min_p": float(p.min())}, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="watermark-diffmark", help="registry name or checkpoint path")
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--limit", type=int, default=20, help="held-out photos for the peer table")
    parser.add_argument("--fpr-crops", type=int, default=10_000, help="clean crops for the false-positive rate (0: skip)")
    parser.add_argument("--fpr-search-crops", type=int, default=0,
                        help="clean crops verified with search=True (~5 s each; 0: skip)")
    parser.add_argument("--strengths", type=_strength, nargs="+", default=[None],
                        help="photoshield's embed strengths ('default': embed's default, the strongest mark at 40 dB)")
    parser.add_argument("--grids", nargs="+", default=["standard"], help="attack grids (e.g. standard purify)")
    parser.add_argument("--refine-steps", type=int, nargs="+", default=[60], help="photoshield's informed-embedding steps")
    parser.add_argument("--search", action="store_true",
                        help="also photoshield with verify(search=True) on the crop and rotation rows (~5 s a read)")
    parser.add_argument("--refine-for-crops", action="store_true",
                        help="also photoshield refined through sync.realigned_crops(), read with the search")
    parser.add_argument("--skip-baselines", action="store_true", help="photoshield's rows only")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures, texts = {}, []
    if not args.skip_peers:
        figures["peers"], text = peers(args)
        texts.append(text)
    if args.fpr_crops:
        figures["false_positives"], text = false_positives(args)
        texts.append(text)
    if args.fpr_search_crops:
        figures["false_positives_searched"], text = searched_false_positives(args)
        texts.append(text)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    write_result("watermark_peers", "\n\n".join(texts), args.results_dir, **figures)


if __name__ == "__main__":
    main()
