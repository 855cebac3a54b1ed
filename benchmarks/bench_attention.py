"""Per-step time and peak memory of the attention protection, with and without its cost measures.

Editors: the tiny test editors and a mid-size config of each family (Flux Kontext and
SD img2img, random weights, real diffusers classes). Variants: ``plain`` (every block
runs, no checkpointing, float32), ``stop-early`` (the forward stops after the last
block the loss reads) and ``all`` (stop-early + gradient checkpointing + bf16 autocast;
prompts are always encoded once and the text encoders freed). Each row runs in a fresh
process: peak memory is the growth of the peak resident set over the loaded editor on
CPU, or the CUDA allocator's peak on a GPU. Then an analytic estimate of the GPU memory
for the full-size models (``--estimate-only`` prints just that). Writes benchmarks/results/attention_cost.json
(the timings) and attention_memory_estimate.json (the estimate), stamped.

    python benchmarks/bench_attention.py [--steps 4] [--device cpu|cuda] [--configs 'sd tiny' ...] [--estimate-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_results_argument, write_result  # noqa: E402

VARIANTS = {
    "plain": dict(stop_early=False, gradient_checkpointing=False, autocast=None),
    "stop-early": dict(stop_early=True, gradient_checkpointing=False, autocast=None),
    "all": dict(stop_early=True, gradient_checkpointing=True, autocast="bf16"),
}
# name -> (kind, size, image (h, w), blocks)
CONFIGS = {
    "flux tiny": ("flux-kontext", "tiny", (48, 64), None),
    "flux mid": ("flux-kontext", "mid", (96, 128), None),
    "flux mid, double blocks": ("flux-kontext", "mid", (96, 128), ["transformer_blocks"]),
    "sd tiny": ("sd-img2img", "tiny", (32, 48), None),
    "sd mid": ("sd-img2img", "mid", (96, 128), None),
}


def mid_editor(kind: str, device: str):
    """A mid-size random editor: Flux 2 double + 4 single blocks of width 256; a 3-level SD UNet (64-256)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    from photoshield.models.diffusion import Editor, pipeline_class
    from photoshield.testing.diffusion import T5_LENGTH, tiny_components

    components = tiny_components(kind, seed=0)
    torch.manual_seed(0)
    if kind == "flux-kontext":
        components["transformer"] = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=64,
            num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(16, 24, 24),
        ).eval()
    else:
        components["unet"] = UNet2DConditionModel(
            block_out_channels=(64, 128, 256), layers_per_block=1, sample_size=64, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        ).eval()
    pipe = pipeline_class(kind)(**components)
    editor = Editor.from_pipeline(pipe, kind, device=device)
    if kind == "flux-kontext":
        editor.max_sequence_length = T5_LENGTH
    return editor


def _peak(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(config: str, variant: str, steps: int, device: str) -> dict:
    """Set up one editor and variant, run ``steps`` PGD steps, return s/step and peak memory growth (MB)."""
    from photoshield.testing import tiny_editor
    from photoshield.protect.attention import AttentionProtection
    from photoshield.protect.optim import PGDConfig, run_pgd

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    kind, size, (height, width), blocks = CONFIGS[config]
    editor = tiny_editor(kind, device=device) if size == "tiny" else mid_editor(kind, device)
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    attack = AttentionProtection(editor, prompts=["make it blue"], timesteps=[25], blocks=blocks, faces=False,
                             free_text_encoders=True, **VARIANTS[variant])
    objective = attack.objective(image)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = 0.0 if device == "cuda" else _peak(device)  # after loading, encoding and the clean maps
    run_pgd(objective.loss_fn, image, PGDConfig(epsilon=8 / 255, steps=1, progress=False))  # warm-up
    started = time.perf_counter()
    run_pgd(objective.loss_fn, image, PGDConfig(epsilon=8 / 255, steps=steps, progress=False))
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    return {"s_per_step": seconds, "peak_mb": _peak(device) - base}


# ----------------------------------------------------------------------------- full-size estimate

GB = 1e9


def flux_estimate(height: int, width: int, checkpointing: bool) -> dict:
    """GPU memory (GB) of the DeContext loss on FLUX.1-Kontext-dev in bf16, recording all 38 single blocks.

    weights: 11.9 B transformer params + 84 M VAE (bf16, 2 B each); T5-XXL (4.8 B) and
    CLIP-L are freed after encoding the prompt pool. Tokens S = 512 text + 2 x (H/16)(W/16).
    A recorded block keeps its attention explicitly: float32 softmax output (kept for the
    softmax backward) + its bf16 copy (kept for probs @ V) = 6 B x 24 heads x S^2, plus
    about 20 width-3072 activations per token (MLP of width 12288, projections, norms)
    x 2 B. Without checkpointing every recorded block keeps all of it; with it, only each
    block's input (S x 3072 x 2 B) stays and one block is recomputed at a time.
    """
    tokens = 512 + 2 * (height // 16) * (width // 16)
    weights = (11.9e9 + 0.084e9) * 2
    attention = 6 * 24 * tokens**2
    other = 20 * 3072 * tokens * 2
    blocks = 57  # 19 double + 38 single
    if checkpointing:
        activations = blocks * tokens * 3072 * 2 * 2 + attention + other
    else:
        activations = 38 * (attention + other) + 19 * other
    vae = 0.5e9 * (height * width) / (512 * 512) * (0.3 if checkpointing else 1.0)
    return {"tokens": tokens, "weights_gb": weights / GB, "activations_gb": (activations + vae) / GB,
            "total_gb": (weights + activations + vae) / GB}


def sd_estimate(height: int, width: int, checkpointing: bool) -> dict:
    """GPU memory (GB) of the UNet attention loss on SD 1.5 in bf16 (blocks mid + up_blocks.1, stop early).

    weights: 860 M UNet + 84 M VAE params x 2 B (CLIP-L freed). Activations: the down
    path and the chosen blocks run with backward; measured-by-analogy figure of about
    40 values per latent pixel per channel-level, 2 B each, plus the recorded 16x16 maps.
    """
    latent = (height // 8) * (width // 8)
    weights = (0.86e9 + 0.084e9) * 2
    activations = 40 * latent * (320 + 640 + 1280 / 4) * 2 * (0.35 if checkpointing else 1.0)
    maps = 8 * (latent // 16) ** 2 * 6 * 3
    vae = 0.5e9 * (height * width) / (512 * 512) * (0.3 if checkpointing else 1.0)
    return {"weights_gb": weights / GB, "activations_gb": (activations + maps + vae) / GB,
            "total_gb": (weights + activations + maps + vae) / GB}


def print_estimates() -> tuple[str, list[dict]]:
    """Print the estimate; return it as a markdown table and as rows."""
    print("\nestimated GPU memory for full-size editors (bf16 weights, one photo, text encoders freed)")
    print(f"  {'model':24s} {'size':>9s} {'checkpointing':>13s} {'weights GB':>10s} {'activations GB':>14s} {'total GB':>9s}")
    lines = ["An analytic count, not a measurement (bf16 weights, one photo, text encoders freed; the formulas are in "
             "`flux_estimate` and `sd_estimate` of the script).", "",
             "| model | size | gradient checkpointing | weights GB | activations GB | total GB |", "|---|---|---|---|---|---|"]
    rows = []
    for name, estimate in (("FLUX.1-Kontext-dev", flux_estimate), ("SD 1.5 (img2img)", sd_estimate)):
        for size in ((512, 512), (1024, 1024)):
            for ckpt in (False, True):
                e = estimate(*size, ckpt)
                print(f"  {name:24s} {size[0]:>4d}x{size[1]:<4d} {'yes' if ckpt else 'no':>13s} "
                      f"{e['weights_gb']:10.1f} {e['activations_gb']:14.1f} {e['total_gb']:9.1f}")
                lines.append(f"| {name} | {size[0]} x {size[1]} | {'yes' if ckpt else 'no'} | {e['weights_gb']:.1f} | "
                             f"{e['activations_gb']:.1f} | {e['total_gb']:.1f} |")
                rows.append({"model": name, "size": list(size), "checkpointing": ckpt, **e})
    return "\n".join(lines), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--estimate-only", action="store_true")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="editors to time (default: all)")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    add_results_argument(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.steps, args.device)))
        return
    if not args.estimate_only:
        threads = os.environ.get("BENCH_THREADS", "2")
        print(f"attention protection cost ({args.steps} PGD steps after a warm-up, {args.device}, {threads} threads)")
        print(f"  {'editor':26s} {'variant':11s} {'s/step':>8s} {'peak MB':>9s}")
        lines = [f"{args.steps} PGD steps after a warm-up, {args.device}, {threads} threads; each row a fresh process; "
                 "peak MB is the growth of the peak memory over the loaded editor.", "",
                 "| editor | variant | s / step | peak MB |", "|---|---|---|---|"]
        rows = []
        for config in args.configs:
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--one", config, variant, "--steps", str(args.steps), "--device", args.device]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"  {config:26s} {variant:11s} failed: {done.stderr.strip().splitlines()[-1]}")
                    lines.append(f"| {config} | {variant} | failed | |")
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"  {config:26s} {variant:11s} {row['s_per_step']:8.3f} {row['peak_mb']:9.0f}", flush=True)
                lines.append(f"| {config} | {variant} | {row['s_per_step']:.3f} | {row['peak_mb']:.0f} |")
                rows.append({"editor": config, "variant": variant, **row})
        write_result("attention_cost", "\n".join(lines), args.results_dir, args.device, steps=args.steps, rows=rows)
    table, rows = print_estimates()
    write_result("attention_memory_estimate", table, args.results_dir, args.device, rows=rows)


if __name__ == "__main__":
    main()
