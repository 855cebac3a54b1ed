"""The bundled sample photos: manifest integrity, size caps, the public API, and real faces in the face photos.

The photos and ``samples.json`` are written by tools/fetch_samples.py; these tests check what ships
(files, sha256, decoded sizes, no metadata, the caps, the total size), that the manifest agrees with the
tool's table and the notice, that the tool's conversion is deterministic and strips metadata, and, with
the bundled face models, that every face photo has a detectable face and that the dlib identity
distance separates the same-person pairs (< 0.6) from different people (> 0.6).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import itertools
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from photoshield import data
from photoshield.errors import PhotoshieldError

REPO = Path(__file__).resolve().parent.parent
NOTICE = REPO / "photoshield" / "assets" / "notices" / "samples.md"
MANIFEST = json.loads((data.SAMPLES_DIR / "samples.json").read_text(encoding="utf-8"))
ROWS = MANIFEST["samples"]
CAPS = {"faces": 512, "scenes": 768}
SAME_PERSON = 0.6  # dlib's threshold: descriptors of one person lie closer than this


@lru_cache(maxsize=1)
def _tool():
    """tools/fetch_samples.py as a module (tools/ is not a package)."""
    path = REPO / "tools" / "fetch_samples.py"
    spec = importlib.util.spec_from_file_location("photoshield_tools_fetch_samples", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- what ships


@pytest.mark.parametrize("row", ROWS, ids=[row["name"] for row in ROWS])
def test_manifest_entry_matches_its_file(row):
    path = data.SAMPLES_DIR / row["file"]
    assert path.is_file(), f"{row['file']} is listed in samples.json but missing"
    blob = path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == row["sha256"]
    with Image.open(io.BytesIO(blob)) as image:
        image.load()
        assert image.mode == "RGB"
        assert list(image.size) == row["size"]
        assert max(image.size) <= CAPS[row["kind"]]
        # metadata was stripped: no EXIF, ICC profile, XMP, comments or PNG text chunks
        assert not set(image.info) - {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}, image.info.keys()
    for key in ("name", "kind", "file", "source", "license", "attribution", "person", "size", "sha256"):
        assert key in row
    assert row["kind"] in data.KINDS
    assert "==" in row["source"] or "=" in row["source"].split()[0]  # pinned package version
    assert (row["person"] is not None) == (row["kind"] == "faces")


def test_no_stray_files_and_total_size_under_10mb():
    listed = {row["file"] for row in ROWS}
    present = {p.name for p in data.SAMPLES_DIR.iterdir() if p.suffix in (".jpg", ".png")}
    assert present == listed
    total = sum((data.SAMPLES_DIR / name).stat().st_size for name in listed)
    assert total < 10_000_000, f"samples take {total / 1e6:.1f} MB"


def test_enough_faces_scenes_and_a_same_person_pair():
    faces, scenes = data.samples("faces"), data.samples("scenes")
    assert len(faces) >= 8 and len(scenes) >= 8
    assert sorted(faces + scenes) == sorted(data.samples()) and not set(faces) & set(scenes)
    pairs = data.same_person_pairs()
    assert ("obama", "obama2") in pairs
    for a, b in pairs:
        assert a in faces and b in faces and a != b
        assert data.sample_info(a)["person"] == data.sample_info(b)["person"]
    people = {data.sample_info(name)["person"] for name in faces}
    assert len(people) >= 5  # enough different identities for different-person comparisons


def test_manifest_agrees_with_the_tool_and_the_notice():
    tool = _tool()
    assert [s.name for s in tool.SAMPLES] == [row["name"] for row in ROWS]
    notice = NOTICE.read_text(encoding="utf-8")
    for sample, row in zip(tool.SAMPLES, ROWS):
        assert (sample.kind, sample.license, sample.person) == (row["kind"], row["license"], row["person"])
        assert row["source"].startswith(sample.package + " ")
        assert f"`{row['file']}`" in notice and row["attribution"] in notice
    assert "lenna" not in [row["name"] for row in ROWS]


# --------------------------------------------------------------------------- API


def test_sample_returns_an_image_tensor():
    image = data.sample("chelsea")
    width, height = data.sample_info("chelsea")["size"]
    assert image.shape == (1, 3, height, width) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05
    assert data.sample_path("chelsea").is_file()


def test_sample_info_is_a_copy():
    info = data.sample_info("obama")
    info["person"] = "someone else"
    info["size"].append(1)
    assert data.sample_info("obama")["person"] == "obama" and len(data.sample_info("obama")["size"]) == 2


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(PhotoshieldError, match="faces, scenes"):
        data.samples("portraits")


@pytest.mark.parametrize("call", [data.sample, data.sample_path, data.sample_info])
def test_unknown_name_lists_the_names(call):
    with pytest.raises(PhotoshieldError, match=r"'lenna'.*obama.*chelsea"):
        call("lenna")


# --------------------------------------------------------------------------- the tool's conversion


def test_conversion_is_deterministic_upright_capped_and_clean():
    tool = _tool()
    gradient = np.broadcast_to(np.linspace(0, 255, 1000).astype(np.uint8), (600, 1000))
    pixels = np.stack([gradient, gradient[:, ::-1], np.full((600, 1000), 80, np.uint8)], axis=-1)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: must come out upright (portrait)
    exif[0x8298] = "copyright line that must not survive"
    source = io.BytesIO()
    Image.fromarray(pixels).save(source, format="JPEG", quality=95, exif=exif, comment=b"a comment")
    first = tool.convert(source.getvalue(), "faces")
    second = tool.convert(source.getvalue(), "faces")
    assert first == second
    encoded, suffix, size = first
    assert suffix == ".jpg" and size == (307, 512)
    with Image.open(io.BytesIO(encoded)) as out:
        assert out.size == size and "exif" not in out.info and "comment" not in out.info
    # a small PNG source that needs no resizing stays PNG, losslessly
    small = io.BytesIO()
    Image.fromarray(pixels[:300, :400]).save(small, format="PNG")
    encoded, suffix, size = tool.convert(small.getvalue(), "scenes")
    assert suffix == ".png" and size == (400, 300)
    with Image.open(io.BytesIO(encoded)) as out:
        assert (np.asarray(out) == pixels[:300, :400]).all()
    with pytest.raises(ValueError, match="outside"):
        tool.convert(small.getvalue(), "scenes", crop=(0, 0, 500, 100))


def test_debian_copyright_lookup():
    tool = _tool()
    text = "Files: a.png\nCopyright: x\nLicense: MIT\n\nFiles: 16.04/b_by_c.jpg\n 16.04/d.jpg\nLicense: CC-BY-4.0\n"
    assert tool._dep5_license(text, "b_by_c.jpg") == "CC-BY-4.0"
    assert tool._dep5_license(text, "d.jpg") == "CC-BY-4.0"
    assert tool._dep5_license(text, "a.png") == "MIT"
    assert tool._dep5_license(text, "missing.jpg") is None


# --------------------------------------------------------------------------- real faces (bundled models)


@pytest.fixture(scope="module")
def face_models():
    pytest.importorskip("photoshield.models.face.detect")
    from photoshield.models import face, registry

    for name in ("face-detector", "face-embedder", "face-landmarks"):
        try:
            registry.resolve(name)
        except PhotoshieldError as error:
            pytest.skip(f"bundled face model {name} is not available: {error}")
    return face


@lru_cache(maxsize=None)
def _descriptor(name: str) -> torch.Tensor:
    from photoshield.models.face import embed_faces

    with torch.no_grad():
        return embed_faces(data.sample(name))[0]


def test_every_face_photo_has_a_detected_face(face_models):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in data.samples("faces"):
            found = face_models.detect_faces(data.sample(name))[0]
            assert len(found["boxes"]) >= 1, f"no face detected in {name}"
    finally:
        torch.set_num_threads(threads)


def test_identity_distance_separates_same_and_different_people(face_models):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        faces = data.samples("faces")
        same = set(data.same_person_pairs())
        assert same
        for a, b in itertools.combinations(faces, 2):
            distance = face_models.identity_distance(_descriptor(a), _descriptor(b)).item()
            if (a, b) in same:
                assert distance < SAME_PERSON, f"{a} and {b} show one person but lie {distance:.3f} apart"
            else:
                assert distance > SAME_PERSON, f"{a} and {b} show different people but lie {distance:.3f} apart"
    finally:
        torch.set_num_threads(threads)
