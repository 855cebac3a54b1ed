"""DiffMark-style diffusion watermark embedder, a CNN bit decoder, and the full-resolution mapping.

The embedder is a conditional diffusion model (a small diffusers ``UNet2DConditionModel``) that
denoises into the watermarked image, following DiffMark:

- the cover image enters as extra input channels, weighted by a timestep-dependent factor
  ``w(t) = 0.5 + 0.5 * sqrt(1 - alpha_bar_t)`` (the noisier x_t, the more the cover guides;
  DiffMark uses ``sqrt(1 - alpha_bar_t)``, the floor keeps the cover in view at the last steps);
- the message enters through an embedding table of 2L rows (bit b at position i -> row 2 i + b)
  whose tokens the UNet's cross-attention layers read, in the lowest down- and up-sampling
  levels (DiffMark's cross information fusion; only there, to keep it cheap on a CPU); the bits
  also enter as a coarse spatial map (a linear layer to 4 x 16 x 16, upsampled, as extra input
  channels, as in StegaStamp) and as a learned 3 x 32 x 32 pattern added to the UNet's output
  (a skip path straight to the decoder: with it the decoder learns to read bits in the first
  few hundred steps, and the UNet learns to shape the residual to the cover from there);
- it predicts x0 (the watermarked image, as cover plus a predicted residual whose RMS is fixed to a
  budget, so image quality is set by design and training spends itself on robustness) and samples
  with a few DDIM steps (4 by default).

Any resolution: the model works on a ``size`` x ``size`` copy; the residual it adds there is resized
to the photo's own size, shaped by a luma/texture mask and added with a ``strength`` knob. The
decoder reads any size the same way (an antialiased resize to ``size``), so a photo and its
rescaled copies carry the same mark.

Informed embedding (``refine``): the sampled residual is then adapted to the photo at hand, at the
same RMS, until the decoder reads each bit with a margin despite the photo's own content.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ChecksumError, PhotoshieldError
from ..image import check_image, resize_to, working_size

__all__ = [
    "MessageEmbedding",
    "WatermarkConfig",
    "WatermarkDecoder",
    "WatermarkEmbedder",
    "WatermarkModel",
    "add_residual",
    "hold_psnr",
    "load_watermark_model",
    "perceptual_mask",
    "strength_for_psnr",
]

REGISTRY_NAME = "watermark-diffmark"
WEIGHTS_FILE = "watermark_diffmark.safetensors"


@dataclass
class WatermarkConfig:
    """Sizes of the embedder and decoder; stored in the weights file so a checkpoint rebuilds itself."""

    n_bits: int = 96
    size: int = 128
    block_out_channels: tuple[int, ...] = (16, 32, 64, 64)
    attention_levels: int = 1  # cross-attention in the lowest this many levels (16 x 16 at 128 px)
    layers_per_block: int = 1
    cross_attention_dim: int = 64
    message_map_channels: int = 4  # the message also as a coarse spatial map (0: cross-attention only)
    message_map_size: int = 16
    message_skip_size: int = 32  # and as a 3 x 32 x 32 pattern added to the x0 output (0: none)
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    decoder_channels: tuple[int, ...] = (24, 48, 64, 96)
    decoder_linear_size: int = 32  # plus a linear read-out of the high-passed 32 x 32 copy (0: none)
    num_train_timesteps: int = 1000
    sampling_steps: int = 4
    residual_rms: float = 0.008  # RMS of the residual at size (0.008 ~ 42 dB PSNR before the mask)
    schema_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "WatermarkConfig":
        raw = json.loads(text)
        known = {key: raw[key] for key in cls.__dataclass_fields__ if key in raw}
        for key in ("block_out_channels", "decoder_channels"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class MessageEmbedding(nn.Module):
    """Bits -> cross-attention tokens: row ``2 i + b_i`` of a table for bit i, then a small MLP mixer."""

    def __init__(self, n_bits: int, dim: int):
        super().__init__()
        self.n_bits = n_bits
        self.table = nn.Embedding(2 * n_bits, dim)
        self.mix = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.register_buffer("offsets", torch.arange(n_bits) * 2, persistent=False)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.ndim != 2 or bits.shape[1] != self.n_bits:
            raise ValueError(f"expected bits of shape (B, {self.n_bits}), got {tuple(bits.shape)}")
        tokens = self.table(self.offsets + (bits > 0.5).long())
        return tokens + self.mix(tokens)


def perceptual_mask(images: torch.Tensor, floor: float = 0.35, ceiling: float = 1.8) -> torch.Tensor:
    """A (B, 1, H, W) per-pixel weight of mean ~1: larger in textured areas, smaller in flat and dark ones.

    Texture is the local standard deviation of luma over a window that scales with the image, measured
    on a copy of at most 512 px (so a photo and its resized copy get the same mask, and a 20 MP photo
    costs no more than a 512 px one); very dark and very bright pixels, where clipping and the eye's
    contrast sensitivity bite, are damped.
    """
    height, width = images.shape[-2:]
    if max(height, width) > 512:  # measured on a copy of at most 512 px: cheap, and the same at any size
        small = resize_to(images, (max(1, round(height * 512 / max(height, width))),
                                   max(1, round(width * 512 / max(height, width)))))
        mask = perceptual_mask(small, floor, ceiling)
        return F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
    luma = (0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3])
    window = max(3, (min(images.shape[-2:]) // 64) * 2 + 3)
    mean = F.avg_pool2d(luma, window, stride=1, padding=window // 2, count_include_pad=False)
    var = F.avg_pool2d(luma * luma, window, stride=1, padding=window // 2, count_include_pad=False) - mean * mean
    texture = var.clamp_min(0).sqrt()
    texture = texture / (texture.mean(dim=(-2, -1), keepdim=True) + 1e-3)
    brightness = 1.0 - 0.5 * (2.0 * mean - 1.0).pow(4)
    mask = (0.5 + 0.5 * texture.clamp(max=3.0)) * brightness
    return mask.clamp(floor, ceiling)


def add_residual(images: torch.Tensor, residual: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Full-size marked images: the residual made at ``size`` resized to the photo, masked, scaled, added."""
    residual = resize_to(residual, tuple(images.shape[-2:]))
    return (images + strength * perceptual_mask(images) * residual).clamp(0, 1)


def _mse(images: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    return (other - images).pow(2).flatten(1).mean(1).view(-1, 1, 1, 1)


def strength_for_psnr(images: torch.Tensor, residual: torch.Tensor, psnr: float) -> torch.Tensor:
    """Per-photo strength (B, 1, 1, 1) at which ``add_residual`` gives ``psnr`` dB (the error grows as strength^2)."""
    target = 10 ** (-psnr / 10)
    strength = (target / _mse(images, add_residual(images, residual, 1.0)).clamp_min(1e-12)).sqrt()
    for _ in range(3):  # clipping at 0 and 1 makes it a little less than quadratic: correct it
        strength = strength * (target / _mse(images, add_residual(images, residual, strength)).clamp_min(1e-12)).sqrt()
    return strength


def hold_psnr(images: torch.Tensor, marked: torch.Tensor, psnr: float) -> torch.Tensor:
    """``marked`` with its change shrunk where needed so that each photo's 8-bit copy has at least ``psnr`` dB.

    Example: ``hold_psnr(x, x + 0.05, 40.0)`` moves every pixel by about 0.01 instead.
    """
    target = 10 ** (-psnr / 10)
    out = marked
    for _ in range(4):
        error = _mse(images, (out * 255).round() / 255)
        if bool((error <= target).all()):
            break
        scale = torch.where(error > target, (target / error).sqrt() * 0.995, torch.ones_like(error))
        out = (images + (out - images) * scale).clamp(0, 1)
    return out


class WatermarkEmbedder(nn.Module):
    """Conditional diffusion model: x_t, t, cover (weighted by w(t)) and message tokens -> x0 at ``size``."""

    def __init__(self, config: WatermarkConfig):
        super().__init__()
        from diffusers import DDIMScheduler, UNet2DConditionModel

        self.config = config
        levels = len(config.block_out_channels)
        plain = levels - max(1, min(config.attention_levels, levels - 1))
        self.unet = UNet2DConditionModel(
            sample_size=config.size,
            in_channels=6 + config.message_map_channels,
            out_channels=3,
            block_out_channels=tuple(config.block_out_channels),
            down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * (levels - plain),
            up_block_types=("CrossAttnUpBlock2D",) * (levels - plain) + ("UpBlock2D",) * plain,
            layers_per_block=config.layers_per_block,
            cross_attention_dim=config.cross_attention_dim,
            attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.norm_num_groups,
        )
        self.message = MessageEmbedding(config.n_bits, config.cross_attention_dim)
        side = config.message_map_size
        self.message_map = (
            nn.Linear(config.n_bits, config.message_map_channels * side * side) if config.message_map_channels else None
        )
        skip = config.message_skip_size
        self.message_skip = nn.Linear(config.n_bits, 3 * skip * skip) if skip else None
        self.scheduler = DDIMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="sample",
            clip_sample=False,
            set_alpha_to_one=True,
        )
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone().float(), persistent=False)
        self.residual_rms = config.residual_rms  # training may anneal it; the config keeps the shipped value

    def cover_weight(self, timesteps: torch.Tensor) -> torch.Tensor:
        """w(t) = 0.5 + 0.5 sqrt(1 - alpha_bar_t), shape (B, 1, 1, 1)."""
        alpha = self.alphas_cumprod.to(timesteps.device)[timesteps.long()]
        return (0.5 + 0.5 * (1 - alpha).sqrt()).view(-1, 1, 1, 1)

    def inference_timesteps(self, steps: int | None = None) -> torch.Tensor:
        """The DDIM timesteps ``sample`` visits (also the ones training favours)."""
        self.scheduler.set_timesteps(steps or self.config.sampling_steps)
        return self.scheduler.timesteps.clone()

    def add_noise(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t from x0 in [0, 1] (diffused in [-1, 1] units)."""
        alpha = self.alphas_cumprod.to(images.device)[timesteps.long()].view(-1, 1, 1, 1)
        return alpha.sqrt() * (images * 2 - 1) + (1 - alpha).sqrt() * noise

    def predict_x0(self, noisy: torch.Tensor, timesteps: torch.Tensor, cover: torch.Tensor,
                   bits: torch.Tensor) -> torch.Tensor:
        """The watermarked image x0 in [0, 1] units (unclamped) for a batch at ``size``."""
        condition = self.cover_weight(timesteps) * (cover * 2 - 1)
        tokens = self.message(bits)
        inputs = [noisy, condition]
        if self.message_map is not None:
            side = self.config.message_map_size
            plane = self.message_map(bits * 2 - 1).view(bits.shape[0], -1, side, side)
            inputs.append(F.interpolate(plane, size=cover.shape[-2:], mode="bilinear", align_corners=False))
        out = self.unet(torch.cat(inputs, dim=1), timesteps, encoder_hidden_states=tokens).sample
        if self.message_skip is not None:
            side = self.config.message_skip_size
            pattern = self.message_skip(bits * 2 - 1).view(bits.shape[0], 3, side, side)
            out = out + F.interpolate(pattern, size=cover.shape[-2:], mode="bilinear", align_corners=False)
        rms = out.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-12).sqrt()
        return cover + self.residual_rms * out / rms

    def sample(self, cover: torch.Tensor, bits: torch.Tensor, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM sampling from noise into the watermarked cover; returns x0 (B, 3, size, size), unclamped."""
        timesteps = self.inference_timesteps(steps)
        noise = torch.randn(cover.shape, generator=generator, device=generator.device if generator else cover.device)
        x = noise.to(cover.device, cover.dtype)
        x0 = cover
        for index, t in enumerate(timesteps):
            batch_t = t.expand(cover.shape[0]).to(cover.device)
            x0 = self.predict_x0(x, batch_t, cover, bits)
            if index + 1 < len(timesteps):
                alpha = self.alphas_cumprod[t]
                alpha_next = self.alphas_cumprod[timesteps[index + 1]]
                eps = (x - alpha.sqrt() * (x0 * 2 - 1)) / (1 - alpha).sqrt()
                x = alpha_next.sqrt() * (x0 * 2 - 1) + (1 - alpha_next).sqrt() * eps
        return x0


def high_pass(images: torch.Tensor) -> torch.Tensor:
    """The linear read-out's high pass of (B, C, H, W) images: each pixel minus its 5 x 5 local mean."""
    return images - F.avg_pool2d(images, 5, stride=1, padding=2, count_include_pad=False)


class WatermarkDecoder(nn.Module):
    """CNN: image of any size (resized to ``size``) -> (B, n_bits) logits.

    With ``linear_size``, a linear read-out of a high-passed ``linear_size`` copy is added to the CNN's
    logits: a matched filter for the embedder's message pattern, which it learns in tens of steps where
    the CNN alone sits at chance for hundreds; the CNN takes over the robustness as training goes on.
    """

    def __init__(self, n_bits: int = 96, size: int = 128, channels: tuple[int, ...] = (32, 64, 96, 128),
                 linear_size: int = 0):
        super().__init__()
        self.n_bits, self.size, self.linear_size = n_bits, size, linear_size
        self.linear = nn.Linear(3 * linear_size * linear_size, n_bits) if linear_size else None
        layers: list[nn.Module] = []
        previous = 3
        for width in channels:
            layers += [
                nn.Conv2d(previous, width, 3, stride=2, padding=1),
                nn.GroupNorm(min(8, width), width),
                nn.SiLU(),
                nn.Conv2d(width, width, 3, padding=1),
                nn.GroupNorm(min(8, width), width),
                nn.SiLU(),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(previous * 16, 256), nn.SiLU(),
                                  nn.Linear(256, n_bits))

    def scaled_input(self, images: torch.Tensor) -> torch.Tensor:
        """The ``size`` copy in [-1, 1] that both branches read."""
        return resize_to(images, (self.size, self.size)) * 2 - 1

    def linear_features(self, images: torch.Tensor) -> torch.Tensor:
        """What the linear read-out sees: the high-passed ``linear_size`` copy, flattened to (B, 3 * side * side)."""
        return high_pass(resize_to(self.scaled_input(images), (self.linear_size, self.linear_size))).flatten(1)

    def cnn_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The CNN branch's logits alone."""
        return self.head(self.features(self.scaled_input(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image(images)
        logits = self.cnn_logits(images)
        if self.linear is not None:
            logits = logits + self.linear(self.linear_features(images))
        return logits


class WatermarkModel(nn.Module):
    """Embedder + decoder + the full-resolution mapping: ``embed(images, bits)`` and ``decode(images)``."""

    def __init__(self, config: WatermarkConfig | None = None):
        super().__init__()
        self.config = config or WatermarkConfig()
        self.embedder = WatermarkEmbedder(self.config)
        self.decoder = WatermarkDecoder(self.config.n_bits, self.config.size, tuple(self.config.decoder_channels),
                                        self.config.decoder_linear_size)

    @property
    def n_bits(self) -> int:
        return self.config.n_bits

    def residual(self, images: torch.Tensor, bits: torch.Tensor, steps: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The watermark residual at ``size`` (x0 - cover) for full-size ``images``."""
        small = resize_to(images, (self.config.size, self.config.size))
        return self.embedder.sample(small, bits.to(images.device, images.dtype), steps, generator) - small

    def embed(self, images: torch.Tensor, bits: torch.Tensor, strength: float = 1.0, steps: int | None = None,
              generator: torch.Generator | None = None, refine_steps: int = 0,
              refine_through: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
              psnr: float | None = None) -> torch.Tensor:
        """Watermarked copies of ``images`` (B, 3, H, W) at their own size: cover + strength * mask * residual.

        ``refine_steps`` > 0 adapts the sampled residual to this photo and this decoder (``refine``;
        ``refine_through``: attacks it must also survive). ``psnr`` (dB) replaces ``strength`` by the
        strength that gives each photo that PSNR once written to 8 bits (at least that, never less).
        """
        check_image(images)
        if bits.ndim == 1:
            bits = bits.expand(images.shape[0], -1)
        if bits.shape != (images.shape[0], self.n_bits):
            raise ValueError(f"expected bits of shape ({images.shape[0]}, {self.n_bits}), got {tuple(bits.shape)}")
        if not math.isfinite(strength) or strength < 0:
            raise PhotoshieldError(f"watermark strength must be a finite number >= 0, got {strength}")
        residual = self.residual(images, bits, steps, generator)
        if psnr is not None:
            strength = strength_for_psnr(images, residual, psnr + 0.1)  # 0.1 dB for the 8-bit rounding
        if refine_steps > 0 and bool((torch.as_tensor(strength) > 0).any()):
            with torch.enable_grad():
                residual = self.refine(images, residual, bits, strength, refine_steps, through=refine_through)
        marked = add_residual(images, residual, strength)
        return marked if psnr is None else hold_psnr(images, marked, psnr)

    def refine(self, images: torch.Tensor, residual: torch.Tensor, bits: torch.Tensor, strength: float = 1.0,
               steps: int = 60, margin: float = 0.2, reach: float = 4.0, work_side: int = 256,
               through: Sequence[Callable[[torch.Tensor], torch.Tensor]] = ()) -> torch.Tensor:
        """Informed embedding: move the residual, at its own RMS (same image quality), until the decoder
        reads every bit of *this* photo with a logit margin.

        The sampled residual is the same whatever the photo's content does to the decoder; the photo's own
        content pushes some bits' logits the wrong way (host interference, the main source of bit errors).
        Normalised gradient steps on a ramp loss projected back onto the residual's RMS sphere correct
        exactly those bits: only bits under the ``margin`` pull, and bits more than ``reach`` times the sampled
        residual's mean logit shift below it stop pulling (at a tight budget, the residual is better spent on
        the bits it can still win than spread over ones the photo's content holds firmly the wrong way; it
        matters at a tight budget, ``tests/test_watermark_api.py``). Done on a copy of at most ``work_side`` px (the
        decoder reads a ``size`` px copy anyway), so it costs the same for any photo size. ``through``:
        differentiable attacks (e.g. the ``autoencoder-small`` round trip) whose outputs must read too.
        """
        work = resize_to(images, working_size(*images.shape[-2:], work_side))
        mask = strength * perceptual_mask(work)
        signs = bits.to(images.dtype) * 2 - 1
        budget = residual.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        current = residual.detach().clone()
        with torch.no_grad():  # how far the sampled residual moves the logits its own way: the scale of "reach"
            shift = signs * (self.decoder((work + mask * resize_to(current, tuple(work.shape[-2:]))).clamp(0, 1))
                             - self.decoder(work))
            cap = reach * shift.mean(dim=1, keepdim=True).clamp_min(1e-3)

        def ramp(view: torch.Tensor) -> torch.Tensor:
            return torch.minimum(F.relu(margin - signs * self.decoder(view)), cap).mean(dim=1)

        for index in range(steps):
            current.requires_grad_(True)
            marked = (work + mask * resize_to(current, tuple(work.shape[-2:]))).clamp(0, 1)
            loss = ramp(marked)  # the photo as it is counts as much as all the ``through`` views together
            if through:
                loss = loss + sum(ramp(attack(marked)) for attack in through) / len(through)
            if not bool((loss > 0).any()):
                break
            (grad,) = torch.autograd.grad(loss.sum(), current)
            with torch.no_grad():
                norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                if not bool((norm > 0).any()):  # every bit either won or out of reach
                    break
                norm = norm.clamp_min(1e-12)
                step = budget * (0.15 * (1 - index / steps) + 0.005)
                current = current - step * grad / norm
                current = current * budget / current.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return current.detach()

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        """Per-bit logits (B, n_bits) for images of any size."""
        return self.decoder(images)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write weights and config to one safetensors file (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        state = {key: value.detach().contiguous().cpu() for key, value in self.state_dict().items()}
        temporary = path.with_name(path.name + ".tmp")
        metadata = {"config": self.config.to_json(), "format": "photoshield-watermark/1", "tensors_sha256": tensors_sha256(state)}
        save_file(state, str(temporary), metadata=metadata)
        temporary.replace(path)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> "WatermarkModel":
        """Rebuild a model from a file written by ``save``; a clear error for anything else."""
        from ..models.registry import safetensors_metadata

        path = Path(path)
        metadata = safetensors_metadata(path, "watermark checkpoint")
        if "config" not in metadata:
            raise PhotoshieldError(f"{path}: safetensors file has no watermark config; was it written by WatermarkModel.save?")
        from ..models.registry import load_state_dict

        model = cls(WatermarkConfig.from_json(metadata["config"]))
        state = load_state_dict(path)
        recorded = metadata.get("tensors_sha256")
        if recorded is not None and tensors_sha256(state) != recorded:
            raise ChecksumError(f"{path}: the weights do not match the checksum written with them; the file is corrupt")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise PhotoshieldError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model.to(device)


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """A sha256 over every tensor's name, dtype, shape and bytes (what ``save`` records, ``from_file`` checks)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().contiguous().cpu()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_watermark_model(path: str | Path, device: str | torch.device = "cpu") -> WatermarkModel:
    """Registry loader for ``watermark-diffmark``."""
    return WatermarkModel.from_file(path, device=device)


def _register() -> None:
    from ..models.registry import Checkpoint, register

    register(
        Checkpoint(
            name=REGISTRY_NAME,
            task="watermark embedding and decoding (96 bits)",
            filename=WEIGHTS_FILE,
            loader=load_watermark_model,
            source="trained by photoshield (python -m training.train_watermark, then python -m "
                   "training.whiten_watermark) on photos from registry packages",
            license="Apache-2.0 (photoshield)",
            sha256="cbdf4c3138157c25f5e518ee6b6171d1df5b0f9da901e129eb6acc2f42cd3111",
            how_to_get=(
                "train it in a source checkout: python tools/fetch_training_photos.py && python -m training.train_watermark "
                "--whiten --export photoshield/assets/weights/watermark_diffmark.safetensors; or pass path=... to load()"
            ),
            description="DiffMark-style diffusion embedder (UNet2DConditionModel, 4 DDIM steps) + CNN decoder with a whitened "
                        "64 px linear read-out, 128 px internal.",
        )
    )


_register()
