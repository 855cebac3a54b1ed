"""Train the small diffusion editors (``editor-kontext-small``, ``editor-unet-small``) on CPU or GPU.

Both learn colour-grading edits (:mod:`photoshield.models.diffusion.edits`) of random 128 px crops of the real
photos that ``tools/fetch_training_photos.py`` fetched, in the latent space of the frozen
``autoencoder-small``, with the accelerate loop, crops, checkpoints and metrics log every trainer
shares (:mod:`training.loop`):

- ``kontext``: flow matching. Target latents ``z1 = E(warm(x))``, noisy ``(1 - s) z1 + s n`` with the
  pipeline's own shifted sigmas, the context latents ``E(x)`` as extra tokens; the transformer predicts
  the velocity ``n - z1`` through the same packing the pipeline uses (``Editor.denoise``).
- ``unet``: SDEdit editing. Half the examples are noised from the *source* latents (``300 <= t < 700``,
  the range an edit at strength 0.3-0.7 starts from), half from the target's (``t < 700``: an edit
  never visits higher noise, so the small model spends nothing on it), and the UNet (v-prediction)
  is trained so that its clean-latent estimate is the *edited* latents: whatever strength an edit
  starts from, it lands on the edit named by the prompt; the empty prompt is the identity.

Held-out edit quality (the full pipeline, PSNR against the reference edit, next to the PSNR of the
unedited photo against it) is logged every ``eval_every`` steps.

    python -m training.train_editors kontext --minutes 60 --threads 1 \\
        --export photoshield/assets/weights/editor_kontext_small.safetensors

Run it again with the same ``--out`` (and a larger ``--minutes``) to resume from ``<out>/checkpoint.pt``;
``--init FILE`` starts a new run from an exported editor (e.g. to train the shipped weights further).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from photoshield.errors import PhotoshieldError
from photoshield.image import quantize
from photoshield.models.diffusion.small_editors import (
    KONTEXT_EDIT,
    KONTEXT_PROMPT,
    new_networks,
    build_editor,
    default_configs,
    load_networks,
    save_editor,
)
from photoshield.models.diffusion.edits import EDIT_PROMPTS, apply_edit, edit_names
from training.loop import (
    LoopSettings,
    PhotoCrops,
    StepResult,
    TrainingRun,
    heldout_crops,
    load_checkpoint,
    psnr,
    run_arguments,
    warmup_cosine_lr,
)

__all__ = ["EditorTrainConfig", "evaluate_edits", "train"]

KINDS = {"kontext": "flux-kontext", "unet": "sd-img2img", "flux-kontext": "flux-kontext", "sd-img2img": "sd-img2img"}


@dataclass
class EditorTrainConfig:
    """How long and how hard to train (the networks' sizes are in ``photoshield.models.diffusion.small_editors``)."""

    size: int = 128
    batch_size: int = 8
    lr: float = 6e-4
    min_lr_fraction: float = 0.1
    warmup_steps: int = 100
    minutes: float = 60.0
    max_steps: int = 100_000
    source_fraction: float = 0.5  # unet: share of examples noised from the source latents
    source_min_t: int = 300
    max_t: int = 700  # unet: edits start at strength <= 0.7; higher noise levels are left untrained
    identity_fraction: float = 0.15  # unet: share of examples with the empty prompt (no edit)
    checkpoint_minutes: float = 3.0
    eval_every: int = 250
    eval_crops: int = 8
    log_every: int = 10
    seed: int = 0


def _learning_rate(config: EditorTrainConfig, step: int, fraction: float) -> float:
    return warmup_cosine_lr(config.lr, step, fraction, config.warmup_steps, config.min_lr_fraction)


def _prompt_embeds(pipe: Any, prompts: list[str]) -> torch.Tensor:
    """CLIP token embeddings of ``prompts``, with gradients (the UNet editor trains its text encoder)."""
    tokens = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
    return pipe.text_encoder(tokens.to(pipe.text_encoder.device))[0]


def flow_sigmas(pipe: Any, count: int, tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sigmas drawn uniformly and shifted as the pipeline shifts them for ``tokens`` image tokens."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    config = pipe.scheduler.config
    mu = calculate_shift(tokens, config.base_image_seq_len, config.max_image_seq_len, config.base_shift,
                         config.max_shift)
    u = torch.rand(count, generator=generator)
    shift = math.exp(mu)
    return shift * u / (1 + (shift - 1) * u)


def kontext_loss(editor: Any, images: torch.Tensor) -> torch.Tensor:
    """Flow-matching loss of the in-context DiT for the ``warm`` edit of a batch of photos."""
    with torch.no_grad():
        source = editor.encode_latents(images)
        target = editor.encode_latents(apply_edit(images, KONTEXT_EDIT))
    embeds = editor.encode_prompt([KONTEXT_PROMPT]).batch(images.shape[0])
    tokens = (source.shape[-2] // 2) * (source.shape[-1] // 2)
    sigma = flow_sigmas(editor.pipe, images.shape[0], tokens).to(source).view(-1, 1, 1, 1)
    noise = torch.randn_like(target)
    noisy = (1 - sigma) * target + sigma * noise
    velocity = editor.denoise(noisy, sigma.flatten() * 1000, embeds, condition=source)
    return F.mse_loss(velocity, noise - target)


def unet_loss(editor: Any, images: torch.Tensor, config: EditorTrainConfig, rng: random.Random) -> torch.Tensor:
    """Clean-latent loss of the UNet editor: from source- or target-noised latents to the prompted edit."""
    batch = images.shape[0]
    names = [("" if rng.random() < config.identity_fraction else rng.choice(edit_names())) for _ in range(batch)]
    targets = torch.cat([apply_edit(images[i : i + 1], name) for i, name in enumerate(names)])
    with torch.no_grad():
        source, target = editor.encode_latents(images), editor.encode_latents(targets)
    from_source = torch.rand(batch, device=images.device) < config.source_fraction
    low = torch.where(from_source, config.source_min_t, 0)
    t = (low + torch.rand(batch) * (config.max_t - low)).long().clamp(max=999)
    alphas = editor.pipe.scheduler.alphas_cumprod[t].to(source).view(-1, 1, 1, 1)
    base = torch.where(from_source.view(-1, 1, 1, 1), source, target)
    noisy = alphas.sqrt() * base + (1 - alphas).sqrt() * torch.randn_like(base)
    embeds = _prompt_embeds(editor.pipe, [EDIT_PROMPTS[name] for name in names])
    velocity = editor.denoiser(noisy, t, encoder_hidden_states=embeds, return_dict=False)[0]
    estimate = alphas.sqrt() * noisy - (1 - alphas).sqrt() * velocity
    return F.mse_loss(estimate, target)


@torch.no_grad()
def evaluate_edits(editor: Any, images: torch.Tensor, edits: list[str] | None = None, seed: int = 0,
                   **settings: Any) -> dict[str, float]:
    """Held-out edit quality, averaged over ``edits`` (default: the editor's own), PSNR in dB.

    ``edit_psnr`` / ``unedited_psnr`` / ``autoencoder_psnr``: the editor's edit, the unedited photo and
    the autoencoder round trip of the reference edit, each against the reference edit. The latent
    editors cannot beat the round trip, so ``*_latent`` compare against it instead (the editor's own
    error): ``edit_psnr_latent`` (the edit) and ``unedited_psnr_latent`` (the round trip of the unedited
    photo, i.e. an editor that copies without editing).
    """
    edits = edits or ([KONTEXT_EDIT] if editor.is_flux else edit_names())
    prompts = {KONTEXT_EDIT: KONTEXT_PROMPT} if editor.is_flux else EDIT_PROMPTS
    scores: dict[str, list[float]] = {}

    def roundtrip(x: torch.Tensor) -> torch.Tensor:
        return quantize(editor.decode_latents(editor.encode_latents(x)))

    copied = roundtrip(images)
    for name in edits:
        reference = apply_edit(images, name)
        edited = quantize(editor.edit(images, prompts[name], seed=seed, **settings))
        ceiling = roundtrip(reference)
        for key, a, b in (("edit_psnr", edited, reference), ("unedited_psnr", images, reference),
                          ("autoencoder_psnr", ceiling, reference), ("edit_psnr_latent", edited, ceiling),
                          ("unedited_psnr_latent", copied, ceiling)):
            scores.setdefault(key, []).append(float(psnr(a, b).mean()))
    return {key: sum(values) / len(values) for key, values in scores.items()}


def _trainable(kind: str) -> list[str]:
    return ["transformer"] if kind == "flux-kontext" else ["unet", "text_encoder"]


def train(kind: str, photos: str | Path, out: str | Path, config: EditorTrainConfig | None = None,
          export: str | Path | None = None, configs: dict[str, dict[str, Any]] | None = None,
          progress: bool = True, init: str | Path | None = None) -> Any:
    """Train (or resume) a small editor of ``kind`` under ``out``; returns its Editor (and exports it).

    ``init``: an exported editor file (e.g. the shipped weights) to start from when ``out`` holds no
    checkpoint yet: training goes on from there with a fresh optimizer.
    """
    kind = KINDS[kind]
    config = config or EditorTrainConfig()
    run = TrainingRun(out, config.seed)
    device = run.device
    state = run.state
    if state is not None:
        configs = json.loads(state["configs"])
        networks = new_networks(kind, configs, seed=config.seed)
        for name, module in networks.items():
            module.load_state_dict(state["networks"][name])
    elif init is not None:
        init_kind, networks, metadata = load_networks(init)
        if init_kind != kind:
            raise PhotoshieldError(f"{init}: holds a {init_kind} editor, not a {kind} one")
        configs = json.loads(metadata["configs"])
    else:
        configs = configs or default_configs(kind)
        networks = new_networks(kind, configs, seed=config.seed)
    editor = build_editor(kind, networks, device)  # freezes everything; re-enable what trains
    trained = [networks[name].requires_grad_(True).train() for name in _trainable(kind)]
    parameters = [p for module in trained for p in module.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        run.resume()
    step = run.step
    accelerator = run.accelerator
    optimizer = accelerator.prepare(optimizer)
    data = PhotoCrops(photos, config.size, "train", seed=config.seed + step)
    val = heldout_crops(photos, config.size, config.eval_crops).to(device)
    rng = random.Random(config.seed + step)
    torch.manual_seed(config.seed + step)
    run.start()

    def checkpoint() -> dict[str, Any]:
        return {"networks": {name: module.state_dict() for name, module in networks.items()},
                "optimizer": optimizer.state_dict(), "configs": json.dumps(configs)}

    def evaluate() -> dict[str, float]:
        for module in trained:
            module.eval()
        metrics = evaluate_edits(editor, val)
        for module in trained:
            module.train()
        return {k: round(v, 3) for k, v in metrics.items()}

    def train_step(step: int, fraction: float) -> StepResult:
        lr = _learning_rate(config, step, fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = data.batch(config.batch_size).to(device)
        loss = kontext_loss(editor, images) if editor.is_flux else unet_loss(editor, images, config, rng)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if not editor.is_flux:
            editor._prompts.clear()  # the text encoder moved: cached prompt encodings are stale
        value = float(loss.detach())
        return StepResult({"loss": value}, fixed={"lr": round(lr, 7)}, postfix={"loss": f"{value:.4f}"})

    run.loop(train_step, LoopSettings.of(config), desc=f"train {kind}", checkpoint=checkpoint, evaluate=evaluate,
             eval_at_start=True, progress=progress)
    run.save(checkpoint())
    run.write({"stage": "final", "step": run.step, **evaluate()})
    run.close()
    for module in trained:
        module.eval().requires_grad_(False)
    if export is not None:
        save_editor(kind, networks, export, extra={"steps": run.step, "minutes": round(run.seconds() / 60, 1)})
    return editor


def _export_checkpoint(kind: str, out: Path, export: Path) -> None:
    state = load_checkpoint(out / "checkpoint.pt")
    if state is None:
        raise SystemExit(f"{out / 'checkpoint.pt'}: no checkpoint to export; train first")
    networks = new_networks(kind, json.loads(state["configs"]))
    for name, module in networks.items():
        module.load_state_dict(state["networks"][name])
    save_editor(kind, networks, export, extra={"steps": int(state["step"]), "minutes": round(state["elapsed"] / 60, 1)})
    print(f"wrote {export} (step {state['step']})")


def main() -> None:
    parser = argparse.ArgumentParser(description="Train photoshield's small diffusion editors.")
    parser.add_argument("kind", choices=sorted(KINDS), help="kontext (in-context DiT) or unet (img2img UNet)")
    run_arguments(parser, EditorTrainConfig, None, "editor")
    parser.add_argument("--init", type=Path, help="start from this exported editor (e.g. the shipped weights) "
                        "when --out has no checkpoint")
    args = parser.parse_args()
    kind = KINDS[args.kind]
    out = args.out or Path("runs") / f"editor-{'kontext' if kind == 'flux-kontext' else 'unet'}"
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.export_only:
        if args.export is None:
            parser.error("--export-only needs --export PATH")
        _export_checkpoint(kind, out, args.export)
        return
    config = EditorTrainConfig(batch_size=args.batch_size, lr=args.lr, minutes=args.minutes, max_steps=args.max_steps,
                               seed=args.seed)
    train(kind, args.photos, out, config, export=args.export, init=args.init)


if __name__ == "__main__":
    main()
