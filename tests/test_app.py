"""The web app's work without the page (photoshield.app.actions) and its command; the page itself is driven in a
real browser by tests/test_app_browser.py."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from photoshield import data
from photoshield.app import actions
from photoshield.errors import PhotoshieldError
from photoshield.io import read_image

ROOT = Path(__file__).resolve().parents[1]


def _small(name: str, folder: Path, side: int = 192) -> Path:
    image = Image.open(data.sample_path(name)).convert("RGB")
    image.thumbnail((side, side))
    path = folder / f"{name}.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory, one_thread) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    broken = folder / "broken.png"
    broken.write_bytes(b"not a picture")
    return {"face": _small("obama", folder), "scene": _small("chelsea", folder), "broken": broken}


def test_protecting_several_photos_gives_verdicts_previews_and_one_zip(photos, tmp_path):
    seen = []
    run = actions.protect_photos([photos["face"], photos["scene"], photos["broken"]], preset="light", steps=1,
                                 workdir=tmp_path, progress=lambda fraction, text: seen.append((fraction, text)),
                                 tqdm_progress=False)
    face, scene, broken = run.photos
    assert face.output.name == "obama.protected.png" and face.output.parent == run.folder
    assert read_image(face.output).shape == read_image(photos["face"]).shape
    assert "computed against: dlib ResNet, FaceRes, FaceRes-deep" in face.summary
    assert "SFace, never seen by the protection:" in face.summary
    assert face.comparison.is_file() and face.difference.is_file() and face.gain > 1
    assert scene.summary.startswith("unchanged") and "no face found" in scene.summary
    assert broken.output is None and "broken.png" in broken.error
    with zipfile.ZipFile(run.download) as archive:
        assert sorted(archive.namelist()) == ["chelsea.protected.png", "obama.protected.png"]
    text = run.text()
    assert text.startswith("obama.png\nprotected (facial, preset light") and "broken.png\nfailed: " in text
    assert text.endswith(f"saved in {run.folder}")
    assert seen[0] == (0.0, "protecting obama.png (1 of 3)") and seen[-1] == (1.0, "done")
    assert photos["face"].read_bytes() == _small("obama", tmp_path).read_bytes()  # the input is left as it was


def test_one_photo_downloads_as_its_png_and_names_do_not_collide(photos, tmp_path):
    run = actions.protect_photos([photos["scene"]], preset="light", steps=1, workdir=tmp_path, tqdm_progress=False)
    assert run.download == run.photos[0].output and run.download.suffix == ".png"
    twice = actions.protect_photos([photos["scene"], photos["scene"]], preset="light", steps=1, workdir=tmp_path,
                                   tqdm_progress=False)
    assert [p.output.name for p in twice.photos] == ["chelsea.protected.png", "chelsea-2.protected.png"]
    assert twice.folder != run.folder


@pytest.mark.parametrize("kwargs, message", [
    ({"paths": []}, "add one or more photos"),
    ({"paths": ["x.png"], "preset": "max"}, "unknown preset 'max'"),
    ({"paths": ["x.png"], "quality": 0}, "PSNR in dB"),
])
def test_bad_protect_input_is_refused_in_one_line(kwargs, message, tmp_path):
    with pytest.raises(PhotoshieldError, match=message):
        actions.protect_photos(workdir=tmp_path, **kwargs)


def test_watermark_round_trip_in_words(photos, tmp_path):
    outcome = actions.embed_watermark(photos["face"], " ID42 ", key="family", workdir=tmp_path)
    assert outcome.output.name == "obama.marked.png" and outcome.difference.name == "obama.watermark.png"
    assert 30 < outcome.psnr_db < 60
    assert f"PSNR {outcome.psnr_db:.1f} dB" in outcome.text and f"Saved as {outcome.output}" in outcome.text
    assert actions.verify_watermark(outcome.output, "ID42", "family").startswith("Watermark found: message 'ID42'.")
    assert actions.verify_watermark(outcome.output, None, "family").startswith("Watermark found: message 'ID42'.")
    assert actions.verify_watermark(outcome.output, "ID42", "stranger").startswith("No watermark found")
    assert actions.verify_watermark(photos["face"], "", "family").startswith("No watermark found")
    with pytest.raises(PhotoshieldError, match="needs the message"):
        actions.verify_watermark(outcome.output, "  ", "family", search=True)
    with pytest.raises(PhotoshieldError, match="write the message"):
        actions.embed_watermark(photos["face"], "", workdir=tmp_path)


def test_check_compares_with_the_reference_and_reads_a_mark(photos, tmp_path):
    alone = actions.check_photo(photos["face"])
    assert alone.text.splitlines() == ["1 face found (numbered on the photo)",
                                       "Add a reference photo of the person to see which face models still recognise them."]
    assert alone.faces.size == Image.open(photos["face"]).size
    same = actions.check_photo(photos["face"], photos["face"], key="family", watermark=True)
    lines = same.text.splitlines()
    assert lines[1].startswith("Same person as the reference (largest face of each photo): ")
    assert "  SFace, independent judge: still recognised (cosine 1.00, same person at or above 0.36)" in lines
    assert "No watermark found with this key (and message, if one was given)." in lines
    scene = actions.check_photo(photos["scene"], photos["face"])
    assert scene.text.startswith("0 faces found\nSame person as the reference")
    assert "SFace, independent judge: no face found (counts as not recognised)" in scene.text


def test_the_command_offers_host_and_port_but_no_share_link():
    from photoshield.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["app"])
    assert (args.host, args.port, args.output) == ("127.0.0.1", 7860, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["app", "--share"])


def test_without_gradio_the_library_imports_and_the_command_says_how_to_install():
    script = ("import sys; sys.modules['gradio'] = None\n"
              "import photoshield.protect, photoshield.watermark, photoshield.app.actions, photoshield.app.ui\n"
              "from photoshield.cli import main\n"
              "sys.exit(main(['app', '--port', '7999']))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "photoshield: error: the web app needs gradio: install with pip install 'photoshield[app]'"


def test_gradio_is_imported_by_the_page_module_only():
    importers = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "photoshield").rglob("*.py")
                       if "import gradio" in path.read_text(encoding="utf-8"))
    assert importers == ["photoshield/app/ui.py"]
