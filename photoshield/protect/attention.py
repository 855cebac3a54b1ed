"""Attention-disrupting protection: break the attention paths that copy a photo into a diffusion edit.

Two objectives, one attack object:

- **DiT in-context editors (DeContext)** — Flux Kontext puts the photo's latent tokens
  (the context) into the same joint attention as the latent being generated (the
  target). The loss is the attention mass from target-latent queries to context keys,
  averaged over heads, queries and the chosen blocks (default: every single-stream
  block), at early denoising times (t in [980, 1000) of 1000) with a pure-noise target
  latent and one prompt per step drawn from an encoded pool; the engine minimises it.
- **UNet editors (FaceShield's attention term)** — SD img2img, SD inpainting and
  InstructPix2Pix: self- and cross-attention maps of chosen blocks and timesteps are
  recorded for the clean photo once; the loss is how much of the clean maps' structure
  (their deviation from uniform attention) the protected photo's maps still carry,
  weighted on the face region when there is one (``loss="displacement"``: FaceShield's
  L2 push-away instead). ``facial_weight`` adds the identity term of :mod:`.facial`.

Cost measures: prompts are encoded once (and the text encoders freed when the attack
loaded the editor itself), the forward pass stops after the last block the loss reads,
gradient checkpointing replays blocks with the recording processors, and bf16
autocast is used where the device supports it. Sizes come from the inputs: the photo
is resized (differentiably) to the editor's working size, aspect ratio kept, and
token counts are read from the sequence the pipeline builds.
"""

from __future__ import annotations

import contextlib
import resource
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..errors import PhotoshieldError
from ..image import resize_to, working_size
from ..models.diffusion.attention_capture import AttentionCapture, TokenLayout
from ..models.diffusion import Editor, PromptEmbeds
from ..models.diffusion import bf16_supported as _device_bf16
from ..models.diffusion import resolve_editor as _resolve_editor
from ._renamed import renamed_getattr
from .objective import Objective

# Edit prompts the protection must hold against (DeContext samples one per step from ~60).
DEFAULT_PROMPTS = (
    "change the background to a beach",
    "make the person smile",
    "turn it into an oil painting",
    "put a hat on the person",
    "make it night time",
    "change the hair colour to blonde",
    "add sunglasses",
    "turn the photo into a cartoon",
)
FLUX_TIME_RANGE = (980.0, 1000.0)  # DeContext: early denoising, pure-noise target latent
UNET_TIMESTEPS = (25, 250)  # little noise: the maps follow the photo (FaceShield reads t = 0), not the noise
UNET_BLOCKS = ("mid_block", "up_blocks.1")  # SD1.5: 8x8 and 16x16 attention; stop before 32/64 px
FLUX_BLOCKS = ("single_transformer_blocks",)


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory so far: CUDA allocator peak on a GPU, else the process's peak resident set (MB)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- editor resolution


def resolve_editor(
    editor: Any, editor_kind: str | None = None, device: torch.device | str | None = None
) -> tuple[Editor, bool]:
    """An :class:`Editor` from an Editor, a diffusers pipeline, a folder or a hub id; True when loaded here.

    :func:`photoshield.models.diffusion.resolve_editor` with the attention method's message for a missing editor.
    """
    if editor is None:
        raise PhotoshieldError(
            "the attention method needs a diffusion editor: pass editor=PATH_OR_HUB_ID (a diffusers pipeline "
            "folder written by save_pretrained(), or a hub id such as 'black-forest-labs/FLUX.1-Kontext-dev' "
            "on a machine that has it) with editor_kind='flux-kontext'|'sd-img2img'|'sd-inpaint'|'instruct-pix2pix', "
            "or a loaded pipeline / photoshield Editor (CLI: --editor PATH --editor-kind KIND)"
        )
    return _resolve_editor(editor, editor_kind, device, owner="attention")


# ----------------------------------------------------------------------------- checkpointing


class ReplayCheckpoint:
    """Gradient checkpointing that recomputes a block with the attention processors it ran with.

    diffusers' default checkpointing recomputes blocks during backward with whatever
    processors are installed then; the attack's recorders are gone by that time, so the
    recomputed graph would differ. This function snapshots the processors at forward
    time and puts them back (with their captures in replay mode) for the recompute.
    """

    def __call__(self, module: torch.nn.Module, *args: Any) -> Any:
        from torch.utils.checkpoint import checkpoint

        snapshot = [(m, m.processor) for m in module.modules() if hasattr(m, "processor")]
        return checkpoint(
            module.__call__,
            *args,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), self._replay(snapshot)),
        )

    @staticmethod
    @contextlib.contextmanager
    def _replay(snapshot: list[tuple[torch.nn.Module, Any]]) -> Iterator[None]:
        current = [(m, m.processor) for m, _ in snapshot]
        captures = {id(c): c for _, p in snapshot if isinstance(c := getattr(p, "capture", None), AttentionCapture)}
        for module, processor in snapshot:
            module.processor = processor
        for capture in captures.values():
            capture.replaying = True
        try:
            yield
        finally:
            for capture in captures.values():
                capture.replaying = False
            for module, processor in current:
                module.processor = processor


@contextlib.contextmanager
def _checkpointing(models: Sequence[torch.nn.Module], enabled: bool) -> Iterator[None]:
    """Turn on gradient checkpointing (replaying recorders) for the forward passes inside the block."""
    if not enabled:
        yield
        return
    replay = ReplayCheckpoint()
    changed = []
    for model in models:
        if getattr(model, "_supports_gradient_checkpointing", False):
            was_on = bool(getattr(model, "is_gradient_checkpointing", False))
            model.enable_gradient_checkpointing(replay)
            changed.append((model, was_on))
    try:
        yield
    finally:
        for model, was_on in changed:
            model.disable_gradient_checkpointing()
            if was_on:
                model.enable_gradient_checkpointing()


# ----------------------------------------------------------------------------- the attack


def _flux_context_mass(probs: torch.Tensor, layout: TokenLayout | None) -> torch.Tensor:
    """Per image: attention mass from target queries to context keys, mean over heads and queries."""
    if layout is None or layout.context.stop <= layout.context.start:
        raise PhotoshieldError("the Flux attention holds no context-image tokens; is this a Kontext pipeline?")
    return probs[:, :, layout.target, layout.context].float().sum(-1).mean((1, 2))


class AttentionProtection:
    """Attention-disrupting protection for one editor, configured once; ``objective(images)`` per batch.

    ``blocks`` (names, prefixes or globs of the denoiser's attention modules; default:
    Flux single-stream blocks, UNet ``mid_block`` + ``up_blocks.1``), ``timesteps``
    (UNet, scheduler units) or ``time_range`` (Flux, of 1000), ``prompts`` (the pool of
    edit prompts, encoded once), ``loss`` ("retention" or FaceShield's "displacement",
    UNet only), ``face_weight`` (share of the UNet map weight on the face region when a
    face is found), ``facial_weight`` (adds the identity term), ``inpaint_mask``
    (B or 1, 1, H, W; 1 = repainted; default the central half), ``max_side`` (working
    size), and the cost measures ``stop_early``, ``gradient_checkpointing`` and
    ``autocast`` ("auto": on for CUDA; bf16 where supported).

    Args:
        editor: the editor to protect against (Flux Kontext or a UNet editor).
        prompts: the edit prompts (default: eight common edits), encoded once.
        blocks: the attention modules whose maps the loss reads.
        timesteps: UNet timesteps (scheduler units; default 25 and 250).
        time_range: Flux times, of 1000 (default [980, 1000)).
        loss: ``retention`` or ``displacement`` (UNet only).
        face_weight: share of the UNet map weight on the face region.
        facial_weight: weight of the added identity term (0: none).
        faces: look for faces (for ``face_weight`` and ``facial_weight``).
        inpaint_mask: the repainted region for inpainting editors (1 = repainted).
        max_side: the working size's longest side; None for the full size.
        guidance_scale: Flux's distilled guidance.
        stop_early: stop each forward pass after the last block read.
        gradient_checkpointing: replay blocks in the backward pass ("auto": on CUDA).
        autocast: None, "auto", "bf16" or "fp16".
        free_text_encoders: free the editor's text encoders once the prompts are encoded.
        seed: seeds the noise and prompt draws.

    Shapes:
        - objective(images): images (B, 3, H, W) in [0, 1]; its loss_fn (B, 3, H, W) -> (B,)
        - inpaint_mask: (B or 1, 1, H, W)

    Raises:
        ValueError: an unknown ``loss`` or ``autocast``, an empty prompt list, or a bad ``time_range``.

    Examples:
        >>> import torch
        >>> from photoshield.protect import AttentionProtection
        >>> from photoshield.testing import tiny_editor
        >>> protection = AttentionProtection(tiny_editor("sd-img2img"), prompts=["make it winter"], faces=False)
        >>> photo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> objective = protection.objective(photo)
        >>> objective.info["editor"], objective.loss_fn(photo).shape
        ('sd-img2img', torch.Size([1]))
    """

    def __init__(
        self,
        editor: Editor,
        prompts: Sequence[str] | str | None = None,
        blocks: str | Sequence[str] | None = None,
        timesteps: Sequence[float] | None = None,
        time_range: tuple[float, float] = FLUX_TIME_RANGE,
        loss: str = "retention",
        face_weight: float = 0.75,
        facial_weight: float = 0.0,
        faces: bool = True,
        inpaint_mask: torch.Tensor | None = None,
        max_side: int | None = 512,
        guidance_scale: float = 2.5,
        stop_early: bool = True,
        gradient_checkpointing: bool | str = "auto",
        autocast: str | None = "auto",
        free_text_encoders: bool = False,
        seed: int = 0,
    ):
        if loss not in ("retention", "displacement"):
            raise ValueError(f"loss must be 'retention' or 'displacement', got {loss!r}")
        if autocast not in (None, "auto", "bf16", "fp16"):
            raise ValueError(f"autocast must be None, 'auto', 'bf16' or 'fp16', got {autocast!r}")
        self.editor = editor
        self.prompts = [prompts] if isinstance(prompts, str) else list(prompts or DEFAULT_PROMPTS)
        if not self.prompts:
            raise ValueError("the prompt pool is empty")
        default_blocks = FLUX_BLOCKS if editor.is_flux else UNET_BLOCKS
        self.blocks = list(default_blocks) if blocks is None else ([blocks] if isinstance(blocks, str) else list(blocks))
        timesteps = UNET_TIMESTEPS if timesteps is None else timesteps
        self.timesteps = [float(timesteps)] if isinstance(timesteps, (int, float)) else [float(t) for t in timesteps]
        low, high = time_range
        if not 0 <= low < high <= 1000:
            raise ValueError(f"time_range must satisfy 0 <= low < high <= 1000, got {time_range}")
        self.time_range = (float(low), float(high))
        self.loss, self.face_weight, self.facial_weight, self.faces = loss, face_weight, facial_weight, faces
        self.inpaint_mask, self.max_side, self.guidance_scale = inpaint_mask, max_side, guidance_scale
        self.stop_early = stop_early
        device = editor.device
        self.gradient_checkpointing = device.type == "cuda" if gradient_checkpointing == "auto" else bool(gradient_checkpointing)
        if autocast == "auto":
            autocast = "bf16" if _device_bf16(device) else None
        self.autocast = autocast
        self.seed = seed
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.embeds: PromptEmbeds = editor.encode_prompt(self.prompts)
        if not editor.is_flux:
            self.uncond = editor.encode_prompt("")
        if free_text_encoders:
            editor.free_text_encoders()

    # ------------------------------------------------------------------ helpers
    def working_size(self, images: torch.Tensor) -> tuple[int, int]:
        """The (h, w) the editor sees: long side at most ``max_side``, a multiple of its size step."""
        return working_size(*images.shape[-2:], self.max_side, self.editor.size_multiple)

    def _work(self, images: torch.Tensor) -> torch.Tensor:
        return resize_to(images, self.working_size(images))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.autocast == "bf16" else torch.float16
        return torch.autocast(self.editor.device.type, dtype=dtype)

    def _inpaint_mask(self, images: torch.Tensor) -> torch.Tensor:
        if self.inpaint_mask is not None:
            return resize_to(self.inpaint_mask.to(images), tuple(images.shape[-2:]))
        height, width = images.shape[-2:]
        mask = images.new_zeros(1, 1, height, width)
        mask[..., height // 4 : height - height // 4, width // 4 : width - width // 4] = 1
        return mask

    def _condition(self, work: torch.Tensor) -> torch.Tensor | None:
        mask = self._inpaint_mask(work) if self.editor.kind == "sd-inpaint" else None
        return self.editor.encode_condition(work, mask)

    # ------------------------------------------------------------------ Flux (DeContext)
    def _flux_forward(self, work: torch.Tensor, noise: torch.Tensor, t: float, prompt: int, detach: bool) -> torch.Tensor:
        editor = self.editor
        context = editor.encode_condition(work)
        with editor.capture_attention(self.blocks, detach=detach, reduce=_flux_context_mass, stop_early=self.stop_early) as capture:
            editor.denoise(noise.to(context), t, self.embeds[prompt], condition=context, guidance_scale=self.guidance_scale)
        if not capture.records:
            raise PhotoshieldError(f"no attention recorded in blocks {self.blocks}")
        return torch.stack([r.probs for r in capture.records]).mean(0)

    def _latent_shape(self, work: torch.Tensor) -> tuple[int, ...]:
        f = self.editor.vae_scale_factor
        channels = int(self.editor.vae.config.latent_channels)
        return (work.shape[0], channels, work.shape[-2] // f, work.shape[-1] // f)

    @torch.no_grad()
    def context_mass(self, images: torch.Tensor, samples: int = 4, seed: int = 1234) -> torch.Tensor:
        """Flux: the context-attention mass (B,) averaged over ``samples`` fixed (noise, t, prompt) draws."""
        if not self.editor.is_flux:
            raise TypeError("context-attention mass is a Flux Kontext quantity")
        work = self._work(images.to(self.editor.device))
        generator = torch.Generator("cpu").manual_seed(seed)
        low, high = self.time_range
        total = 0.0
        for i in range(samples):
            noise = torch.randn(self._latent_shape(work), generator=generator)
            t = low + (high - low) * (i + 0.5) / samples
            with self._autocast():
                total = total + self._flux_forward(work, noise, t, i % len(self.prompts), detach=True).float()
        return total / samples

    # ------------------------------------------------------------------ UNet (FaceShield)
    def _unet_maps(self, work: torch.Tensor, noise: torch.Tensor, t: float, prompt: int, detach: bool) -> list:
        editor = self.editor
        latents = editor.encode_latents(work)
        condition = self._condition(work)
        noisy = editor.add_noise(latents, noise.to(latents), t)
        with editor.capture_attention(self.blocks, detach=detach, stop_early=self.stop_early) as capture:
            editor.denoise(noisy, t, self.embeds[prompt], condition=condition)
        return [(r.probs, r.grid) for r in capture.records]

    @staticmethod
    def _query_weights(region: torch.Tensor | None, grid: tuple[int, int] | None, queries: int, ref: torch.Tensor) -> torch.Tensor:
        if region is None or grid is None:
            return ref.new_ones(1, 1, queries, 1)
        small = F.adaptive_avg_pool2d(region.to(ref), grid).flatten(1)  # (B, Q)
        return (small / small.mean(1, keepdim=True).clamp_min(1e-6))[:, None, :, None]

    def _compare(self, maps: list, clean: list, region: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Retention (share of the clean maps' structure kept) and normalised displacement, per image."""
        if len(maps) != len(clean):
            raise PhotoshieldError("attention records of the clean and protected photo do not line up")
        retention, displacement = 0.0, 0.0
        for (adv, grid), (ref, _) in zip(maps, clean):
            adv, ref = adv.float(), ref.float()
            weight = self._query_weights(region, grid, ref.shape[-2], ref)
            uniform = 1.0 / ref.shape[-1]
            centred = ref - uniform
            norm = (weight * centred.pow(2)).flatten(1).sum(1).clamp_min(1e-20)
            retention = retention + (weight * (adv - uniform) * centred).flatten(1).sum(1) / norm
            displacement = displacement + (weight * (adv - ref).pow(2)).flatten(1).sum(1) / norm
        return {"retention": retention / len(maps), "displacement": displacement / len(maps)}

    # ------------------------------------------------------------------ objective
    def objective(self, images: torch.Tensor) -> Objective:
        """The objective for a batch of clean (B, 3, H, W) images in [0, 1]."""
        editor = self.editor
        images = images.to(editor.device)
        size = self.working_size(images)
        facial = None
        region_full = None
        face_count = 0
        wants_region = not editor.is_flux and self.face_weight > 0
        if self.faces and (wants_region or self.facial_weight > 0):
            from .faces import face_region_mask, find_faces
            from .facial import FacialProtection

            found = find_faces(images)
            face_count = len(found)
            if face_count:
                region_full = face_region_mask(images, found)
                if self.facial_weight > 0:
                    facial = FacialProtection(device=images.device).objective(images, faces=found)
        info: dict[str, Any] = {
            "editor": editor.kind,
            "working_size": list(size),
            "blocks": self.blocks,
            "prompts": len(self.prompts),
            "faces": face_count,
            "stop_early": self.stop_early,
            "gradient_checkpointing": self.gradient_checkpointing,
            "autocast": self.autocast or "off",
        }
        if editor.is_flux:
            loss_fn, measure = self._flux_objective(images)
            info["time_range"] = list(self.time_range)
        else:
            loss_fn, measure = self._unet_objective(images, region_full)
            info.update(timesteps=self.timesteps, loss=self.loss)

        if facial is not None:
            attention_loss, attention_measure = loss_fn, measure

            def loss_fn(x: torch.Tensor) -> torch.Tensor:
                return attention_loss(x) + self.facial_weight * facial.loss_fn(x)

            def measure(x: torch.Tensor) -> dict[str, Any]:
                return {**attention_measure(x), **facial.measure(x)}

            info["facial_weight"] = self.facial_weight
        return Objective(loss_fn=loss_fn, measure=measure, info=info)

    def _run(self, fn, *args) -> Any:
        models = [self.editor.denoiser, self.editor.vae]
        with _checkpointing(models, self.gradient_checkpointing and torch.is_grad_enabled()), self._autocast():
            return fn(*args)

    def _flux_objective(self, images: torch.Tensor):
        low, high = self.time_range

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            work = self._work(x)
            noise = torch.randn(self._latent_shape(work), generator=self.generator)
            t = low + (high - low) * float(torch.rand((), generator=self.generator))
            prompt = int(torch.randint(len(self.prompts), (), generator=self.generator))
            return self._run(self._flux_forward, work, noise, t, prompt, False).float().to(x.device)

        def measure(x: torch.Tensor) -> dict[str, Any]:
            return {
                "context_attention_mass": [round(v, 5) for v in self.context_mass(x).tolist()],
                "peak_memory_mb": round(peak_memory_mb(self.editor.device), 1),
            }

        return loss_fn, measure

    def _unet_objective(self, images: torch.Tensor, region_full: torch.Tensor | None):
        work_clean = self._work(images)
        region = None
        if region_full is not None:
            region = resize_to(region_full, tuple(work_clean.shape[-2:]))
            region = (1 - self.face_weight) + self.face_weight * region
        generator = torch.Generator("cpu").manual_seed(self.seed + 1)
        noises = [torch.randn(self._latent_shape(work_clean), generator=generator) for _ in self.timesteps]
        pairs = [(ti, pi) for ti in range(len(self.timesteps)) for pi in range(len(self.prompts))]
        with torch.no_grad(), self._autocast():
            clean = {pair: self._unet_maps(work_clean, noises[pair[0]], self.timesteps[pair[0]], pair[1], True) for pair in pairs}

        def figures(x: torch.Tensor, pair: tuple[int, int], detach: bool) -> dict[str, torch.Tensor]:
            ti, pi = pair
            maps = self._unet_maps(self._work(x), noises[ti], self.timesteps[ti], pi, detach)
            return self._compare(maps, clean[pair], region)

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            pair = pairs[int(torch.randint(len(pairs), (), generator=self.generator))]
            result = self._run(figures, x, pair, False)
            value = result["retention"] if self.loss == "retention" else -result["displacement"]
            return value.float().to(x.device)

        @torch.no_grad()
        def measure(x: torch.Tensor) -> dict[str, Any]:
            totals = {"retention": 0.0, "displacement": 0.0}
            for pair in pairs:
                with self._autocast():
                    result = figures(x.to(self.editor.device), pair, True)
                for key in totals:
                    totals[key] = totals[key] + result[key].float() / len(pairs)
            return {
                "attention_retention": [round(v, 5) for v in totals["retention"].tolist()],
                "attention_displacement": [round(v, 5) for v in totals["displacement"].tolist()],
                "peak_memory_mb": round(peak_memory_mb(self.editor.device), 1),
            }

        return loss_fn, measure


def attention_objective(
    images: torch.Tensor,
    editor: Any = None,
    editor_kind: str | None = None,
    free_text_encoders: bool | None = None,
    seed: int | None = None,
    **options: Any,
) -> Objective:
    """``protect(..., method="attention", editor=PATH|HUB_ID|PIPELINE|Editor, editor_kind=KIND)``."""
    loaded, owned = resolve_editor(editor, editor_kind, images.device)
    seed = int(torch.initial_seed() % (2**31)) if seed is None else seed
    free = owned if free_text_encoders is None else free_text_encoders
    return AttentionProtection(loaded, free_text_encoders=free, seed=seed, **options).objective(images)


__getattr__ = renamed_getattr(__name__, globals(), ("AttentionAttack",))  # the old name, deprecated
