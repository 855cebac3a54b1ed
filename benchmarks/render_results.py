"""Render the benchmarks' stamped results (benchmarks/results/*.json) as docs/results/*.md.

Every page starts with where its numbers come from (command, commit, date, torch, threads, device)
and shows the tables the benchmark itself wrote; nothing is typed in by hand. Usage::

    python benchmarks/render_results.py            # every results file that has a renderer
"""

from __future__ import annotations

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


PAGES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "facial_protection": ("Facial protection: leave-one-out, SFace and dlib", _tables),
    "watermark_forgery": ("Watermark forgery and removal without the key", _tables),
    "fuzz_io": ("Image reading under a fuzz corpus", _fuzz),
    "face_thresholds": ("Same-person thresholds of the identity models", _thresholds),
}


def render(name: str) -> Path:
    """Write docs/results/<name>.md from benchmarks/results/<name>.json; return its path."""
    title, body = PAGES[name]
    result = json.loads((RESULTS / f"{name}.json").read_text())
    text = f"# {title}\n\n{_provenance(result['stamp'])}\n\n{body(result)}\n"
    DOCS.mkdir(parents=True, exist_ok=True)
    target = DOCS / f"{name}.md"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(target)
    return target


def main() -> None:
    for name in PAGES:
        if (RESULTS / f"{name}.json").exists():
            print(f"wrote {render(name).relative_to(REPO)}")


if __name__ == "__main__":
    main()
