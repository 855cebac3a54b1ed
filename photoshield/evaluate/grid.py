"""The grid of a run: its photos, its attacks, and the identity of each (image, method, attack) row.

    from photoshield.evaluate.grid import build_attacks, load_inputs, row_key, row_seed
    inputs = load_inputs(["obama", "biden"], max_side=320)    # [(name, (1, 3, H, W) photo), ...]
    attacks = build_attacks(["jpeg:quality=50"])             # [identity, jpeg:quality=50]
    row_key("obama", "clean", attacks[1])                    # ('obama', 'clean', 'jpeg:quality=50', '0.5')

A row's key names it in the journal and the report; its seed depends on the key alone, never on the
process or the order rows run in.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .. import attacks, data
from ..errors import PhotoshieldError
from ..image import quantize, resize_to, working_size
from ..io import list_images, read_image

__all__ = ["attack_family", "attack_strength", "build_attacks", "load_inputs", "row_key", "row_seed"]


def row_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run's seed and a row's identity (image, method, attack): same row, same seed."""
    text = "\x1f".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1



def load_inputs(items: Sequence[str], max_inputs: int | None = None, max_side: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(name, (1, 3, H, W) photo) for "faces"/"scenes"/"samples", sample names, folders and files, in order."""
    found: list[tuple[str, Callable[[], torch.Tensor]]] = []
    for item in items:
        item = str(item)
        path = Path(item)
        if item in data.KINDS or item == "samples":
            for name in data.samples(None if item == "samples" else item):
                found.append((name, lambda name=name: data.sample(name)))
        elif path.is_dir():
            files = list_images(path, recursive=True)
            if not files:
                raise PhotoshieldError(f"{path}: no images found in this folder")
            found += [(file.relative_to(path).as_posix(), lambda file=file: read_image(file)) for file in files]
        elif path.is_file():
            found.append((path.name, lambda path=path: read_image(path)))
        elif item in data.samples():
            found.append((item, lambda item=item: data.sample(item)))
        else:
            raise PhotoshieldError(f"{item}: not a file, a folder, a sample name or one of faces, scenes, samples")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PhotoshieldError(f"inputs name the same image twice: {', '.join(duplicates)}")
    found = found[:max_inputs] if max_inputs else found
    images = []
    for name, read in found:
        image = read()
        if max_side:
            size = working_size(*image.shape[-2:], max_side)
            if size != tuple(image.shape[-2:]):
                image = quantize(resize_to(image, size))
        images.append((name, image))
    return images


def build_attacks(items: Sequence[Any]) -> list[Any]:
    """Attacks from grid names ("quick"), specs ("jpeg:quality=50") and sweeps ({name: jpeg, strengths: [0.2, 1]}).

    The unattacked baseline (``identity``) comes first; duplicates are dropped.
    """
    built = [attacks.get("identity")]
    for item in items:
        if isinstance(item, dict):
            params = dict(item)
            name = params.pop("name", None)
            if name is None:
                raise PhotoshieldError(f"an attack sweep needs a name, got {item!r}")
            strengths = params.pop("strengths", None)
            built += [attacks.get(name, strength=s, **params) for s in strengths] if strengths else [attacks.get(name, **params)]
        elif str(item) in attacks.grid_names():
            built += attacks.grid(str(item))
        elif str(item) not in ("none", "identity"):
            built.append(attacks.get(str(item)))
    unique: dict[str, Any] = {}
    for attack in built:
        unique.setdefault(attack.describe(), attack)
    return list(unique.values())


def attack_strength(attack: Any) -> float:
    """The attack's strength s in [0, 1]: as built, else read back from its parameters (identity is 0)."""
    if getattr(attack, "strength", None) is not None:
        return round(float(attack.strength), 4)
    children = getattr(attack, "attacks", None)
    if children is not None and not isinstance(children, str):
        values = [attack_strength(child) for child in children]
        values = [v for v in values if not math.isnan(v)]
        return round(max(values), 4) if values else float("nan")
    if attack.name == "identity":
        return 0.0
    values = []
    for key, (low, high) in type(attack).strength_range.items():
        if high != low:
            values.append(min(max((float(attack.params[key]) - low) / (high - low), 0.0), 1.0))
    return round(sum(values) / len(values), 4) if values else float("nan")


def attack_family(attack: Any) -> str:
    """The attack's name without parameters ("jpeg", "crop+jpeg"): one line per family in the plots."""
    children = getattr(attack, "attacks", None)
    if children is not None and not isinstance(children, str):
        return "+".join(attack_family(child) for child in children)
    return attack.name


def row_key(image: str, method: str, attack: Any) -> tuple[str, str, str, str]:
    """(image, method, attack, repr(strength)): what names a row in the journals (``method``: ``MethodSpec.describe()``)."""
    return (image, method, attack.describe(), repr(attack_strength(attack)))
