"""Render the benchmarks' stamped results (benchmarks/results/*.json) as docs/results/*.md.

Every page starts with where its numbers come from (command, commit, date, torch, threads, device)
and shows the tables the benchmark itself wrote; nothing is typed in by hand. ``docs/results/index.md``
lists the pages, and the benchmarks that have no results file yet with the command that measures them.
Usage::

    python benchmarks/render_results.py            # every results file that has a renderer, and the index
    python benchmarks/render_results.py --check    # exit 1 when a page differs from what its JSON renders to
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DOCS = REPO / "docs" / "results"


def _provenance(stamp: dict[str, Any]) -> str:
    dirty = " (with uncommitted changes)" if stamp.get("git_uncommitted_changes") else ""
    return (f"Measured with `{stamp.get('command')}` at commit `{str(stamp.get('git_commit'))[:10]}`{dirty} on "
            f"{stamp.get('date')}, torch {stamp.get('torch')}, {stamp.get('threads')} threads, {stamp.get('device')} "
            f"({stamp.get('machine', '')}).")


def _tables(result: dict[str, Any]) -> str:
    return result.get("tables") or result.get("table") or ""


def _fuzz(result: dict[str, Any]) -> str:
    lines = ["| outcome | files |", "|---|---|"]
    lines += [f"| {name} | {count:,} |" for name, count in result["counts"].items()]
    lines += ["", f"{sum(result['counts'].values()):,} files in {result['seconds']:.1f} s; worker peak memory "
              f"{result['worker_peak_rss_mb']:.0f} MiB."]
    return "\n".join(lines)


def _thresholds(result: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    lines = ["| model | same person when | TPR photo pairs | TPR video pairs >= 2 s apart | FPR (identity-balanced) "
             "| held-out TPR | held-out FPR |", "|---|---|---|---|---|---|---|"]
    for name, model in result["models"].items():
        chosen = model["chosen"]
        sign = "<=" if model["metric"] == "distance" else ">="
        calibration, held = chosen["calibration"], chosen["held_out"]
        lines.append(
            f"| {name} | {model['metric']} {sign} {chosen['threshold']:.4g} ({chosen['rule']}) | "
            f"{pct(calibration['photo']['tpr'])} ({calibration['photo']['pairs']}) | "
            f"{pct(calibration['video-far']['tpr'])} ({calibration['video-far']['pairs']}) | "
            f"{pct(calibration['different']['fpr'])} ({calibration['different']['pairs']} pairs) | "
            f"{pct(held['photo']['tpr'])} ({held['photo']['pairs']}) | {pct(held['different']['fpr'])} ({held['different']['pairs']}) |")
    return "\n".join(lines)


# name -> (title, renderer, the command that measures it); a page exists once benchmarks/results/<name>.json does.
PAGES: dict[str, tuple[str, Callable[[dict[str, Any]], str], str]] = {
    "facial_protection": ("Facial protection: leave-one-out, SFace and dlib, at face PSNR 32 / 35 / 38 dB", _tables,
                          "python benchmarks/bench_facial_protection.py"),
    "facial_choices": ("Facial protection: which choices carry over to SFace and dlib (bundled faces)", _tables,
                       "python benchmarks/bench_facial_choices.py"),
    "facial_choices_diffusion": ("Facial protection after diffusion purification (SFace and dlib)", _tables,
                                 "python benchmarks/bench_facial_choices.py --variants \"L_inf 8/255\" "
                                 "\"PSNR 35 dB + MI/TI/DI (default)\" --copies png diffpure gridpure "
                                 "--name facial_choices_diffusion"),
    "facial_choices_frequency": ("Facial protection: low-frequency perturbations against SFace and dlib (bundled faces)",
                                 _tables,
                                 "python benchmarks/bench_facial_choices.py --variants \"PSNR 35 dB + MI/TI/DI (default)\" "
                                 "\"default, TI 3 px\" \"default + half-size EOT\" \"default, TI 3 px + half-size EOT\" "
                                 "--name facial_choices_frequency"),
    "facial_choices_heldout": ("Facial protection on held-out faces (SFace and dlib)", _tables,
                               "python benchmarks/bench_facial_choices.py --photos heldout"),
    "facial_protection_robust": ("Facial protection with the robust preset at L_inf 8/255 "
                                 "(purifications in the expectation)", _tables,
                                 "python benchmarks/bench_facial_protection.py --epsilons 8 --preset robust "
                                 "--output benchmarks/results/facial_protection_robust.json"),
    "facial_protection_eps6": ("Facial protection at L_inf 6/255 (face-region PSNR near 34 dB)", _tables,
                               "python benchmarks/bench_facial_protection.py --epsilons 6 "
                               "--output benchmarks/results/facial_protection_eps6.json"),
    "protect_engine": ("Protection engine cost", _tables, "python benchmarks/bench_protect_engine.py"),
    "attention_cost": ("Attention protection: time and memory per step", _tables,
                       "BENCH_THREADS=1 python benchmarks/bench_attention.py --steps 2"),
    "attention_memory_estimate": ("Attention protection: estimated GPU memory of full-size editors", _tables,
                                  "python benchmarks/bench_attention.py --estimate-only"),
    "deformation": ("Deformation protection: white-box and transfer between two segmenters", _tables,
                    "python benchmarks/bench_deformation.py --limit 5 --workers 2"),
    "deformation_timing": ("Deformation protection: seconds a 512 px photo on 2 CPU cores", _tables,
                           "python benchmarks/bench_deformation.py --limit 1 --threads 2 --variants feature uad "
                           "--protect-with sam-litemedsam --judges sam-litemedsam --purify --name deformation_timing"),
    "deformation_tuning": ("Deformation protection: settings tuned on training photos", _tables,
                           "python benchmarks/bench_deformation_tuning.py --workers 2 --count 4 --settings uad-40 uad-15 "
                           "feature-15 uad-15-mi-di feature-15-mi-di uad-15-blocks2-7"),
    "deformation_tuning_embedding": ("Deformation protection: the embedding and the transfer recipe, tuned on training photos",
                                     _tables,
                                     "python benchmarks/bench_deformation_tuning.py --workers 2 --count 4 --settings "
                                     "feature-15-emb feature-15-emb-ti uad-15-emb --name deformation_tuning_embedding"),
    "deformation_diffusion": ("Deformation protection after DiffPure and GrIDPure", _tables,
                              "python benchmarks/bench_deformation.py --limit 5 --workers 2 --variants feature noise "
                              "--protect-with sam-litemedsam --purify diffpure:strength=0.5,seed=0 gridpure:strength=0.5,seed=0 "
                              "--name deformation_diffusion"),
    "deformation_robust": ("Deformation protection with the robust preset (cheap purifications in the expectation)", _tables,
                           "python benchmarks/bench_deformation.py --limit 5 --workers 2 --variants feature noise "
                           "--protect-with sam-litemedsam --preset robust --name deformation_robust"),
    "deformation_tuning_boxes": ("Deformation protection: a prompt-agnostic random-box mask term, tuned on training photos",
                                 _tables,
                                 "python benchmarks/bench_deformation_tuning.py --workers 2 --count 4 --settings boxes-15 "
                                 "feature-15-emb-boxes feature-15-emb-ti --name deformation_tuning_boxes"),
    "deformation_tuning_layers": ("Deformation protection: which encoder blocks, tuned on training photos", _tables,
                                  "python benchmarks/bench_deformation_tuning.py --workers 2 --count 4 --settings "
                                  "feature-15-early-ti feature-15-all-ti --name deformation_tuning_layers"),
    "deformation_purify": ("Deformation protection after the cheap purifications", _tables,
                           "python benchmarks/bench_deformation.py --limit 5 --workers 2 --variants feature uad noise "
                           "--name deformation_purify"),
    "editors_quality": ("Small editors: edit quality", _tables,
                        "python benchmarks/bench_editors.py --part quality"),
    "editors_protection": ("Protection against the small editors", _tables,
                           "python benchmarks/bench_editors.py --part protection --epsilons 8"),
    "editors_protection_diffusion": ("Protection against the small editors after diffusion purification", _tables,
                                     "python benchmarks/bench_editors.py --part protection --epsilons 8 "
                                     "--copies DiffPure GrIDPure --name editors_protection_diffusion"),
    "editors_protection_robust": ("Protection against the small editors with the robust preset "
                                  "(cheap purifications in the expectation)", _tables,
                                  "python benchmarks/bench_editors.py --part protection --epsilons 8 --preset robust "
                                  "--name editors_protection_robust"),
    "editors_regeneration": ("Regeneration by the small models against watermarks", _tables,
                             "python benchmarks/bench_editors.py --part regeneration --heldout 10"),
    "watermark_bundled": ("Watermark on the bundled photos", _tables, "python benchmarks/bench_watermark.py"),
    "watermark_peers": ("Watermark against its peers, and its false-positive rate", _tables,
                        "python benchmarks/bench_watermark_peers.py --limit 10 --grids standard purify --search "
                        "--fpr-crops 10000"),
    "watermark_geometry": ("Watermark through crops, rotations and aspect changes", _tables,
                           "python benchmarks/bench_watermark_geometry.py --limit 20 --exhaustive 5 --fpr-crops 2000"),
    "watermark_forgery": ("Watermark forgery and removal without the key", _tables,
                          "python benchmarks/bench_watermark_forgery.py"),
    "watermark_refinement": ("Watermark: informed embedding", _tables,
                             "python benchmarks/bench_watermark_refine.py --parts refinement --through-autoencoder"),
    "watermark_decoder_branches": ("Watermark decoder: what each branch reads", _tables,
                                   "python benchmarks/bench_watermark_refine.py --parts decoder"),
    "watermark_capacity": ("Watermark decoder: capacity at a given PSNR", _tables,
                           "python benchmarks/bench_watermark_refine.py --parts capacity"),
    "watermark_whitening": ("Watermark: the whitened read-out", _tables,
                            "python benchmarks/bench_watermark_whitening.py --limit 10 --strengths 0.5"),
    "watermark_decoder_start": ("Watermark decoder: the start of training", _tables,
                                "python benchmarks/bench_watermark_decoder_start.py"),
    "generative_attacks": ("Face swap and autoencoder round trip", _tables,
                           "python benchmarks/bench_generative_attacks.py"),
    "attacks_throughput": ("Attack throughput", _tables, "python benchmarks/bench_attacks.py"),
    "models": ("Model time and memory", _tables, "python benchmarks/bench_models.py"),
    "face_thresholds": ("Same-person thresholds of the identity models", _thresholds,
                        "python benchmarks/calibrate_face_thresholds.py"),
    "fuzz_io": ("Image reading under a fuzz corpus", _fuzz, "python benchmarks/fuzz_io.py --count 2000"),
}


def page_text(name: str) -> str:
    """The markdown of docs/results/<name>.md, rendered from benchmarks/results/<name>.json."""
    title, body, _ = PAGES[name]
    result = json.loads((RESULTS / f"{name}.json").read_text())
    return f"# {title}\n\n{_provenance(result['stamp'])}\n\n{body(result)}\n"


def index_text() -> str:
    """The markdown of docs/results/index.md: every page, and what has no results file yet."""
    lines = ["# Measured results", "", "Every page here is generated by `python benchmarks/render_results.py` from the "
             "stamped JSON a benchmark writes to `benchmarks/results/`; each page says which command, commit, date, "
             "torch build, thread count and device measured it.", ""]
    lines += [f"- [{title}]({name}.md)" for name, (title, _, _) in PAGES.items() if (RESULTS / f"{name}.json").exists()]
    missing = [(title, command) for name, (title, _, command) in PAGES.items() if not (RESULTS / f"{name}.json").exists()]
    if missing:
        lines += ["", "Not measured in this checkout yet (run the command, then `python benchmarks/render_results.py`):", ""]
        lines += [f"- {title}: `{command}`" for title, command in missing]
    return "\n".join(lines) + "\n"


def expected_pages() -> dict[Path, str]:
    """Every generated page under docs/results/ and the text it should have."""
    pages = {DOCS / f"{name}.md": page_text(name) for name in PAGES if (RESULTS / f"{name}.json").exists()}
    pages[DOCS / "index.md"] = index_text()
    return pages


def _write(target: Path, text: str) -> Path:
    DOCS.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(target)
    return target


def render(name: str) -> Path:
    """Write docs/results/<name>.md from benchmarks/results/<name>.json; return its path."""
    return _write(DOCS / f"{name}.md", page_text(name))


def stale_pages() -> list[str]:
    """Pages under docs/results/ that differ from what the results files render to, or that no results file makes."""
    def shown(path: Path) -> str:
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

    expected = expected_pages()
    stale = [shown(path) for path, text in expected.items() if not path.exists() or path.read_text() != text]
    stale += [shown(path) + " (no results file renders it)" for path in sorted(DOCS.glob("*.md")) if path not in expected]
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report pages that are out of date (exit 1 if any)")
    args = parser.parse_args()
    if args.check:
        stale = stale_pages()
        for page in stale:
            print(f"out of date: {page}")
        raise SystemExit(1 if stale else 0)
    for path, text in expected_pages().items():
        print(f"wrote {_write(path, text)}")


if __name__ == "__main__":
    main()
