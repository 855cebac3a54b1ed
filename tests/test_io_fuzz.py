"""Fuzz ``photoshield.io`` with the seeded corpus of tests/fuzz_corpus.py: a few hundred files in a few seconds.

Every file either reads to a finite (1, 3, H, W) tensor in [0, 1] of the expected size or raises an
ImageError naming it; a structurally invalid PNG/JPEG (truncated, short data, header size that does not
match the data), a bomb or an unusable path never decodes; a valid file is never refused.
``benchmarks/fuzz_io.py`` runs the same corpus at 2,000+ files with a per-file timeout and memory watch.
"""

import collections
import warnings

import pytest
from fuzz_corpus import DECODE, ERROR, FAILURES, OUTCOMES, generate, materialize, run_case

COUNT = 400  # the ~130 fixed cases (reproducers, odd modes, paths) and ~270 random mutations


@pytest.mark.timeout(120)
def test_every_corpus_file_reads_cleanly_or_raises_image_error(tmp_path):
    cases = generate(COUNT, seed=0)
    counts: collections.Counter = collections.Counter()
    failures = []
    for case in cases:
        path = materialize(case, tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dropped metadata, extra frames: warned about, not failures
            outcome, detail = run_case(case, path)
        counts[outcome] += 1
        if outcome in FAILURES:
            failures.append(f"{outcome}: {case.name} (expected {case.expect}): {detail}")
    assert not failures, f"{len(failures)} failures, counts {dict(counts)}:\n" + "\n".join(failures[:30])
    assert set(counts) <= set(OUTCOMES)
    assert counts["clean error"] > 150 and counts["decoded ok"] > 100, counts


def test_corpus_is_seeded_and_covers_the_issue():
    first, again, other = generate(250, seed=3), generate(250, seed=3), generate(250, seed=4)
    assert [(c.name, c.data) for c in first] == [(c.name, c.data) for c in again]
    assert [c.data for c in first] != [c.data for c in other]
    kinds = {c.kind for c in generate(COUNT, seed=0)}
    assert {"truncate", "truncate-close", "flip", "magic-random", "bomb", "size-mismatch", "orientation", "icc",
            "exif", "path", "mode", "short-data"} <= kinds
    names = {c.name for c in first}
    for name in ("png-two-of-64-rows", "jpeg-baseline-half-plus-eoi", "jpeg-progressive-half-plus-eoi",
                 "jpeg-baseline-height-160", "bomb-jpeg-10000x10000", "bomb-png-8x12000000",
                 "bomb-png-16bit-rgba-10000x10000", "path-nul-byte", "path-symlink-loop", "path-fifo",
                 "path-non-utf8-name", "path-name-too-long", "unsupported-tiff-float32", "unsupported-tiff-uint32",
                 "valid-png-16-rgba", "valid-png-palette", "valid-jpeg-cmyk", "valid-png-la", "valid-gif-animated",
                 "valid-png-animated", "orientation-0-jpeg", "orientation-255-jpeg", "png-iccp-bad-zlib",
                 "jpeg-app1-exif-garbage"):
        assert name in names, name
    assert all(c.expect in (DECODE, ERROR, "any") for c in first)
