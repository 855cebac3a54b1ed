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
