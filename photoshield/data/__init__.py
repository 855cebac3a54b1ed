"""Bundled sample photos: real faces and natural scenes to try protection, watermarks and attacks on.

The photos ship inside the package (``photoshield/assets/samples``) with a manifest, ``samples.json``,
written by ``tools/fetch_samples.py`` from pinned registry packages; every photo is public domain, CC0,
CC BY 4.0 or otherwise freely redistributable, as ``sample_info(name)["license"]`` and the NOTICE say.
Faces have a long side of at most 512 px and carry a ``person`` id, so same-person pairs can be found;
scenes have a long side of at most 768 px.

    >>> from photoshield.data import sample, samples, same_person_pairs
    >>> samples("faces")[:3]
    ['obama', 'obama2', 'obama3']
    >>> sample("chelsea").shape
    torch.Size([1, 3, 300, 451])
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import PhotoshieldError

__all__ = ["KINDS", "SAMPLES_DIR", "sample", "sample_info", "sample_path", "samples", "same_person_pairs"]

#: The kinds of sample photo: portraits and group photos, and natural scenes without faces in focus.
KINDS: tuple[str, ...] = ("faces", "scenes")
#: Where the bundled photos and their manifest live (inside the installed package).
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"
_MANIFEST = SAMPLES_DIR / "samples.json"


@functools.lru_cache(maxsize=1)
def _manifest() -> dict[str, dict[str, Any]]:
    """Manifest rows by name, in manifest order; read once."""
    try:
        rows = json.loads(_MANIFEST.read_text(encoding="utf-8"))["samples"]
    except FileNotFoundError:
        raise PhotoshieldError(
            f"{_MANIFEST}: the sample photos are not installed; run python tools/fetch_samples.py"
        ) from None
    except (ValueError, KeyError) as error:
        raise PhotoshieldError(f"{_MANIFEST}: not a valid samples manifest ({error})") from None
    return {row["name"]: row for row in rows}


def _row(name: str) -> dict[str, Any]:
    rows = _manifest()
    if name not in rows:
        raise PhotoshieldError(f"no sample photo named {name!r}; the samples are: {', '.join(rows)}")
    return rows[name]


def samples(kind: str | None = None) -> list[str]:
    """Names of the bundled sample photos, in manifest order; ``kind`` "faces" or "scenes" narrows them."""
    if kind is not None and kind not in KINDS:
        raise PhotoshieldError(f"unknown sample kind {kind!r}; the kinds are: {', '.join(KINDS)}")
    return [name for name, row in _manifest().items() if kind is None or row["kind"] == kind]


def sample_path(name: str) -> Path:
    """Path of one bundled photo file, to hand to tools that take files (the CLI, other libraries)."""
    return SAMPLES_DIR / _row(name)["file"]


def sample_info(name: str) -> dict[str, Any]:
    """The manifest row of one photo: kind, file, source, license, attribution, person, size, sha256."""
    return json.loads(json.dumps(_row(name)))  # a deep copy: callers cannot change the cached manifest


def sample(name: str) -> torch.Tensor:
    """One bundled photo as a (1, 3, H, W) float32 RGB tensor in [0, 1], read through photoshield.io."""
    from ..io import read_image

    return read_image(sample_path(name))


def same_person_pairs() -> list[tuple[str, str]]:
    """Every pair of face photos that show the same person (by manifest ``person`` id), in manifest order."""
    faces = [(name, _row(name)["person"]) for name in samples("faces")]
    return [(a, b) for (a, person_a), (b, person_b) in itertools.combinations(faces, 2) if person_a == person_b]
