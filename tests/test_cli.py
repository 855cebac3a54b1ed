"""The command line: real files, real codecs, one-line errors with no traceback."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from photoshield.cli import main, parse_extra_params
from photoshield.evaluate.metrics import psnr
from photoshield.io import read_image


def _photo(path, size=(48, 32), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x / size[0], y / size[1], (x + y) / sum(size)], -1) * 200
    array = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


def _run(*args):
    return subprocess.run([sys.executable, "-m", "photoshield.cli", *args], capture_output=True, text=True)


def test_parse_extra_params():
    assert parse_extra_params(["--quality", "50", "--subsampling=420", "--flag", "--sigma", "1.5"]) == {
        "quality": 50,
        "subsampling": 420,
        "flag": True,
        "sigma": 1.5,
    }


def test_help_and_models_list_run():
    assert _run("--help").returncode == 0
    listed = _run("models", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split()[:2] == ["name", "task"]


def test_attack_file_writes_a_lossy_copy(tmp_path):
    source = _photo(tmp_path / "in.png")
    out = tmp_path / "out.png"
    assert main(["attack", str(source), "-o", str(out), "--name", "jpeg", "--quality", "30"]) == 0
    original, attacked = read_image(source), read_image(out)
    assert attacked.shape == original.shape
    assert 15 < psnr(original, attacked).item() < 45


def test_attack_folder_mirrors_files(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    _photo(folder / "a.png")
    _photo(folder / "sub" / "b.png", seed=1)
    out = tmp_path / "out"
    assert main(["attack", str(folder), "-o", str(out), "--name", "jpeg", "--quality", "50", "--format", "jpg"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["a.jpg", "sub/b.jpg"]


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda p: p / "missing.png", "missing.png"),
        (lambda p: _write(p / "empty.png", b""), "empty.png"),
        (lambda p: _write(p / "junk.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"), "junk.jpg"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, make_input, expected):
    source = make_input(tmp_path)
    result = _run("attack", str(source), "-o", str(tmp_path / "o.png"), "--name", "jpeg")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_attack_is_a_clear_error(tmp_path, capsys):
    source = _photo(tmp_path / "in.png")
    assert main(["attack", str(source), "-o", str(tmp_path / "o.png"), "--name", "no-such-attack"]) != 0
    assert "no-such-attack" in capsys.readouterr().err


def test_refuses_to_overwrite_its_input(tmp_path, capsys):
    source = _photo(tmp_path / "in.png")
    before = source.read_bytes()
    assert main(["attack", str(source), "-o", str(source), "--name", "jpeg"]) != 0
    assert source.read_bytes() == before
    assert "in.png" in capsys.readouterr().err


def _face_photo(path, size=192):
    from photoshield import data

    Image.open(data.sample_path("obama")).convert("RGB").resize((size, size), Image.LANCZOS).save(path)
    return path


def test_protect_writes_a_png_next_to_the_input_and_prints_the_report(tmp_path, capsys):
    source = _face_photo(tmp_path / "me.jpg")
    before = source.read_bytes()
    assert main(["protect", str(source), "--steps", "3", "--preset", "light", "--epsilon", "6", "--quiet"]) == 0
    out = tmp_path / "me.protected.png"
    assert source.read_bytes() == before
    original, protected = read_image(source), read_image(out)
    assert 0 < (protected - original).abs().max() <= 6 / 255 + 1e-6
    report = capsys.readouterr().out
    assert "status" in report and "protected" in report and "psnr_db" in report


def test_protect_warns_about_lossy_output_and_handles_a_faceless_folder(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _face_photo(folder / "face.png")
    _photo(folder / "noface.png", size=(96, 64))
    out = tmp_path / "out"
    assert main(["protect", str(folder), "-o", str(out), "--steps", "2", "--preset", "light", "--format", "jpg", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "lossy" in err and "no face" in err
    assert sorted(p.name for p in out.iterdir()) == ["face.jpg", "noface.jpg"]


def test_protect_refuses_to_overwrite_its_input(tmp_path, capsys):
    source = _face_photo(tmp_path / "me.png")
    before = source.read_bytes()
    assert main(["protect", str(source), "-o", str(source), "--steps", "1", "--quiet"]) != 0
    assert source.read_bytes() == before


def test_demo_protects_a_bundled_face_and_attacks_it(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--preset", "light"]) == 0
    out = capsys.readouterr().out
    assert "dlib_distance" in out and "identity lost" in out
    assert len(list(tmp_path.glob("*.protected.png"))) == 1
