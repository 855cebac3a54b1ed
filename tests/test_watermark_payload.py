"""Watermark payload: schema round trips, BCH correction, keyed scrambling, calibrated p-values."""

import math
import random

import numpy as np
import pytest
import torch

from photoshield.watermark import payload as P

SCHEMA = P.SCHEMAS[1]
MESSAGES = ["a@b.io", "ID-004217", "x", 0, 12345, 2**64 - 1, b"\x00\x01\xfe", b"1234567", "héllo", "日本"]


@pytest.mark.parametrize("message", MESSAGES, ids=repr)
def test_round_trip_keeps_message_and_type(message):
    bits = P.encode(message, key="owner-key")
    assert bits.shape == (SCHEMA.n_bits,) and bits.dtype == torch.float32
    assert set(bits.tolist()) <= {0.0, 1.0}
    decoded = P.decode(bits, key="owner-key")
    assert decoded.message == message and type(decoded.message) is type(message)
    assert decoded.corrected == 0


@pytest.mark.parametrize("n_errors", range(SCHEMA.bch_t + 1))
def test_bit_errors_up_to_capacity_are_corrected(n_errors):
    rng = random.Random(n_errors)
    for trial in range(20):
        message = "".join(rng.choice("abcdefghij@.") for _ in range(rng.randint(1, SCHEMA.max_text)))
        bits = P.encode(message, key="k")
        flip = rng.sample(range(SCHEMA.n_bits), n_errors)
        bits[flip] = 1 - bits[flip]
        decoded = P.decode(bits, key="k")
        assert decoded.message == message, (trial, flip)
        assert decoded.corrected == n_errors
        assert torch.equal(decoded.codeword, P.encode(message, key="k"))


def test_errors_beyond_capacity_are_not_silently_trusted():
    rng = random.Random(7)
    wrong = 0
    for _ in range(200):
        bits = P.encode("ID-1", key="k")
        flip = rng.sample(range(SCHEMA.n_bits), 12)
        bits[flip] = 1 - bits[flip]
        decoded = P.decode(bits, key="k")
        assert decoded.message != "ID-1"
        wrong += decoded.message is not None
        # Whatever a far-off word decodes to, the no-message test does not call it detected at 1e-6.
        assert not P.match(bits, key="k").detected
    assert wrong < 40  # most far-off words are recognised as uncorrectable


def test_probabilities_and_soft_values_are_thresholded():
    bits = P.encode(42, key="k")
    probs = bits * 0.8 + 0.1
    assert P.decode(probs, key="k").message == 42


def test_wrong_key_is_not_detected():
    bits = P.encode("secret-id", key="right key")
    right = P.match(bits, "secret-id", key="right key")
    assert right.detected and right.bit_accuracy == 1.0 and right.p_value < 1e-20
    for key in ("wrong key", "right kez", None):
        wrong = P.match(bits, "secret-id", key=key)
        assert not wrong.detected and wrong.p_value > 1e-3
        assert not P.match(bits, key=key).detected
        assert P.decode(bits, key=key).message != "secret-id"


def test_keystream_is_balanced_and_key_dependent():
    a, b = P.keystream("a", 4096), P.keystream("b", 4096)
    assert abs(a.mean() - 0.5) < 0.03 and abs((a ^ b).mean() - 0.5) < 0.03
    assert np.array_equal(P.keystream("a", 96), P.keystream(b"a", 96))
    assert np.array_equal(P.keystream(None, 96), P.keystream(P.DEFAULT_KEY, 96))
    with pytest.raises(P.PayloadError):
        P.keystream("", 96)


def test_messages_that_do_not_fit_say_what_fits():
    with pytest.raises(P.MessageTooLongError, match=f"at most {SCHEMA.max_text} ASCII characters fit"):
        P.encode("alice@example.com")
    with pytest.raises(P.MessageTooLongError, match=f"at most {SCHEMA.max_bytes} bytes fit"):
        P.encode(b"12345678")
    with pytest.raises(P.MessageTooLongError, match="bytes of UTF-8"):
        P.encode("ééééé")
    with pytest.raises(P.MessageTooLongError, match="2\\*\\*64"):
        P.encode(2**64)
    for bad in ("", b"", -1, True, 1.5, None):
        with pytest.raises(P.PayloadError):
            P.encode(bad)


def test_bad_bit_vectors_and_rates_are_rejected():
    with pytest.raises(P.PayloadError, match="expected 96 bits"):
        P.decode(torch.zeros(95))
    with pytest.raises(P.PayloadError, match="NaN"):
        P.decode(torch.full((96,), float("nan")))
    for fpr in (0.0, 1.0, -1e-6):
        with pytest.raises(P.PayloadError, match="false-positive rate"):
            P.match(torch.zeros(96), "a", fpr=fpr)


def test_binomial_p_value_is_exact():
    assert P.binomial_p_value(0, 96) == 1.0
    assert P.binomial_p_value(96, 96) == 2.0**-96
    assert math.isclose(P.binomial_p_value(3, 4), 5 / 16)
    scipy_stats = pytest.importorskip("scipy.stats")
    for k in (40, 60, 72, 90):
        assert math.isclose(P.binomial_p_value(k, 96), scipy_stats.binom.sf(k - 1, 96, 0.5), rel_tol=1e-9)


@pytest.mark.parametrize("fpr", [1e-2, 1e-6, 1e-12])
def test_threshold_is_the_smallest_count_meeting_the_rate(fpr):
    k = P.threshold(96, fpr)
    assert P.binomial_p_value(k, 96) <= fpr < P.binomial_p_value(k - 1, 96)
    bits = P.encode("abc", key="k")
    flip = list(range(96 - k + 1))  # one error too many
    bits[flip] = 1 - bits[flip]
    assert not P.match(bits, "abc", key="k", fpr=fpr).detected
    bits[flip[0]] = 1 - bits[flip[0]]  # exactly at the threshold
    result = P.match(bits, "abc", key="k", fpr=fpr)
    assert result.detected and result.errors == 96 - k


def test_search_p_value_bounds_the_no_message_false_positive_rate():
    assert P.search_p_value(0, SCHEMA) == 2.0 ** -SCHEMA.parity_bits
    assert P.search_p_value(1, SCHEMA) < P.DEFAULT_FPR < P.search_p_value(2, SCHEMA)
    # Empirically: random words that decode to *some* valid codeword do so no more often than the bound.
    rng = np.random.default_rng(0)
    trials, hits = 20000, 0
    bound = P.search_p_value(SCHEMA.bch_t, SCHEMA)
    for _ in range(trials):
        hits += P.decode(rng.integers(0, 2, 96), key="k").codeword is not None
    assert hits / trials <= bound * 1.3 + 3 / trials


def _null_p_value_cdf(n_bits):
    """Support points of the clean-image p-value and P(p <= point) under the binomial null."""
    points = [P.binomial_p_value(k, n_bits) for k in range(n_bits + 1)]
    return np.array(points[::-1]), np.array(points[::-1])  # P(p <= p_k) = p_k exactly


def test_clean_image_p_values_are_calibrated_ks():
    """Unmarked images through a real (tiny) decoder: p-values follow the null; KS test against it."""
    from photoshield.watermark.model import WatermarkDecoder

    torch.manual_seed(0)
    decoder = WatermarkDecoder(n_bits=96, size=32, channels=(8, 16)).eval()
    images = torch.rand(400, 3, 40, 56)
    with torch.no_grad():
        logits = decoder(images)
    p_values = []
    for i, row in enumerate(logits):
        key = f"owner-{i}"
        p_values.append(P.match(torch.sigmoid(row), f"id{i % 97}", key=key).p_value)
    p_values = np.sort(np.array(p_values))
    support, cdf = _null_p_value_cdf(96)
    empirical = np.searchsorted(p_values, support, side="right") / len(p_values)
    ks = np.abs(empirical - cdf).max()
    assert ks < 1.36 / math.sqrt(len(p_values))  # 5 % critical value (conservative for a discrete null)
    assert (p_values <= 1e-3).mean() <= 0.01


# ---------------------------------------------------------------------------- the asked message, not a neighbour


NEIGHBOURS = ["ID-004218", "ID-004200", "id-004217", "ID-004216", "ID-00421", "ID-004227", "JD-004217"]


@pytest.mark.parametrize("asked", NEIGHBOURS)
def test_a_neighbouring_message_is_not_confirmed(asked):
    marked = P.encode("ID-004217", key="my secret")
    shared = int((marked == P.encode(asked, key="my secret")).sum())
    assert P.binomial_p_value(shared, 96) < 1e-6  # the fair-coin test alone would confirm it
    generator = torch.Generator().manual_seed(0)
    for noise in (0, 3, 6):  # clean, within BCH reach, beyond it (Chase list decoding)
        wrong = torch.randperm(96, generator=generator)[:noise]
        bits = marked.clone()
        bits[wrong] = 1 - bits[wrong]
        margin = 0.3 + 0.7 * torch.rand(96, generator=generator)
        margin[wrong] = 0.1  # a decoder's errors sit near 0.5
        soft = 0.5 + (bits - 0.5) * margin
        result = P.match(soft, asked, key="my secret")
        assert not result.detected, (asked, noise, result)
        binomial = P.binomial_p_value(96 - result.errors, 96)
        if binomial <= 1e-6:  # what the fair-coin test would have confirmed is a different message
            assert result.other_message == "ID-004217" and result.p_value == 1.0, (asked, noise, result)
        right = P.match(soft, "ID-004217", key="my secret")
        assert right.detected and right.other_message is None, (noise, right)


def test_rival_codewords_reach_past_the_bch_radius_with_soft_bits():
    marked = P.encode(123456, key="k")
    flipped = marked.clone()
    weak = torch.arange(0, 96, 16)[:6]  # 6 errors > t = 4: hard BCH decoding fails
    flipped[weak] = 1 - flipped[weak]
    soft = torch.where(torch.isin(torch.arange(96), weak), 0.5 + (flipped - 0.5) * 0.1, flipped)
    assert P.decode(soft, key="k").message is None
    found = P.rival_codewords(soft, key="k")
    assert found and found[0].message == 123456 and found[0].corrected == 6
