"""Shared bits of the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"  # stamped JSON, rendered to docs/results/ by render_results.py
#: the cheap purifications every protection table is judged after (photoshield.attacks.purify at strength 0.5,
#: the ones the robust preset puts in its expectation)
CHEAP_PURIFICATIONS = {"noise + JPEG": "noise-jpeg:strength=0.5", "TV": "tv:strength=0.5",
                       "noisy upscale": "noisy-upscale:strength=0.5"}


def stamp(device: str | torch.device = "cpu") -> dict:
    """Where a result comes from: command, git commit (and uncommitted changes), date, versions, threads, device."""
    import datetime
    import os
    import platform
    import shlex
    import subprocess
    import sys

    def git(*args: str) -> str | None:
        try:
            env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # never take the index lock of a repository in use
            return subprocess.run(["git", *args], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return {
        "command": shlex.join(["python", str(script), *sys.argv[1:]]),
        "git_commit": git("rev-parse", "HEAD"),
        "git_uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
    }


def add_results_argument(parser) -> None:
    """``--results-dir DIR``: where :func:`write_result` puts its JSON (default benchmarks/results; '' to not write)."""
    parser.add_argument("--results-dir", default=str(RESULTS),
                        help="folder for the stamped JSON (default benchmarks/results; '' to not write it)")


def write_result(name: str, tables: str, directory: str | Path | None = RESULTS, device: str | torch.device = "cpu",
                 **fields) -> Path | None:
    """Write ``<directory>/<name>.json`` atomically: the :func:`stamp`, the benchmark's ``fields`` and its
    markdown ``tables`` (what ``render_results.py`` puts on docs/results/<name>.md). Returns the path, or
    None when ``directory`` is empty (a run that should leave the committed results alone).

    >>> write_result("example", "| a |\\n|---|\\n| 1 |", directory="", rows=[1])  # writes nothing
    """
    import json

    if not directory:
        return None
    target = Path(directory) / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps({"stamp": stamp(device), **fields, "tables": tables}, indent=1, default=str))
    temporary.replace(target)
    print(f"wrote {target}")
    return target


def face_photo_path() -> Path:
    """A real face photo: the first bundled face sample, or the test fixture in a bare checkout."""
    try:
        from photoshield import data

        return data.sample_path(data.samples("faces")[0])
    except Exception:  # samples not bundled in this checkout
        return REPO / "tests" / "fixtures" / "faces" / "obama.jpg"


def face_photo(size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """That photo as a (1, 3, size, size) tensor."""
    from photoshield.io import read_image

    image = read_image(face_photo_path())
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).to(device)


def map_jobs(function, jobs: list, workers: int = 1) -> list:
    """``[function(job) for job in jobs]``, in ``workers`` forked processes when above 1 (one torch thread each is
    the caller's to set). Models loaded before the call are shared with the workers, not loaded again."""
    if workers <= 1:
        return [function(job) for job in jobs]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(function, jobs, chunksize=1)
