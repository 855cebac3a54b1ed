"""Convert the MTCNN face-detector weights shipped in ``facenet-pytorch`` into one safetensors file (run once).

``facenet-pytorch`` 2.6.0 (PyPI, MIT, Copyright (c) 2019 Timothy Esler) ships the three MTCNN
cascade nets (P-Net, R-Net, O-Net; Zhang et al. 2016, converted by facenet-pytorch from
davidsandberg/facenet's TensorFlow port of the original caffe models) as plain PyTorch state
dicts in ``facenet_pytorch/data/{pnet,rnet,onet}.pt``. The package's own code needs torchvision,
so only those files are read here (``torch.load(weights_only=True)``, never a pickle of objects),
and the tensors are written unchanged in float32 with the prefixes ``pnet.``, ``rnet.``, ``onet.``.
:mod:`photoshield.models.face.detect` has its own networks and cascade that load them.

Usage::

    python tools/convert_mtcnn.py [--out photoshield/assets/weights] [--wheel facenet_pytorch-2.6.0-py3-none-any.whl]

The output is byte-for-byte the same on every run; its sha256 is printed and is recorded in
photoshield/models/face/detect.py.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from fetch import pip_download, sha256

PACKAGE = "facenet-pytorch==2.6.0"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "photoshield" / "assets" / "weights"
FILENAME = "mtcnn.safetensors"
NETS = ("pnet", "rnet", "onet")


def read_state_dicts(wheel: Path) -> dict[str, torch.Tensor]:
    """The three nets' tensors from the wheel, merged under ``pnet.``/``rnet.``/``onet.`` prefixes."""
    merged: dict[str, torch.Tensor] = {}
    with zipfile.ZipFile(wheel) as archive:
        for net in NETS:
            data = archive.read(f"facenet_pytorch/data/{net}.pt")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not state:
                raise ValueError(f"{wheel.name}: {net}.pt is not a state dict")
            for key, tensor in state.items():
                if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                    raise ValueError(f"{wheel.name}: {net}.pt entry {key!r} is not a float tensor")
                merged[f"{net}.{key}"] = tensor.detach().to(torch.float32).contiguous().clone()
    return merged


def convert(out: Path, wheel: Path | None = None) -> Path:
    """Write ``mtcnn.safetensors`` into ``out`` from the facenet-pytorch wheel (downloaded unless given)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / FILENAME
    with tempfile.TemporaryDirectory() as tmp:
        wheel = wheel or pip_download(PACKAGE, Path(tmp))
        state = read_state_dicts(wheel)
        # One metadata key only: safetensors writes a dict of several in an unstable order.
        save_file(state, str(target), metadata={"source": f"PyPI {PACKAGE} facenet_pytorch/data/{{pnet,rnet,onet}}.pt (MIT)"})
    target.chmod(0o644)
    check_loads(target)
    return target


def check_loads(path: Path) -> None:
    """Load the written file into photoshield's detector, so a bad conversion fails here."""
    sys.path.insert(0, str(REPO))
    from photoshield.models.face.detect import build_detector

    build_detector(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write mtcnn.safetensors into")
    parser.add_argument("--wheel", type=Path, default=None, help="a local facenet-pytorch 2.6.0 wheel (skips pip download)")
    args = parser.parse_args(argv)
    target = convert(args.out, args.wheel)
    print(f"{target}  {target.stat().st_size} bytes  sha256 {sha256(target)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
