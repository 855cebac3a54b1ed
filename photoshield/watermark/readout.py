"""The decoder's linear read-out, whitened against the statistics of real photos in closed form.

The trained decoder reads its bits through its linear read-out: logits = W f(x) + b, with f the
high-passed ``linear_size`` copy of the image (its CNN branch barely moves under the mark,
``benchmarks/bench_watermark_refine.py --parts decoder``). The photo's own f(x) leaks into every bit
(host interference) and is what flips bits at a tight budget. For a given mark, the read-out that
rejects it best is W' = W C^-1, with C the covariance of f over crops of the training photos, plus
``alpha`` times the second moment of the error the ``autoencoder-small`` round trip makes in f (so the
new read-out also leans on what survives regeneration), plus a small ridge. W''s rows keep W's norms
times ``gain``, the bias centres the photos' mean (so a clean photo still reads fair-coin bits), and
the embedder's message pattern becomes W''s adjoint: the pattern that moves each bit's logit most per
unit of energy. No training, only statistics.

This module holds the maths (:func:`feature_statistics`, :func:`whiten`, :func:`resampled`); measuring the
statistics on the training photos is a training step:

    python -m training.whiten_watermark MODEL OUT [--photos runs/watermark/photos] [--side 64] [--crops 12000]

and ``python -m training.train_watermark ... --whiten`` runs it as the last step of training.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from ..errors import PhotoshieldError
from .model import WatermarkModel

__all__ = ["FeatureStatistics", "feature_statistics", "resampled", "resampled_patterns", "whiten"]

DEFAULT_ALPHA, DEFAULT_SHRINK, DEFAULT_GAIN = 64.0, 1e-3, 2.0  # the shipped model's settings


@dataclass
class FeatureStatistics:
    """What the read-out sees on real photos: mean and covariance of f, the autoencoder's error in f, mean CNN logits."""

    mean: torch.Tensor  # (d,) float64
    host: torch.Tensor  # (d, d) covariance of f over the crops
    error: torch.Tensor  # (d, d) second moment of f(autoencoder(x)) - f(x); zeros without an autoencoder
    cnn: torch.Tensor  # (n_bits,) mean logits of the decoder's CNN branch
    count: int


def feature_statistics(model: WatermarkModel, crops: Iterable[torch.Tensor],
                       autoencoder: Callable[[torch.Tensor], torch.Tensor] | None = None, error_every: int = 3,
                       progress: bool = True) -> FeatureStatistics:
    """Accumulate :class:`FeatureStatistics` over batches of crops; the autoencoder runs on every ``error_every``-th batch."""
    from ..progress import tqdm

    decoder = model.decoder
    if decoder.linear is None:
        raise PhotoshieldError("this watermark model has no linear read-out to whiten (decoder_linear_size 0)")
    dim = decoder.linear.in_features
    total, outer = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64)
    error_outer = torch.zeros(dim, dim, dtype=torch.float64)
    cnn = torch.zeros(model.n_bits, dtype=torch.float64)
    count = error_count = 0
    with torch.no_grad():
        for index, batch in enumerate(tqdm(crops, desc="read-out statistics", disable=not progress, unit="batch")):
            batch = batch.to(next(decoder.parameters()).device)
            features = decoder.linear_features(batch).double().cpu()
            total += features.sum(0)
            outer += features.T @ features
            cnn += decoder.cnn_logits(batch).double().cpu().sum(0)
            count += len(batch)
            if autoencoder is not None and index % error_every == 0:
                error = decoder.linear_features(autoencoder(batch)).double().cpu() - features
                error_outer += error.T @ error
                error_count += len(batch)
    if count < 2:
        raise PhotoshieldError("need at least two crops for read-out statistics")
    mean = total / count
    host = (outer - count * torch.outer(mean, mean)) / (count - 1)
    return FeatureStatistics(mean, host, error_outer / max(1, error_count), cnn / count, count)


def whiten(model: WatermarkModel, stats: FeatureStatistics, alpha: float = DEFAULT_ALPHA,
           shrink: float = DEFAULT_SHRINK, gain: float = DEFAULT_GAIN) -> WatermarkModel:
    """A copy of ``model`` with the read-out W (S_host + alpha S_error + ridge)^-1 and the message pattern matched to it.

    The settings go into the copy's config (``extra["whitened"]``); a model whitened already is refused, since
    whitening again would divide by the covariance twice: whiten the trained export instead.
    """
    if "whitened" in model.config.extra:
        raise PhotoshieldError(f"this watermark model's read-out is whitened already ({model.config.extra['whitened']}); "
                               "whiten the model training exported instead")
    new = copy.deepcopy(model)
    new.config.extra = {**new.config.extra, "whitened": {"alpha": alpha, "shrink": shrink, "gain": gain,
                                                         "crops": stats.count}}
    weight = model.decoder.linear.weight.detach().double().cpu()
    dim = weight.shape[1]
    ridge = shrink * torch.trace(stats.host) / dim
    total = stats.host + alpha * stats.error + ridge * torch.eye(dim, dtype=torch.float64)
    rows = torch.linalg.solve(total, weight.T).T
    rows = gain * rows * weight.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    linear = new.decoder.linear
    linear.weight.data = rows.to(linear.weight)
    linear.bias.data = (-(rows @ stats.mean) - stats.cnn).to(linear.bias)

    skip = new.embedder.message_skip
    if skip is not None:
        side, size = model.config.message_skip_size, model.config.size
        pattern = torch.zeros(rows.shape[0], 3, side, side, device=skip.weight.device, requires_grad=True)
        with torch.enable_grad():
            upsampled = F.interpolate(pattern, size=(size, size), mode="bilinear", align_corners=False)
            features = model.decoder.linear_features(upsampled)
            (adjoint,) = torch.autograd.grad((features * rows.to(features)).sum(), pattern)
        adjoint = adjoint.flatten(1).T  # (3 side^2, n_bits), the layout of message_skip's weight
        skip.weight.data = (adjoint * skip.weight.norm() / adjoint.norm()).to(skip.weight)
        skip.bias.data.zero_()
    return new


def resampled(model: WatermarkModel, side: int) -> WatermarkModel:
    """A copy of ``model`` with its message pattern and linear read-out resampled to ``side`` (to whiten a finer read-out)."""
    config = copy.deepcopy(model.config)
    config.message_skip_size = config.decoder_linear_size = side
    new = WatermarkModel(config)
    source, own = model.state_dict(), new.state_dict()
    kept = {name: value for name, value in source.items() if name in own and own[name].shape == value.shape}
    kept.update(resampled_patterns(source, own))
    new.load_state_dict(kept)
    return new


def resampled_patterns(source: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The message pattern and the linear read-out at a new side, resampled from the old one (bilinear), so a
    run that changes their size starts from what the old model wrote and read instead of from noise."""
    out = {}
    for name, axis in (("embedder.message_skip.weight", 0), ("embedder.message_skip.bias", 0),
                       ("decoder.linear.weight", 1)):
        if name not in source or name not in own or source[name].shape == own[name].shape:
            continue
        old_side = math.isqrt(source[name].shape[axis] // 3)
        new_side = math.isqrt(own[name].shape[axis] // 3)
        value = source[name].movedim(axis, -1)
        lead = value.shape[:-1]
        grid = value.reshape(-1, 3, old_side, old_side)
        grid = F.interpolate(grid, size=(new_side, new_side), mode="bilinear", align_corners=False)
        if name.startswith("decoder"):
            grid = grid * (old_side / new_side) ** 2  # as many more inputs, each weighted less: same logit scale
        out[name] = grid.reshape(*lead, -1).movedim(-1, axis).contiguous()
    return out
