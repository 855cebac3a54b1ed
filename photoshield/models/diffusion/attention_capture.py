"""Record attention maps of diffusers denoisers through attention processors.

A capture swaps the processors of chosen attention modules (the public
``set_attn_processor`` extension point) for recording ones and restores the originals
on exit. UNet ``Attention`` modules keep running diffusers' own ``AttnProcessor``; the
recorder only taps its ``get_attention_scores`` call. Flux attention has no
probability-returning path in diffusers, so its recorder computes
``softmax(q k^T / sqrt(d)) v`` explicitly from the module's own projections, norms and
rotary embedding. Maps stay in the autograd graph unless ``detach=True``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch


class StopForward(Exception):
    """Raised inside a denoiser forward to skip the blocks a loss does not need (caught by the Editor)."""


@dataclass(frozen=True)
class TokenLayout:
    """Where text, target-latent and context-image tokens sit in a Flux joint-attention sequence.

    Grids are the packed token grids (rows, cols), i.e. latent size / 2.
    """

    text: slice
    target: slice
    context: slice
    target_grid: tuple[int, int]
    context_grid: tuple[int, int]

    @property
    def total(self) -> int:
        """Sequence length of the joint attention (text + target + context)."""
        return self.context.stop


@dataclass
class AttentionRecord:
    """One recorded map: which block, which denoiser call, at which timestep, and its spatial grid."""

    block: str
    step: int
    timestep: float | None
    probs: torch.Tensor
    grid: tuple[int, int] | None = None


Reduce = Callable[[torch.Tensor, "TokenLayout | None"], torch.Tensor]


@dataclass
class AttentionCapture:
    """The maps recorded during a ``capture_attention`` block.

    ``maps[block]`` lists one tensor per denoiser call, (B, heads, Q, K) unless ``reduce``
    changed it; ``records`` keeps the same tensors in call order with their timesteps;
    ``layout`` is the Flux token layout of the latest call (None for UNets).
    """

    blocks: list[str]
    detach: bool = False
    reduce: Reduce | None = None
    timesteps: Any = None
    stop_early: bool = False
    timestep_scale: float = 1.0
    records: list[AttentionRecord] = field(default_factory=list)
    layout: TokenLayout | None = None
    step: int = -1
    timestep: float | None = None
    latent_size: tuple[int, int] | None = None
    replaying: bool = False
    _seen: set = field(default_factory=set)

    @property
    def maps(self) -> dict[str, list[torch.Tensor]]:
        """Recorded tensors per block, in call order."""
        out: dict[str, list[torch.Tensor]] = {}
        for record in self.records:
            out.setdefault(record.block, []).append(record.probs)
        return out

    def __getitem__(self, block: str) -> torch.Tensor:
        """The latest map of ``block``."""
        for record in reversed(self.records):
            if record.block == block:
                return record.probs
        raise KeyError(f"no attention recorded for {block!r}; recorded: {sorted({r.block for r in self.records})}")

    def clear(self) -> None:
        """Forget recorded maps (e.g. between optimisation steps) but keep capturing."""
        self.records.clear()

    def active(self) -> bool:
        """Whether the current denoiser call is at a timestep that should be recorded."""
        wanted = self.timesteps
        if wanted is None or self.timestep is None:
            return True
        if callable(wanted):
            return bool(wanted(self.timestep))
        # bfloat16 models see t / 1000 rounded to ~3 digits, hence the relative tolerance
        return any(abs(float(t) - self.timestep) <= max(0.5, 0.004 * abs(float(t))) for t in wanted)

    def begin_call(
        self, timestep: float | None, layout: TokenLayout | None, latent_size: tuple[int, int] | None
    ) -> None:
        """Called before each denoiser forward with what the pre-hook learned from its arguments."""
        self.step += 1
        self.timestep = timestep
        self.layout = layout
        self.latent_size = latent_size
        self._seen = set()

    def record(self, block: str, probs: torch.Tensor) -> None:
        """Store one (B, heads, Q, K) map; stop the forward once every block has been seen if asked to.

        While ``replaying`` (gradient checkpointing recomputes a block during backward) the same
        ops run, so the recomputed graph matches the recorded one, but nothing is stored or stopped.
        """
        if self.replaying:
            if self.reduce is not None:
                self.reduce(probs, self.layout)
            return
        grid = _grid_of(self.latent_size, probs.shape[-2]) if self.layout is None else None
        value = self.reduce(probs, self.layout) if self.reduce is not None else probs
        if self.detach:
            value = value.detach()
        self.records.append(AttentionRecord(block, self.step, self.timestep, value, grid))
        self._seen.add(block)
        if self.stop_early and self._seen >= set(self.blocks):
            raise StopForward(block)


def _grid_of(latent_size: tuple[int, int] | None, queries: int) -> tuple[int, int] | None:
    """The (h, w) of a UNet attention block from the latent size and its query count."""
    if latent_size is None:
        return None
    height, width = latent_size
    for level in range(8):
        factor = 2**level
        h, w = math.ceil(height / factor), math.ceil(width / factor)
        if h * w == queries:
            return h, w
    return None


class _ScoreTap:
    """Stands in for an ``Attention`` module and forwards everything, recording ``get_attention_scores``."""

    def __init__(self, attn: torch.nn.Module, sink: Callable[[torch.Tensor], None]):
        self._attn = attn
        self._sink = sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attn, name)

    def get_attention_scores(self, query, key, attention_mask=None):
        probs = self._attn.get_attention_scores(query, key, attention_mask)
        self._sink(probs.unflatten(0, (-1, self._attn.heads)))
        return probs


class UNetRecorder:
    """Processor for UNet ``Attention`` modules: diffusers' ``AttnProcessor`` with the scores recorded."""

    def __init__(self, capture: AttentionCapture, block: str, original: Any):
        from diffusers.models.attention_processor import AttnProcessor

        self.capture, self.block, self.original = capture, block, original
        self.explicit = AttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if not self.capture.active():
            extra = {"temb": temb} if temb is not None else {}
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, **extra, **kwargs)
        tap = _ScoreTap(attn, lambda probs: self.capture.record(self.block, probs))
        return self.explicit(tap, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


class FluxRecorder:
    """Processor for ``FluxAttention`` that computes the joint attention explicitly and records it."""

    def __init__(self, capture: AttentionCapture, block: str, original: Any):
        self.capture, self.block, self.original = capture, block, original

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None, **kwargs
    ):
        if not self.capture.active():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, **kwargs)
        from diffusers.models.embeddings import apply_rotary_emb

        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query, key, value = (x.unflatten(-1, (-1, attn.head_dim)) for x in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        joint = encoder_hidden_states is not None and attn.added_kv_proj_dim is not None
        if joint:
            if getattr(attn, "fused_projections", False):
                text_q, text_k, text_v = attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)
            else:
                text_q = attn.add_q_proj(encoder_hidden_states)
                text_k = attn.add_k_proj(encoder_hidden_states)
                text_v = attn.add_v_proj(encoder_hidden_states)
            text_q, text_k, text_v = (x.unflatten(-1, (-1, attn.head_dim)) for x in (text_q, text_k, text_v))
            query = torch.cat([attn.norm_added_q(text_q), query], dim=1)
            key = torch.cat([attn.norm_added_k(text_k), key], dim=1)
            value = torch.cat([text_v, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        query, key, value = (x.transpose(1, 2) for x in (query, key, value))  # (B, heads, S, d)
        scores = (query @ key.transpose(-1, -2)) * (query.shape[-1] ** -0.5)
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, float("-inf"))
            else:
                scores = scores + attention_mask
        probs = scores.float().softmax(dim=-1).to(query.dtype)
        self.capture.record(self.block, probs)
        out = (probs @ value).transpose(1, 2).flatten(2, 3).to(query.dtype)
        if not joint:
            return out
        text_len = encoder_hidden_states.shape[1]
        text_out, out = out[:, :text_len], out[:, text_len:]
        out = attn.to_out[1](attn.to_out[0](out.contiguous()))
        return out, attn.to_add_out(text_out.contiguous())


def attention_blocks(model: torch.nn.Module) -> list[str]:
    """Names of the attention modules of a diffusers model, in registration order."""
    return [name[: -len(".processor")] for name in model.attn_processors]


def select_blocks(model: torch.nn.Module, blocks: str | Sequence[str]) -> list[str]:
    """Attention modules matched by ``blocks``: "all", exact names, name prefixes or glob patterns."""
    names = attention_blocks(model)
    if blocks == "all":
        return names
    if isinstance(blocks, str):
        blocks = [blocks]
    chosen: list[str] = []
    for pattern in blocks:
        hits = [n for n in names if n == pattern or n.startswith(pattern + ".") or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(f"no attention block matches {pattern!r}; blocks are: {', '.join(names)}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in names if n in chosen]


def _layout_from_ids(text_len: int, img_ids: torch.Tensor) -> TokenLayout:
    """Flux Kontext marks context-image tokens with id[0] == 1 and puts them after the target tokens."""
    ids = img_ids[0] if img_ids.ndim == 3 else img_ids
    is_target = ids[:, 0] == 0
    n_target = int(is_target.sum())

    def grid(part: torch.Tensor) -> tuple[int, int]:
        if part.numel() == 0:
            return (0, 0)
        return int(part[:, 1].max()) + 1, int(part[:, 2].max()) + 1

    return TokenLayout(
        text=slice(0, text_len),
        target=slice(text_len, text_len + n_target),
        context=slice(text_len + n_target, text_len + ids.shape[0]),
        target_grid=grid(ids[:n_target]),
        context_grid=grid(ids[n_target:]),
    )


def _call_hook(capture: AttentionCapture, signature: inspect.Signature):
    def hook(module, args, kwargs):
        bound = signature.bind_partial(*args, **kwargs).arguments
        timestep = bound.get("timestep")
        if isinstance(timestep, torch.Tensor):
            timestep = float(timestep.flatten()[0])
        if timestep is not None:
            timestep = float(timestep) * capture.timestep_scale
        layout = latent_size = None
        if bound.get("img_ids") is not None:
            layout = _layout_from_ids(bound["encoder_hidden_states"].shape[1], bound["img_ids"])
        sample = bound.get("sample")
        if isinstance(sample, torch.Tensor) and sample.ndim == 4:
            latent_size = tuple(sample.shape[-2:])
        capture.begin_call(timestep, layout, latent_size)

    return hook


@contextlib.contextmanager
def capture_attention(
    model: torch.nn.Module,
    blocks: str | Sequence[str] = "all",
    timesteps: Iterable[float] | Callable[[float], bool] | None = None,
    detach: bool = False,
    reduce: Reduce | None = None,
    stop_early: bool = False,
    timestep_scale: float = 1.0,
) -> Iterator[AttentionCapture]:
    """Record attention probabilities of ``blocks`` of a UNet or Flux transformer while the block runs.

    ``timesteps`` keeps only calls at those timesteps (scheduler units, within 0.5 or 0.4 %) or
    where a predicate is true; ``reduce(probs, layout)`` shrinks each map before it is stored
    (full maps of every block at 512 px cost gigabytes: choose blocks or reduce);
    ``stop_early`` aborts the forward once every chosen block has been recorded.
    """
    from diffusers.models.attention_processor import Attention

    chosen = select_blocks(model, blocks)
    capture = AttentionCapture(
        blocks=chosen,
        detach=detach,
        reduce=reduce,
        timesteps=timesteps,
        stop_early=stop_early,
        timestep_scale=timestep_scale,
    )
    originals = model.attn_processors
    processors = dict(originals)
    for name in chosen:
        module = model.get_submodule(name)
        recorder = UNetRecorder if isinstance(module, Attention) else FluxRecorder
        if recorder is FluxRecorder and not hasattr(module, "norm_q"):
            raise TypeError(f"cannot record attention of {name} ({type(module).__name__})")
        processors[f"{name}.processor"] = recorder(capture, name, originals[f"{name}.processor"])
    handle = model.register_forward_pre_hook(_call_hook(capture, inspect.signature(model.forward)), with_kwargs=True)
    model.set_attn_processor(processors)
    try:
        yield capture
    finally:
        handle.remove()
        model.set_attn_processor(dict(originals))


@contextlib.contextmanager
def stop_after(model: torch.nn.Module, block: str) -> Iterator[None]:
    """Abort the forward pass of ``model`` right after its submodule ``block`` has run."""
    try:
        module = model.get_submodule(block)
    except AttributeError as error:
        names = [n for n, _ in model.named_children()]
        message = f"{type(model).__name__} has no block {block!r}; top-level blocks: {', '.join(names)}"
        raise ValueError(message) from error

    def hook(_module, _inputs, _output):
        raise StopForward(block)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
