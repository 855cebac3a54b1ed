"""Find where a cropped or rotated copy came from in a fraction of a second: FFT registration of the read-out.

``sync.search_logits`` decodes hundreds of candidate canvases to find the crop or rotation that a copy went
through. ``register_logits`` finds a geometry of the same fine grid (``sync.n_hypotheses``) without that:

1. The decoder's linear read-out is a bank of ``n_bits`` matched filters W_b over the high-passed
   ``linear_size`` copy. Placing a crop of side s at offset (t, l) and reading it is a cross-correlation
   of W_b with the high-passed window, so one FFT per scale gives every bit's logit at every offset. A
   marked copy in the right place pushes every logit away from zero (towards its bit, whichever that is),
   so the mean squared logit over the bits peaks there whatever the message, key and content tag.
2. Each of the best few peaks (``crops``) gets the codewords that the content tags of its neighbourhood
   allow (the codeword depends on where the copy sits), and the placement and codeword near it whose
   logits agree best, still from the FFT maps.
3. The best ``finalists`` are placed to the px: every side and offset within one px of them is put back on
   an exact canvas and scored by ``score`` (the matching bits of the codewords that canvas may carry) on
   the linear read-out, and so is every rotation of the grid; the best few crops, the best few rotations
   and the unmoved copy are decoded in full and ranked by ``score``, as in the exhaustive search.

The answer is a member of the same grid, chosen by the data, so ``verify`` charges it the same union bound
over ``n_hypotheses`` and its false-positive rate stays what it promises, however the candidate was found.

    result = register_logits(model.decoder, copy, score, codewords)    # copy: (1, 3, H, W)
    result.geometry.describe(128)                           # e.g. "crop of 111/128 side at (9, 8)"
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..image import resize_to, working_size
from .model import high_pass
from .sync import MIN_AREA, Geometry, Score, SearchResult, _crop_canvas, _min_side, _rotation_canvas, n_hypotheses

__all__ = ["register_logits"]


def _read_out_maps(decoder, square: torch.Tensor, low: int, size: int) -> dict[int, torch.Tensor]:
    """Every bit's linear logit for every placement of the copy as a crop, at the read-out's resolution.

    ``{small: (n_bits, reach, reach)}``: the copy resized to ``small`` x ``small`` (a side of ``small / ratio``
    on the ``size`` canvas) and placed at each offset of the ``linear_size`` grid (one FFT per scale).
    """
    side = decoder.linear_size
    ratio = side / size
    weight = decoder.linear.weight.reshape(-1, 3, side, side)
    # the lags kept (0 .. side - small) never wrap around an FFT of the read-out's own size
    spectra = torch.fft.rfft2(weight)  # (n_bits, 3, L, L // 2 + 1)
    scaled = square * 2 - 1
    maps = {}
    for small in sorted({round(s * ratio) for s in range(low, size)}):
        if small >= side:
            continue
        window = high_pass(resize_to(scaled, (small, small)))[0]
        logits = torch.fft.irfft2((spectra * torch.fft.rfft2(window, s=(side, side)).conj()[None]).sum(1), s=(side, side))
        reach = side - small + 1
        maps[small] = logits[:, :reach, :reach] + decoder.linear.bias[:, None, None]
    return maps


def _energy_peaks(maps: dict[int, torch.Tensor], count: int) -> list[tuple[int, int, int]]:
    """The ``count`` placements (small, top, left) of highest mean squared logit, at least 2 apart."""
    peaks: list[tuple[float, int, int, int]] = []
    for small, logits in maps.items():
        energy = logits.pow(2).mean(0)
        reach = energy.shape[-1]
        values, flat = energy.flatten().topk(min(4 * count, energy.numel()))
        peaks += [(v, small, i // reach, i % reach) for v, i in zip(values.tolist(), flat.tolist())]
    chosen: list[tuple[int, int, int]] = []
    for _, *place in sorted(peaks, reverse=True):
        if all(max(abs(a - b) for a, b in zip(place, other)) > 1 for other in chosen):
            chosen.append(tuple(place))
        if len(chosen) == count:
            break
    return chosen


def _best_word(maps: dict[int, torch.Tensor], place: tuple[int, int, int], words: torch.Tensor,
               reach: int = 1) -> tuple[float, tuple[int, int, int], torch.Tensor]:
    """Around ``place`` on the read-out grid, the placement and codeword (of ``words``, (K, n_bits) 0/1) whose
    logits agree best: (agreement, placement, codeword)."""
    signs = words * 2 - 1
    best = (-math.inf, place, words[0])
    small, top, left = place
    for other in range(small - reach, small + reach + 1):
        if other not in maps:
            continue
        logits = maps[other]
        rows = slice(max(0, top - reach), min(logits.shape[1], top + reach + 1))
        cols = slice(max(0, left - reach), min(logits.shape[2], left + reach + 1))
        local = torch.einsum("kb,bij->kij", signs.to(logits), logits[:, rows, cols])
        if local.numel() and local.max().item() > best[0]:
            k, i, j = (int(v) for v in torch.unravel_index(local.argmax(), local.shape))
            best = (local.max().item(), (other, rows.start + i, cols.start + j), words[k])
    return best


def _clamped(geometry: Geometry, size: int, low: int) -> Geometry:
    side = min(size - 1, max(low, geometry.side))
    limit = size - side
    return Geometry("crop", side, min(limit, max(0, geometry.top)), min(limit, max(0, geometry.left)))


def _crop_canvases(square: torch.Tensor, geometries: list[Geometry], size: int) -> torch.Tensor:
    """(B, 3, size, size): the copy put back at each crop geometry, edges replicated."""
    windows: dict[int, torch.Tensor] = {}
    out = []
    for geometry in geometries:
        if geometry.side not in windows:
            windows[geometry.side] = resize_to(square, (geometry.side, geometry.side))
        out.append(_crop_canvas(windows[geometry.side], size, geometry))
    return torch.cat(out)


def register_logits(decoder, image: torch.Tensor, score: Score, codewords: Callable[[torch.Tensor], torch.Tensor],
                    size: int = 128, min_area: float = MIN_AREA, max_degrees: int = 20, crops: int = 20,
                    rotations: int = 3, finalists: int = 3) -> SearchResult:
    """The logits of the grid geometry that FFT registration and ``score`` pick, for one image (1, 3, H, W).

    ``decoder`` is a ``WatermarkDecoder`` with a linear read-out; ``score`` as in ``sync.search_logits``
    ((logits (B, n_bits), canvases (B, 3, size, size)) -> (B,), higher is better); ``codewords``: canvases ->
    (B, K, n_bits) 0/1, the codewords each canvas may carry. ``crops``: energy peaks looked at;
    ``finalists`` crops and ``rotations`` rotations are decoded in full.
    """
    if image.shape[0] != 1:
        raise ValueError("register_logits takes one image at a time")
    if decoder.linear is None:
        raise ValueError("FFT registration needs a decoder with a linear read-out (decoder_linear_size > 0)")
    square = resize_to(image, (size, size))
    low = _min_side(size, min_area)
    ratio = decoder.linear_size / size
    maps = _read_out_maps(decoder, square, low, size)

    def on_grid(place: tuple[int, int, int], ds: int = 0, dt: int = 0, dl: int = 0) -> Geometry:
        small, top, left = place
        return _clamped(Geometry("crop", round(small / ratio) + ds, round(top / ratio) + dt, round(left / ratio) + dl),
                        size, low)

    # each energy peak: the codewords its neighbourhood's content tags allow, the best of them on the coarse grid
    peaks = _energy_peaks(maps, crops)
    around = [[on_grid(place)] + [on_grid(place, 0, dt, dl) for dt in (-2, 2) for dl in (-2, 2)] for place in peaks]
    words = codewords(_crop_canvases(square, [g for near in around for g in near], size))  # one batch: (B, K, n_bits)
    found = [_best_word(maps, place, group.flatten(0, 1).unique(dim=0))
             for place, group in zip(peaks, words.split([len(near) for near in around]))]
    # the finalists, to the px: every side and offset within one px of them, scored on the exact canvases (twice:
    # the second time around the best so far, since the read-out grid's scale is coarser than one px)
    seen: dict[Geometry, float] = {}
    centres = [on_grid(place) for _, place, _ in sorted(found, key=lambda item: item[0], reverse=True)[:finalists]]
    for _ in range(2):
        near = [_clamped(Geometry("crop", c.side + ds, c.top + dt, c.left + dl), size, low)
                for c in centres for ds in (-1, 0, 1) for dt in (-1, 0, 1) for dl in (-1, 0, 1)]
        near = [g for g in dict.fromkeys(near) if g not in seen]
        if near:
            exact = _crop_canvases(square, near, size)
            seen.update(zip(near, score(decoder.linear(decoder.linear_features(exact)), exact).tolist()))
        centres = sorted(seen, key=seen.get, reverse=True)[:1]
    best_crops = sorted(seen, key=seen.get, reverse=True)[:finalists]
    candidates = [Geometry("none")] + best_crops
    canvases = [square, _crop_canvases(square, best_crops, size)] if best_crops else [square]
    # rotations are undone at the copy's own aspect ratio, on a copy of at most 2 x size px (as the search does),
    # and ranked like the crops: by the bits that match the codewords each turned canvas may carry
    degrees = [d for d in range(-max_degrees, max_degrees + 1) if d]
    if degrees:
        upright = resize_to(image, working_size(*image.shape[-2:], 2 * size))
        turned = resize_to(_rotation_canvas(upright.expand(len(degrees), -1, -1, -1), torch.tensor(degrees)),
                           (size, size))
        logits = decoder.linear(decoder.linear_features(turned))
        likely = logits.pow(2).mean(1).topk(min(3 * rotations, len(degrees))).indices  # by energy, then by bits
        values = score(logits[likely], turned[likely])
        for index in likely[values.topk(min(rotations, len(likely))).indices].tolist():
            candidates.append(Geometry("rotation", degrees=degrees[index]))
            canvases.append(turned[index : index + 1])
    batch = torch.cat(canvases)
    logits = decoder(batch)
    best = int(score(logits, batch).argmax())
    return SearchResult(logits[best : best + 1], candidates[best], n_hypotheses(size, min_area, max_degrees),
                        batch[best : best + 1])
