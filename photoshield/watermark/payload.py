"""Owner message <-> watermark bits: a versioned schema, BCH error correction, a keyed scramble, p-values.

Layout of one codeword (schema 1, 96 bits, what the shipped model carries)::

    [ version: 2 bits | kind: 2 bits | data: 64 bits ] -> BCH(m=7, t=4) parity: 28 bits -> 96 bits

    kind 0  bytes:  4-bit length + up to 7 bytes
    kind 1  text:   7-bit ASCII, up to 9 characters, NUL padded
    kind 2  utf-8:  4-bit length + up to 7 bytes of UTF-8 (non-ASCII text)
    kind 3  int:    unsigned integer below 2**64

The codeword is XORed with a keyed pseudo-random stream (SHAKE-256 of the key), so the bits a decoder
reads from an unmarked image are a fair coin against any (key, message) pair, and a wrong key looks
like an unmarked image. Detection is a one-sided binomial test: the p-value is the chance that an
unmarked image matches at least as many bits; ``detected`` means p <= the false-positive rate asked for.
Without a known message, a match is judged against every codeword within BCH reach (a union bound over
all 2**68 messages), which needs far fewer bit errors for the same false-positive rate.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence, Union

import numpy as np
import torch

from ..errors import PhotoshieldError

__all__ = [
    "DEFAULT_FPR",
    "DEFAULT_KEY",
    "Decoded",
    "Match",
    "MessageTooLongError",
    "PayloadError",
    "SCHEMAS",
    "Schema",
    "binomial_p_value",
    "decode",
    "encode",
    "get_schema",
    "keystream",
    "match",
    "match_any",
    "rival_codewords",
    "threshold",
]

Message = Union[str, int, bytes, bytearray]

DEFAULT_FPR = 1e-6
DEFAULT_KEY = "photoshield-public"  # used when no key is given: anyone can verify, nobody is kept out
_KINDS = {"bytes": 0, "text": 1, "utf8": 2, "int": 3}
_KIND_NAMES = {value: key for key, value in _KINDS.items()}
_HEADER_BITS = 4  # 2 version bits + 2 kind bits
_LENGTH_BITS = 4


class PayloadError(PhotoshieldError, ValueError):
    """A message, key, bit vector or false-positive rate that the payload schema cannot use.

    Also a ``ValueError``.

    Examples:
        >>> import torch
        >>> from photoshield import watermark
        >>> watermark.verify(torch.rand(1, 3, 32, 32), key="my secret", fpr=2)
        Traceback (most recent call last):
            ...
        photoshield.watermark.payload.PayloadError: the false-positive rate must be in (0, 1), got 2.0
    """


class MessageTooLongError(PayloadError):
    """The message does not fit the schema; the message says how much does.

    Examples:
        >>> import torch
        >>> from photoshield import watermark
        >>> watermark.embed(torch.rand(1, 3, 32, 32), "a message far too long", key="my secret")
        Traceback (most recent call last):
            ...
        photoshield.watermark.payload.MessageTooLongError: message 'a message far too long' has 22 characters; at most 9 ASCII characters fit ...
    """


@dataclass(frozen=True)
class Schema:
    """A payload layout: ``n_bits`` carried by the model, of which BCH(m, t) parity takes ``parity_bits``."""

    version: int = 1
    n_bits: int = 96
    bch_t: int = 4
    bch_m: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.version <= 3:
            raise PayloadError(f"schema version must be 1-3 (2 header bits), got {self.version}")
        if self.data_bits < 16:
            raise PayloadError(f"schema with {self.n_bits} bits and t={self.bch_t} leaves only {self.data_bits} data bits")
        if self.n_bits + (-self.payload_bits) % 8 > 2**self.bch_m - 1:
            raise PayloadError(f"{self.n_bits} bits do not fit a BCH code with m={self.bch_m}")

    @property
    def parity_bits(self) -> int:
        """BCH parity bits (m * t)."""
        return self.bch_m * self.bch_t

    @property
    def payload_bits(self) -> int:
        """Header plus data bits protected by the code."""
        return self.n_bits - self.parity_bits

    @property
    def data_bits(self) -> int:
        """Bits left for the message itself."""
        return self.payload_bits - _HEADER_BITS

    @property
    def max_text(self) -> int:
        """Characters of 7-bit ASCII text that fit."""
        return self.data_bits // 7

    @property
    def max_bytes(self) -> int:
        """Bytes (or UTF-8 bytes of non-ASCII text) that fit."""
        return min((self.data_bits - _LENGTH_BITS) // 8, 2**_LENGTH_BITS - 1)

    @property
    def max_int(self) -> int:
        """The largest integer that fits."""
        return 2**self.data_bits - 1

    def fits(self) -> str:
        """A human summary of what fits, for error messages and docs."""
        return (
            f"schema {self.version} carries {self.data_bits} data bits: up to {self.max_text} ASCII characters, "
            f"{self.max_bytes} bytes (or UTF-8 bytes of other text), or an integer below 2**{self.data_bits}"
        )


SCHEMAS: dict[int, Schema] = {1: Schema(version=1, n_bits=96, bch_t=4, bch_m=7)}


def get_schema(n_bits: int | None = None, version: int = 1) -> Schema:
    """The registered schema ``version``; for a model carrying other than its bit count, a schema sized to it."""
    if version not in SCHEMAS:
        raise PayloadError(f"unknown payload schema version {version}; known: {sorted(SCHEMAS)}")
    base = SCHEMAS[version]
    if n_bits is None or n_bits == base.n_bits:
        return base
    t = max(1, min(base.bch_t, (n_bits - 16 - _HEADER_BITS) // base.bch_m))
    return Schema(version=version, n_bits=n_bits, bch_t=t, bch_m=base.bch_m)


# --------------------------------------------------------------------------- bits <-> integers


def _int_to_bits(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def _bits_to_int(bits: Sequence[int]) -> int:
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def _bits_to_bytes(bits: Sequence[int]) -> bytearray:
    padded = list(bits) + [0] * (-len(bits) % 8)
    return bytearray(_bits_to_int(padded[i : i + 8]) for i in range(0, len(padded), 8))


def _bytes_to_bits(data: bytes, width: int) -> list[int]:
    bits = [bit for byte in data for bit in _int_to_bits(byte, 8)]
    return bits[:width]


def _bch(schema: Schema):
    import bchlib

    return bchlib.BCH(t=schema.bch_t, m=schema.bch_m)


# --------------------------------------------------------------------------- keys


def keystream(key: str | bytes | None, n_bits: int, version: int = 1) -> np.ndarray:
    """``n_bits`` pseudo-random bits (uint8 0/1) derived from ``key`` with SHAKE-256; None means the public key."""
    if key is None:
        key = DEFAULT_KEY
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise PayloadError("a watermark key must be a non-empty string or bytes")
    digest = hashlib.shake_256(b"photoshield-watermark/v%d\x00" % version + bytes(key)).digest((n_bits + 7) // 8)
    return np.unpackbits(np.frombuffer(digest, dtype=np.uint8))[:n_bits]


# --------------------------------------------------------------------------- message <-> data bits


def _message_bits(message: Message, schema: Schema) -> tuple[int, list[int]]:
    """(kind, data bits of length ``schema.data_bits``) for a message; clear errors when it does not fit."""
    width = schema.data_bits
    if isinstance(message, bool):
        raise PayloadError("a watermark message must be text, an integer or bytes, not a bool")
    if isinstance(message, int):
        if message < 0:
            raise PayloadError(f"integer messages must be >= 0, got {message}")
        if message > schema.max_int:
            raise MessageTooLongError(f"integer {message} does not fit: {schema.fits()}")
        return _KINDS["int"], _int_to_bits(message, width)
    if isinstance(message, str):
        if message == "":
            raise PayloadError("the watermark message is empty")
        if message.isascii() and "\x00" not in message:
            if len(message) > schema.max_text:
                raise MessageTooLongError(
                    f"message {message!r} has {len(message)} characters; at most {schema.max_text} ASCII "
                    f"characters fit ({schema.fits()})"
                )
            codes = [ord(c) for c in message] + [0] * (schema.max_text - len(message))
            bits = [bit for code in codes for bit in _int_to_bits(code, 7)]
            return _KINDS["text"], bits + [0] * (width - len(bits))
        kind, data = _KINDS["utf8"], message.encode("utf-8")
        label = f"message {message!r} is {len(data)} bytes of UTF-8"
    elif isinstance(message, (bytes, bytearray)):
        kind, data = _KINDS["bytes"], bytes(message)
        label = f"a message of {len(data)} bytes"
        if not data:
            raise PayloadError("the watermark message is empty")
    else:
        raise PayloadError(f"a watermark message must be text, an integer or bytes, not {type(message).__name__}")
    if len(data) > schema.max_bytes:
        raise MessageTooLongError(f"{label}; at most {schema.max_bytes} bytes fit ({schema.fits()})")
    bits = _int_to_bits(len(data), _LENGTH_BITS) + _bytes_to_bits(data, 8 * len(data))
    return kind, bits + [0] * (width - len(bits))


def _bits_message(kind: int, bits: Sequence[int], schema: Schema) -> Message | None:
    """The message of decoded data bits, or None when they are not a valid message of that kind."""
    if kind == _KINDS["int"]:
        return _bits_to_int(bits)
    if kind == _KINDS["text"]:
        codes = [_bits_to_int(bits[i : i + 7]) for i in range(0, 7 * schema.max_text, 7)]
        text = "".join(map(chr, codes)).rstrip("\x00")
        if not text or "\x00" in text or any(bits[7 * schema.max_text :]):
            return None
        return text
    length = _bits_to_int(bits[:_LENGTH_BITS])
    if length == 0 or length > schema.max_bytes or any(bits[_LENGTH_BITS + 8 * length :]):
        return None
    data = bytes(_bits_to_bytes(bits[_LENGTH_BITS : _LENGTH_BITS + 8 * length]))
    if kind == _KINDS["bytes"]:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- encode / decode


def encode(message: Message, key: str | bytes | None = None, schema: Schema | None = None) -> torch.Tensor:
    """The ``schema.n_bits`` watermark bits (float32 tensor of 0/1) that carry ``message`` under ``key``."""
    schema = schema or SCHEMAS[1]
    kind, data = _message_bits(message, schema)
    payload = _int_to_bits(schema.version, 2) + _int_to_bits(kind, 2) + data
    parity = _bch(schema).encode(bytes(_bits_to_bytes(payload)))
    word = np.array(payload + _bytes_to_bits(parity, schema.parity_bits), dtype=np.uint8)
    return torch.from_numpy(word ^ keystream(key, schema.n_bits, schema.version)).float()


@dataclass(frozen=True)
class Decoded:
    """What a bit vector says: the message (None when no valid codeword is within reach) and the codeword."""

    message: Message | None
    kind: str | None
    corrected: int  # bit errors BCH corrected (-1: uncorrectable)
    codeword: torch.Tensor | None  # the scrambled codeword nearest the bits (what a clean mark would read)


def _hard_bits(bits: torch.Tensor | np.ndarray | Sequence[float], n_bits: int) -> np.ndarray:
    """0/1 uint8 bits from 0/1 values or probabilities (threshold 0.5; apply a sigmoid to logits first)."""
    array = np.asarray(bits.detach().cpu() if isinstance(bits, torch.Tensor) else bits, dtype=np.float64).reshape(-1)
    if array.shape[0] != n_bits:
        raise PayloadError(f"expected {n_bits} bits for this schema, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise PayloadError("the bit vector contains NaN or infinite values")
    return (array > 0.5).astype(np.uint8)


def _correct(word: np.ndarray, schema: Schema) -> tuple[list[int], int] | None:
    """BCH-correct an unscrambled 0/1 word: (corrected payload + parity bits, errors fixed), or None past reach."""
    payload, parity = word[: schema.payload_bits].tolist(), word[schema.payload_bits :].tolist()
    data, ecc = _bits_to_bytes(payload), _bits_to_bytes(parity)
    bch = _bch(schema)
    errors = bch.decode(data, ecc)
    if errors < 0:
        return None
    if errors:
        bch.correct(data, ecc)
    fixed_payload = _bytes_to_bits(bytes(data), schema.payload_bits)
    fixed_parity = _bytes_to_bits(bytes(ecc), schema.parity_bits)
    # A correction landing in the shortened code's zero padding means the word was beyond reach.
    if _bits_to_bytes(fixed_payload) != data or _bits_to_bytes(fixed_parity) != ecc:
        return None
    if _bits_to_int(fixed_payload[:2]) != schema.version:
        return None
    return fixed_payload + fixed_parity, errors


def _decoded(fixed: list[int], errors: int, stream: np.ndarray, schema: Schema) -> Decoded:
    kind = _bits_to_int(fixed[2:_HEADER_BITS])
    message = _bits_message(kind, fixed[_HEADER_BITS : schema.payload_bits], schema)
    codeword = np.array(fixed, dtype=np.uint8) ^ stream
    return Decoded(message, _KIND_NAMES[kind] if message is not None else None, errors, torch.from_numpy(codeword).float())


def decode(bits: torch.Tensor | np.ndarray | Sequence[float], key: str | bytes | None = None,
           schema: Schema | None = None) -> Decoded:
    """Unscramble and error-correct ``bits`` (0/1 values, or probabilities thresholded at 0.5)."""
    schema = schema or SCHEMAS[1]
    stream = keystream(key, schema.n_bits, schema.version)
    corrected = _correct(_hard_bits(bits, schema.n_bits) ^ stream, schema)
    if corrected is None:
        return Decoded(None, None, -1, None)
    return _decoded(*corrected, stream, schema)


#: How many of the least reliable bits the rival-codeword search flips (2**CHASE_BITS BCH decodings).
CHASE_BITS = 8


def rival_codewords(bits: torch.Tensor | np.ndarray | Sequence[float], key: str | bytes | None = None,
                    schema: Schema | None = None, flips: int = CHASE_BITS) -> list[Decoded]:
    """Valid message codewords near ``bits``, nearest first: the hard BCH decoding plus Chase-II list decoding.

    ``bits`` are probabilities (or 0/1 values); every pattern of flips among the ``flips`` least reliable
    bits (those nearest 0.5) is BCH-decoded, which reaches codewords up to ``bch_t + flips`` bits away.
    Hard 0/1 input has no reliability order and gets the plain decoding only. Each result's ``corrected``
    is its Hamming distance to the hard bits. Example::

        rival_codewords(torch.sigmoid(logits), key="k")[0].message   # the most likely message
    """
    schema = schema or SCHEMAS[1]
    probabilities = np.asarray(bits.detach().cpu() if isinstance(bits, torch.Tensor) else bits, dtype=np.float64).reshape(-1)
    hard = _hard_bits(probabilities, schema.n_bits)
    stream = keystream(key, schema.n_bits, schema.version)
    word = hard ^ stream
    reliability = np.abs(probabilities - 0.5)
    weak = np.argsort(reliability, kind="stable")[:flips] if np.ptp(reliability) > 0 else np.array([], dtype=int)
    found: dict[bytes, Decoded] = {}
    for pattern in range(2 ** len(weak)):
        trial = word.copy()
        for position, index in enumerate(weak):
            if pattern >> position & 1:
                trial[index] ^= 1
        corrected = _correct(trial, schema)
        if corrected is None:
            continue
        fixed = np.array(corrected[0], dtype=np.uint8)
        signature = fixed.tobytes()
        if signature in found:
            continue
        candidate = _decoded(corrected[0], int((fixed != word).sum()), stream, schema)
        if candidate.message is not None:
            found[signature] = candidate
    return sorted(found.values(), key=lambda decoded: decoded.corrected)


# --------------------------------------------------------------------------- statistics


def binomial_p_value(matches: int, n_bits: int) -> float:
    """P(X >= matches) for X ~ Binomial(n_bits, 1/2), exact: the chance an unmarked image matches this well."""
    if not 0 <= matches <= n_bits:
        raise PayloadError(f"matches must be in [0, {n_bits}], got {matches}")
    tail = sum(math.comb(n_bits, i) for i in range(matches, n_bits + 1))
    return float(Fraction(tail, 2**n_bits))


def _ball(n_bits: int, radius: int) -> int:
    return sum(math.comb(n_bits, i) for i in range(radius + 1))


def search_p_value(errors: int, schema: Schema) -> float:
    """P(some codeword within ``errors`` bits of a random word) <= 2**payload * |ball| / 2**n (union bound).

    The p-value when no message is given: the decoder searched every codeword, not one.
    """
    bound = Fraction(2**schema.payload_bits * _ball(schema.n_bits, errors), 2**schema.n_bits)
    return float(min(Fraction(1), bound))


def _check_fpr(fpr: float) -> float:
    fpr = float(fpr)
    if not 0.0 < fpr < 1.0:
        raise PayloadError(f"the false-positive rate must be in (0, 1), got {fpr}")
    return fpr


def threshold(n_bits: int, fpr: float = DEFAULT_FPR) -> int:
    """The fewest matching bits (of ``n_bits``) whose p-value is at most ``fpr``; ``n_bits + 1`` if none is."""
    fpr = _check_fpr(fpr)
    for matches in range(n_bits + 1):
        if binomial_p_value(matches, n_bits) <= fpr:
            return matches
    return n_bits + 1


@dataclass(frozen=True)
class Match:
    """The verdict on one bit vector: decoded message, bit accuracy, p-value and decision."""

    message: Message | None
    bit_accuracy: float | None  # against the expected codeword (None: nothing to compare with)
    p_value: float
    detected: bool
    errors: int | None  # bits that differ from the codeword judged (None: no codeword within reach)
    other_message: Message | None = None  # a different message whose codeword fits the bits at least as well


def match(bits: torch.Tensor | np.ndarray | Sequence[float], message: Message | None = None,
          key: str | bytes | None = None, fpr: float = DEFAULT_FPR, schema: Schema | None = None) -> Match:
    """Judge decoded ``bits`` (0/1 or probabilities): against ``message`` if given, else against any message.

    With a message the p-value is the binomial tail of the matching bits, unless a different message's
    codeword fits the bits at least as well (``rival_codewords``): then the verdict is "marked, with a
    different message" (``other_message`` set, p-value 1, not detected). Without one, BCH decoding
    finds the nearest codeword and the p-value is ``search_p_value`` of its distance.
    """
    schema = schema or SCHEMAS[1]
    fpr = _check_fpr(fpr)
    hard = _hard_bits(bits, schema.n_bits)
    decoded = decode(hard, key=key, schema=schema)
    if message is not None:
        expected = encode(message, key=key, schema=schema).numpy().astype(np.uint8)
        matches = int((hard == expected).sum())
        errors = schema.n_bits - matches
        p = binomial_p_value(matches, schema.n_bits)
        # Messages under one key share most codeword bits, so a mark of ID-004217 matches ID-004218 far
        # better than chance. The asked message is confirmed only if no other message's codeword fits as
        # well; list decoding runs only when the test would confirm it (it only ever takes detections away).
        candidates = rival_codewords(bits, key=key, schema=schema) if p <= fpr else [decoded] * (decoded.message is not None)
        rival = next((c for c in candidates
                      if c.corrected <= errors and not np.array_equal(c.codeword.numpy().astype(np.uint8), expected)), None)
        if rival is not None:
            return Match(decoded.message, matches / schema.n_bits, 1.0, False, errors, other_message=rival.message)
        return Match(decoded.message, matches / schema.n_bits, p, p <= fpr, errors)
    if decoded.codeword is None or decoded.message is None:
        return Match(None, None, 1.0, False, None)
    errors = int((hard != decoded.codeword.numpy().astype(np.uint8)).sum())
    p = search_p_value(errors, schema)
    return Match(decoded.message, 1.0 - errors / schema.n_bits, p, p <= fpr, errors)


def match_any(bits: torch.Tensor | np.ndarray | Sequence[float], keys: Sequence[str | bytes | None],
              message: Message | None = None, fpr: float = DEFAULT_FPR, schema: Schema | None = None,
              tests: int | None = None) -> Match:
    """``match`` under each of several keys, judged together: the best match, its p-value times ``tests``.

    ``tests`` (default ``len(keys)``) is how many (key, read) pairs the caller tried in all: a union bound,
    so the false-positive rate stays ``fpr`` whichever key fits best. Used for marks bound to the photo's
    content (``watermark.binding``), where the verifier tries each candidate tag's key. Example::

        match_any(torch.sigmoid(logits), [b"k\\x00a", b"k\\x00b"], message="ID-1")
    """
    if not keys:
        raise PayloadError("match_any needs at least one key")
    fpr = _check_fpr(fpr)
    tests = len(keys) if tests is None else int(tests)
    results = [match(bits, message=message, key=key, fpr=min(fpr / tests, 0.5), schema=schema) for key in keys]
    best = min(results, key=lambda found: found.p_value)
    p_value = min(1.0, best.p_value * tests)
    rival = next((found for found in results if found.other_message is not None), None)
    if p_value > fpr and rival is not None:  # not confirmed, and under one key another message fits better
        return rival
    return Match(best.message, best.bit_accuracy, p_value, p_value <= fpr, best.errors, best.other_message)
