"""A watermark check in plain language: the decision, the p-value as odds, and where the mark was read.

    result = verify("copy.jpg", message="ID-004217", key="my secret")
    print(explain(result))
    # Watermark found: message 'ID-004217'.
    # An unmarked photo would match this well about 1 in 300 billion times (p = 3.1e-12); ...

``odds(p)`` words a probability alone: ``odds(3.1e-12) == "about 1 in 300 billion"``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["explain", "odds"]

_SCALES = ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"))


def odds(p: float) -> str:
    """A probability as odds people read: ``0.4`` -> ``"40 %"``, ``2e-4`` -> ``"about 1 in 5,000"``,
    ``3.1e-12`` -> ``"about 1 in 320 billion"``; below 1 in a thousand trillion, a power of ten:
    ``"about 1 in 10^17"``.
    """
    if not p > 0:
        return "less than 1 in 10^300"
    if p >= 0.01:
        return f"{100 * p:.0f} %"
    times = 1 / p
    if times >= 1e15:
        return f"about 1 in 10^{round(math.log10(times))}"
    for scale, word in _SCALES:
        if times >= scale:
            return f"about 1 in {_round(times / scale)} {word}"
    return f"about 1 in {float(f'{times:.2g}'):,.0f}"


def _round(value: float) -> str:
    """Two significant figures, without a trailing ``.0``."""
    return f"{float(f'{value:.2g}'):g}"


def explain(result: Any) -> str:
    """A ``VerifyResult`` (see ``photoshield.watermark.verify``) as a few sentences: the decision, the message,
    the odds that an unmarked photo matches this well, the false-positive rate of the decision, and the crop or
    rotation it was read through (``search=True``)."""
    p = float(result.p_value)
    likely = f"with a {odds(p)} chance" if p >= 0.01 else f"{odds(p)} times"
    chance = f"An unmarked photo would match this well {likely} (p = {p:.2g})"
    rule = f"the decision needs odds below {odds(result.fpr).removeprefix('about ')} (false-positive rate {result.fpr:g})"
    accuracy = "" if result.bit_accuracy is None else f" {100 * result.bit_accuracy:.0f} % of its bits match."
    if result.detected:
        lines = [f"Watermark found: message {result.message!r}.", f"{chance}; {rule}.{accuracy}"]
    elif getattr(result, "other_message", None) is not None:
        lines = [f"A watermark with this key is there, but it carries another message: {result.other_message!r}.",
                 "It is not the message asked for, so it does not confirm it."]
    else:
        verdict = "which is what chance gives" if p >= 0.01 else "not rare enough to be sure"
        lines = ["No watermark found with this key (and message, if one was given).",
                 f"{chance}, {verdict}; {rule}.{accuracy}"]
    geometry = getattr(result, "geometry", "as is")
    if geometry and geometry != "as is":
        lines.append(f"Read through: {geometry} (the photo had been cropped, scaled or rotated).")
    return "\n".join(lines)
