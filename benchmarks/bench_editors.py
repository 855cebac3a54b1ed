"""The small trained editors: edit quality, how broken their edits are by protections, and regeneration.

Three parts (each prints a markdown table for docs/results/):

- ``quality``: each editor's edit on held-out photos (``<photos>/heldout``, centre-cropped to 128 x 128;
  the bundled scenes when that folder is missing): PSNR / SSIM of the edit against the reference edit
  (:mod:`photoshield.models.diffusion.edits`), next to the unedited photo's PSNR and the autoencoder round trip of
  the reference (the ceiling the latent editors can reach), and both against that ceiling.
- ``protection``: bundled face photos (128 x 128). For each editor, the attention protection (DeContext
  on the DiT, FaceShield's attention term on the UNet), the encoder attack (PhotoGuard, on the editor's
  autoencoder), the facial method and same-budget random noise, at each epsilon (standard preset): PSNR /
  SSIM between the edits of the protected and the clean photo (lower = more broken), the DiT's
  context-attention mass (protected / clean), the SFace similarity of the edit's face to the original
  (independent judge; same person >= 0.363), for the protected photo as it is, after JPEG quality 75 and
  after each cheap purification (noise + JPEG, total variation, noisy upscaling).
- ``regeneration``: the invisible-watermark baselines (and ``watermark-diffmark`` when its weights are
  present) on held-out photos at 256 px, under the autoencoder round trip and SDEdit with the UNet
  editor's empty prompt (pure regeneration) at several noise levels: bit accuracy.

    python benchmarks/bench_editors.py [--part quality protection regeneration] [--faces 4] [--epsilons 4 8 12]

Each part writes benchmarks/results/editors_<part>.json (stamped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import CHEAP_PURIFICATIONS, add_results_argument, write_result  # noqa: E402

EDITORS = {"kontext": "editor-kontext-small", "unet": "editor-unet-small"}


def emit(lines: list[str], text: str) -> None:
    """Print a line of a table as it is measured, and keep it for the results file."""
    print(text, flush=True)
    lines.append(text)


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre square crop resized to ``size``."""
    from photoshield.image import resize_to

    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize_to(image[..., top : top + side, left : left + side], (size, size))


def heldout_photos(folder: Path, size: int, limit: int) -> tuple[torch.Tensor, str]:
    """Held-out training-set photos (or the bundled scenes), centre-cropped to ``size``."""
    from photoshield.data import sample, samples
    from photoshield.io import read_image

    files = sorted((folder / "heldout").glob("*.png"))[:limit]
    if files:
        return torch.cat([square(read_image(path), size) for path in files]), f"{len(files)} held-out photos"
    names = samples("scenes")[:limit]
    return torch.cat([square(sample(name), size) for name in names]), f"{len(names)} bundled scenes"


def part_quality(args: argparse.Namespace) -> None:
    from photoshield import models
    from photoshield.models.diffusion.small_editors import KONTEXT_EDIT
    from photoshield.models.diffusion.edits import edit_names
    from training.train_editors import evaluate_edits

    photos, what = heldout_photos(args.photos, 128, args.heldout)
    lines: list[str] = []
    print("\n### Edit quality\n")
    emit(lines, f"{what}, 128 x 128, each editor's default settings; PSNR in dB. Against the reference edit: the "
         "editor's edit, the unedited photo, and the autoencoder round trip of the reference (the ceiling of a latent "
         "editor). Against that round trip: the edit, and the round trip of the unedited photo (an editor that copies "
         "without editing).\n")
    emit(lines, "| editor | edit | edit | unedited | ceiling | edit vs ceiling | copy vs ceiling | s / edit |")
    emit(lines, "|---|---|---|---|---|---|---|---|")
    for name in EDITORS.values():
        editor = models.load(name, device="cpu")
        for edit in [KONTEXT_EDIT] if editor.is_flux else edit_names():
            started = time.perf_counter()
            f = evaluate_edits(editor, photos, edits=[edit])
            seconds = (time.perf_counter() - started) / len(photos)
            emit(lines, f"| {name} | {edit} | {f['edit_psnr']:.2f} | {f['unedited_psnr']:.2f} | {f['autoencoder_psnr']:.2f} "
                 f"| {f['edit_psnr_latent']:.2f} | {f['unedited_psnr_latent']:.2f} | {seconds:.2f} |")
    write_result("editors_quality", "\n".join(lines), args.results_dir, photos=what)


def _sface():
    from photoshield import models

    return models.load("face-judge-sface", device="cpu")


def _sface_similarity(judge, original: torch.Tensor, edited: torch.Tensor) -> float | None:
    from photoshield.errors import PhotoshieldError

    try:
        return judge.similarity(original[0], edited[0])
    except PhotoshieldError:  # the judge finds no face in the edit
        return None


#: what the protected photo goes through before the edit: as it is, a codec, the cheap purifications and the
#: diffusion purifications (DiffPure, GrIDPure through editor-unet-small; not in the default run: --copies)
COPIES = {"as protected": None, "JPEG 75": "jpeg:quality=75", **CHEAP_PURIFICATIONS,
          "DiffPure": "diffpure:strength=0.5,seed=0", "GrIDPure": "gridpure:strength=0.5,seed=0"}
DIFFUSION_COPIES = ("DiffPure", "GrIDPure")


def part_protection(args: argparse.Namespace) -> None:
    from photoshield import attacks, models
    from photoshield.data import sample, samples
    from photoshield.evaluate.editing import edit_disruption, edit_photo, noise_baseline
    from photoshield.models.diffusion.small_editors import KONTEXT_PROMPT
    from photoshield.models.diffusion.edits import EDIT_PROMPTS
    from photoshield.protect import protect

    faces = [square(sample(name), 128) for name in samples("faces")[: args.faces]]
    judge = _sface()
    copies = {label: spec for label, spec in COPIES.items() if spec is None or label in args.copies}
    lines: list[str] = []
    print("\n### Protection against the small editors\n")
    emit(lines, f"{len(faces)} bundled faces, 128 x 128, preset {args.preset}. Each protected photo is edited as it is, "
         "and after each copy below (JPEG, then the cheap purifications that strip adversarial perturbations, "
         "`photoshield.attacks.purify`). edit PSNR / SSIM: that edit against the clean photo's edit (lower = more "
         "broken); mass: DiT context-attention mass, protected / clean (clean photo row: its absolute mass); SFace: "
         "the edit's face against the original (same person >= 0.363; lower = identity lost; '-': the judge found no face in the edits).\n")
    emit(lines, "| editor | method | eps | copy | edit PSNR | edit SSIM | mass | SFace | s / photo |")
    emit(lines, "|---|---|---|---|---|---|---|---|---|")
    for short, name in EDITORS.items():
        editor = models.load(name, device="cpu")
        prompt = KONTEXT_PROMPT if editor.is_flux else EDIT_PROMPTS["warm"]
        clean_edits = [edit_photo(editor, face, prompt, seed=0) for face in faces]
        clean_sface = [_sface_similarity(judge, face, edited) for face, edited in zip(faces, clean_edits)]
        clean_mass = "-"
        if editor.is_flux:  # the absolute mass of the clean photos (the table's mass column is a ratio to it)
            from photoshield.protect.attention import AttentionProtection

            probe = AttentionProtection(editor, prompts=[prompt], faces=False, gradient_checkpointing=False)
            clean_mass = _mean([float(probe.context_mass(face).mean()) for face in faces], 3)
        emit(lines, f"| {name} | (clean photo) | 0 | - | - | - | {clean_mass} | {_mean(clean_sface)} | - |")
        for method in args.methods:
            for eps in args.epsilons:
                rows: dict[str, dict[str, list]] = {label: {} for label in copies}
                seconds = []
                for face, clean_edit in zip(faces, clean_edits):
                    started = time.perf_counter()
                    if method == "noise":
                        protected = noise_baseline(face, eps / 255, seed=3)
                    else:
                        options = {"editor": editor} if method in ("attention", "encoder") else {}
                        if method == "attention" and editor.is_flux:
                            options["prompts"] = [prompt]
                        protected = protect(face, method=method, epsilon=eps / 255, preset=args.preset,
                                            steps=args.steps, progress=False, **options).image
                    seconds.append(time.perf_counter() - started)
                    for label, spec in copies.items():
                        photo = protected if spec is None else attacks.parse(spec)(
                            protected, generator=torch.Generator().manual_seed(0))
                        figures = edit_disruption(editor, face, photo, prompt, faces=False, edited_clean=clean_edit,
                                                  seed=0)
                        row = rows[label]
                        row.setdefault("psnr", []).append(figures["psnr_db"])
                        row.setdefault("ssim", []).append(figures["ssim"])
                        row.setdefault("mass", []).append(figures.get("context_mass_ratio"))
                        row.setdefault("sface", []).append(
                            _sface_similarity(judge, face, edit_photo(editor, photo, prompt, seed=0)))
                for label, row in rows.items():
                    emit(lines, f"| {name} | {method} | {eps:g} | {label} | {_mean(row['psnr'])} "
                         f"| {_mean(row['ssim'], 3)} | {_mean(row['mass'])} | {_mean(row['sface'])} "
                         f"| {statistics.mean(seconds):.1f} |")
    write_result(args.name or "editors_protection", "\n".join(lines), args.results_dir, faces=len(faces), preset=args.preset,
                 epsilons=args.epsilons, copies=copies)


def _mean(values: list, digits: int = 2) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    text = f"{statistics.mean(found):.{digits}f}"
    return text if len(found) == len(values) else f"{text} ({len(values) - len(found)} -)"


class RefinedMark:
    """photoshield's watermark as ``embed()`` applies it: sampled, then refined (optionally through attacks)."""

    def __init__(self, model, through: tuple = ()):
        self.model, self.through, self.n_bits = model, through, model.n_bits

    def embed(self, photos: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        from photoshield.watermark import DEFAULT_REFINE_STEPS

        return self.model.embed(photos, bits, generator=torch.Generator().manual_seed(0),
                                refine_steps=DEFAULT_REFINE_STEPS, refine_through=self.through).detach()

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(images)


def part_regeneration(args: argparse.Namespace) -> None:
    from photoshield import attacks, models
    from photoshield.errors import ModelNotFoundError
    from photoshield.watermark.baselines import baseline, names

    photos, what = heldout_photos(args.photos, 256, args.heldout)
    unet = models.load("editor-unet-small", device="cpu")
    vae = models.load("autoencoder-small", device="cpu")
    grid = {"none": None, "autoencoder round trip": attacks.get("vae", model=vae, seed=0)}
    for noise in args.sdedit:
        grid[f"SDEdit {noise}"] = attacks.get("sdedit", model=unet, noise=noise, steps=20, seed=0)
    marks = {name: baseline(name) for name in names()}
    try:
        from photoshield.watermark import load as load_watermark

        model = load_watermark()
        marks["diffmark (photoshield)"] = RefinedMark(model)
        marks["diffmark refined through the autoencoder"] = RefinedMark(model, through=(grid["autoencoder round trip"],))
    except ModelNotFoundError:
        print("(watermark-diffmark weights not found: only the baselines are measured)")
    lines: list[str] = []
    print("\n### Regeneration with the small models against watermarks\n")
    emit(lines, f"{what}, 256 x 256; SDEdit through `editor-unet-small` with the empty prompt (a pure regeneration), "
         "20-step schedule; bit accuracy (50 % is chance).\n")
    emit(lines, "| watermark | " + " | ".join(grid) + " |")
    emit(lines, "|---|" + "---|" * len(grid))
    generator = torch.Generator().manual_seed(0)
    for label, mark in marks.items():
        n_bits = getattr(mark, "bits", None) or mark.n_bits
        bits = torch.randint(0, 2, (photos.shape[0], n_bits), generator=generator)
        marked = mark.embed(photos, bits if hasattr(mark, "bits") else bits.float())
        cells = []
        for attack in grid.values():
            seen = marked if attack is None else attack(marked).clamp(0, 1)
            decoded = mark.decode(seen)
            decoded = decoded if hasattr(mark, "bits") else (decoded > 0).long()
            cells.append(f"{float((decoded.cpu() == bits).float().mean()) * 100:.1f} %")
        emit(lines, f"| {label} | " + " | ".join(cells) + " |")
    write_result("editors_regeneration", "\n".join(lines), args.results_dir, photos=what, sdedit=args.sdedit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["quality", "protection", "regeneration"],
                        choices=["quality", "protection", "regeneration"])
    parser.add_argument("--photos", type=Path, default=Path("runs/watermark/photos"))
    parser.add_argument("--heldout", type=int, default=20, help="held-out photos for quality and regeneration")
    parser.add_argument("--faces", type=int, default=4, help="bundled face photos for the protection table")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[4, 8, 12], help="L_inf budgets in /255")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--steps", type=int, default=None, help="PGD steps (default: the preset's)")
    parser.add_argument("--sdedit", type=float, nargs="+", default=[0.2, 0.4, 0.6], help="SDEdit noise levels")
    parser.add_argument("--editors", nargs="+", default=list(EDITORS), choices=list(EDITORS))
    parser.add_argument("--methods", nargs="+", default=["attention", "encoder", "facial", "noise"],
                        choices=["attention", "encoder", "facial", "noise"], help="protections in the protection table")
    parser.add_argument("--copies", nargs="+",
                        default=[label for label, spec in COPIES.items() if spec and label not in DIFFUSION_COPIES],
                        choices=[label for label, spec in COPIES.items() if spec],
                        help="what the protected photo goes through before the edit (besides as it is)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", help="results file name of the protection table (default editors_protection)")
    add_results_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for short in list(EDITORS):
        if short not in args.editors:
            EDITORS.pop(short)
    for part in args.part:
        {"quality": part_quality, "protection": part_protection, "regeneration": part_regeneration}[part](args)


if __name__ == "__main__":
    main()
