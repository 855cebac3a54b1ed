"""Assemble the top-level NOTICE file from the fragments in photoshield/assets/notices/.

Every converter and fetcher in tools/ writes one fragment (source package and version,
license, attribution) next to the files it adds; this script joins them in name order so
NOTICE never drifts from what is bundled. ``--check`` exits non-zero when NOTICE is stale.

Usage::

    python tools/build_notice.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAGMENTS = REPO / "photoshield" / "assets" / "notices"
NOTICE = REPO / "NOTICE"

HEADER = """photoshield
Copyright 2026 the photoshield authors. Licensed under the Apache License, Version 2.0 (see LICENSE).

This distribution bundles third-party model weights, test photos and sample photos.
Each is listed below with its source (registry package and version), its license and
its attribution. The files were produced by the scripts in tools/ named in each section.
"""


def build() -> str:
    """The NOTICE text: the header, then every fragment in file-name order."""
    parts = [HEADER]
    for fragment in sorted(FRAGMENTS.glob("*.md")):
        parts.append(f"\n{'=' * 78}\n{fragment.read_text(encoding='utf-8').strip()}\n")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if NOTICE differs from the fragments")
    args = parser.parse_args()
    text = build()
    if args.check:
        if not NOTICE.exists() or NOTICE.read_text(encoding="utf-8") != text:
            sys.exit("NOTICE is out of date: run python tools/build_notice.py")
        print("NOTICE is up to date")
        return
    NOTICE.write_text(text, encoding="utf-8")
    print(f"wrote {NOTICE.relative_to(REPO)} from {len(list(FRAGMENTS.glob('*.md')))} fragments")


if __name__ == "__main__":
    main()
