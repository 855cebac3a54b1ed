"""Forward and forward+backward time and peak memory of every bundled real model.

Each (model, size) case runs in its own subprocess so its peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``, on the CPU the growth of the process's peak RSS over
the RSS after the model and the input are loaded. Backward means gradients to the input
pixels, the path every protection takes. Models that are used without gradients (the
detector, the ONNX judge) report the forward only.

Usage::

    python benchmarks/bench_models.py [--sizes 256 512] [--repeat 3] [--device cpu]

Writes benchmarks/results/models.json (stamped).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Callable

import torch

from _common import add_results_argument, face_photo, write_result

CASES = ("face-detector", "face-landmarks", "face-embedder", "face-judge-sface", "sam-litemedsam")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _build(name: str, size: int, device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, bool]:
    """(fn(image) -> scalar, image, differentiable) for one model at one size."""
    from photoshield.models import face, load

    image = face_photo(size, device)
    if name == "face-detector":
        detector = load("face-detector", device=device)
        return (lambda x: torch.tensor(float(len(detector(x)[0]["boxes"])))), image, False
    if name == "face-judge-sface":
        judge = load("face-judge-sface")
        return (lambda x: torch.tensor(float(judge.embed(x).sum()))), image, False
    box = face.detect_faces(image)[0]["boxes"][:1]
    if name == "face-landmarks":
        model = load("face-landmarks", device=device)
        return (lambda x: face.landmarks68(x, box, model=model, refine=0).sum()), image, True
    if name == "face-embedder":
        with torch.no_grad():
            points = face.landmarks68(image, box)
        model = load("face-embedder", device=device)
        return (lambda x: face.embed_faces(x, landmarks=points, embedder=model).sum()), image, True
    if name == "sam-litemedsam":
        model = load("sam-litemedsam", device=device)
        boxes = torch.tensor([[size * 0.2, size * 0.2, size * 0.8, size * 0.8]], device=device)
        return (lambda x: model.predict(x, boxes=boxes).sigmoid().mean()), image, True
    raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")


def _time(fn: Callable[[], None], repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def run_case(name: str, size: int, repeat: int, device: torch.device) -> dict:
    """Time one model at one size; returns the figures as a dict."""
    fn, image, differentiable = _build(name, size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()

    def forward() -> None:
        with torch.no_grad():
            fn(image)

    def backward() -> None:
        x = image.clone().requires_grad_(True)
        fn(x).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, f"{name}: no gradient reached the pixels"

    result = {"model": name, "size": size, "forward_ms": 1000 * _time(forward, repeat, device)}
    result["backward_ms"] = 1000 * _time(backward, repeat, device) if differentiable else None
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mb"] = max(0.0, _peak_rss_mb() - base)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    add_results_argument(parser)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.case:
        print(json.dumps(run_case(args.case, args.sizes[0], args.repeat, device)))
        return

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeat}")
    print(f"{'model':<18} {'size':>5} {'forward ms':>11} {'fwd+bwd ms':>11} {'peak MB':>9}")
    lines = [f"Best of {args.repeat}, a fresh process per row; forward+backward is to the input pixels; peak MB is "
             + ("the CUDA allocator's peak." if device.type == "cuda" else
                "the growth of the process's peak RSS over the loaded model and input."), "",
             "| model | input | forward ms | forward+backward ms | peak MB |", "|---|---|---|---|---|"]
    rows = []
    for name in args.models:
        for size in args.sizes:
            command = [sys.executable, __file__, "--case", name, "--sizes", str(size), "--repeat", str(args.repeat), "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name:<18} {size:>5} failed: {done.stderr.strip().splitlines()[-1]}")
                lines.append(f"| `{name}` | {size}x{size} | failed | | |")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            backward = f"{row['backward_ms']:11.1f}" if row["backward_ms"] is not None else f"{'n/a':>11}"
            print(f"{name:<18} {size:>5} {row['forward_ms']:11.1f} {backward} {row['peak_mb']:9.0f}")
            rows.append(row)
            lines.append(f"| `{name}` | {size}x{size} | {row['forward_ms']:.1f} | {backward.strip()} | {row['peak_mb']:.0f} |")
    write_result("models", "\n".join(lines), args.results_dir, device, rows=rows)


if __name__ == "__main__":
    main()
