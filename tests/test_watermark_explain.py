"""A watermark decision in words (photoshield.watermark.explain)."""

from __future__ import annotations

import pytest

from photoshield.watermark import VerifyResult
from photoshield.watermark.explain import explain, odds


@pytest.mark.parametrize("p, words", [
    (0.4, "40 %"), (0.01, "1 %"), (2e-4, "about 1 in 5,000"), (1.3e-5, "about 1 in 77,000"),
    (1e-6, "about 1 in 1 million"), (3.1e-12, "about 1 in 320 billion"), (2e-13, "about 1 in 5 trillion"),
    (1e-20, "about 1 in 10^20"), (0.0, "less than 1 in 10^300"),
])
def test_odds_read_like_people_say_them(p, words):
    assert odds(p) == words


def _result(**fields):
    values = dict(message="ID42", bit_accuracy=1.0, p_value=2e-28, detected=True, fpr=1e-6, errors=0, n_bits=96)
    values.update(fields)
    return VerifyResult(**values)


def test_a_detection_gives_message_odds_rule_and_geometry():
    text = explain(_result(geometry="crop 80 % at (0.1, 0.1)"))
    lines = text.splitlines()
    assert lines[0] == "Watermark found: message 'ID42'."
    assert lines[1] == ("An unmarked photo would match this well about 1 in 10^28 times (p = 2e-28); the decision needs "
                        "odds below 1 in 1 million (false-positive rate 1e-06). 100 % of its bits match.")
    assert lines[2] == "Read through: crop 80 % at (0.1, 0.1) (the photo had been cropped, scaled or rotated)."


def test_no_mark_and_another_message_are_told_apart():
    nothing = explain(_result(message=None, bit_accuracy=0.52, p_value=0.4, detected=False))
    assert nothing.startswith("No watermark found with this key")
    assert "with a 40 % chance (p = 0.4), which is what chance gives" in nothing
    close = explain(_result(p_value=1e-4, detected=False, bit_accuracy=0.8))
    assert "about 1 in 10,000 times (p = 0.0001), not rare enough to be sure" in close
    other = explain(_result(p_value=1.0, detected=False, other_message="ID43"))
    assert other.startswith("A watermark with this key is there, but it carries another message: 'ID43'.")
    assert "Read through" not in other
