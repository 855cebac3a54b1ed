"""The command line: real files, real codecs, one-line errors with no traceback."""

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["name", "present", "task", "license"]
    assert max(len(line) for line in lines) <= 100  # fits a terminal; the details are in --long
    assert any(line.startswith("watermark-diffmark ") for line in lines)
    long = _run("models", "list", "--long").stdout.splitlines()
    assert long[0].split() == ["name", "present", "task", "license", "source"] and len(long) == len(lines)
    assert max(len(line) for line in long) > 100


def test_protect_help_speaks_of_costs_and_pixels():
    from photoshield.protect.api import PRESETS

    text = _run("protect", "--help").stdout
    flat = " ".join(text.split())
    assert "how much each pixel may change, out of 255" in flat and "L_inf" not in text
    for name, settings in PRESETS.items():  # every preset, with its steps and what it is trained through
        entry = next(line for line in text.splitlines() if line.startswith(f"  {name} "))
        assert f"{settings['steps']} steps" in entry
    assert "2.5x the time of standard" in flat and "trained through JPEG 75" in flat
    assert "--report FILE" in text and "--json" in text


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
    assert report.startswith(f"{source} -> {out}")
    assert "protected (facial, preset light, budget 6/255, 3 steps" in report  # in words, not a raw dump
    assert "dB on the face region" in report and "dB on the whole photo" in report
    assert "SFace, never seen by the protection:" in report and "same person" in report
    assert "[" not in report and "objective_before" not in report and "loss=" not in report


def test_protect_with_a_psnr_floor_keeps_the_face_at_that_quality(tmp_path, capsys):
    from photoshield.metrics import region_psnr
    from photoshield.protect.facial import face_boxes_mask, find_faces

    source = _face_photo(tmp_path / "me.png")
    assert main(["protect", str(source), "--steps", "3", "--preset", "light", "--psnr", "30", "--quiet"]) == 0
    original, protected = read_image(source), read_image(tmp_path / "me.protected.png")
    assert 0 < (protected - original).abs().max() <= 12 / 255 + 1e-6  # the default pixel cap of a PSNR budget
    assert float(region_psnr(original, protected, face_boxes_mask(original, find_faces(original)))[0]) >= 30
    assert "budget PSNR >= 30 dB, pixels <= 12/255" in capsys.readouterr().out


def test_protect_warns_about_lossy_output_and_handles_a_faceless_folder(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _face_photo(folder / "face.png")
    _photo(folder / "noface.png", size=(96, 64))
    out = tmp_path / "out"
    # the faceless photo comes out unchanged: written as asked, but the exit status says it is not protected
    assert main(["protect", str(folder), "-o", str(out), "--steps", "2", "--preset", "light", "--format", "jpg", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "lossy" in err and "no face" in err and "1 of 2 photos came out unchanged" in err
    assert sorted(p.name for p in out.iterdir()) == ["face.jpg", "noface.jpg"]


def test_protect_refuses_to_overwrite_its_input(tmp_path, capsys):
    source = _face_photo(tmp_path / "me.png")
    before = source.read_bytes()
    assert main(["protect", str(source), "-o", str(source), "--steps", "1", "--quiet"]) != 0
    assert source.read_bytes() == before


def test_demo_protects_a_bundled_face_and_attacks_it(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--preset", "light"]) == 0
    out = capsys.readouterr().out
    assert "never seen by the protection: sface" in out and "unseen judges fooled" in out
    # the report names the attacked models and the unseen judge, in words
    assert "computed against: dlib ResNet, FaceRes, FaceRes-deep" in out and "SFace, never seen by the protection:" in out
    assert len(list(tmp_path.glob("*.protected.png"))) == 1


# ----------------------------------------------------------------------------- issue 21: bad arguments, batches, Ctrl-C


def _no_work(monkeypatch):
    """Make reading a photo or protecting one fail the test: the command must stop before any work."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr("photoshield.io.read_photo", forbidden)
    monkeypatch.setattr("photoshield.protect.protect", forbidden)


def _fake_protect(monkeypatch, interrupt_at=None, raise_at=None, unchanged_at=()):
    """A fast stand-in for protect(): call N (from 1) can be interrupted, raise Ctrl-C, or come out unchanged."""
    from photoshield.protect import ProtectionResult

    calls = []

    def fake(pixels, method="facial", **kwargs):
        calls.append(kwargs)
        number = len(calls)
        if number == raise_at:
            raise KeyboardInterrupt
        protected = (pixels + 2 / 255).clamp(0, 1)
        report = {"method": method, "status": "protected", "interrupted": number == interrupt_at}
        if number in unchanged_at:
            protected = pixels
            report.update(status="unchanged", reason="the optimisation did not lower the objective")
        return ProtectionResult(image=protected, delta=protected - pixels, report=report)

    monkeypatch.setattr("photoshield.protect.protect", fake)
    return calls


def _folder(tmp_path, good=("a.png", "c.png", "e.png"), bad=("b.png", "d.jpg")):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(good):
        _photo(folder / name, seed=seed)
    for name in bad:
        _write(folder / name, b"" if name.endswith(".png") else b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.mark.parametrize("method", ["facial", "encoder", "attention", "deformation"])
def test_protect_unknown_parameter_is_one_line_naming_the_valid_ones(tmp_path, capsys, monkeypatch, method):
    source = _photo(tmp_path / "good.png")
    _no_work(monkeypatch)
    assert main(["protect", str(source), "--method", method, "--bogus", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("photoshield: error: ") and "--bogus" in err[0] and "valid:" in err[0], err
    assert "--momentum" in err[0]  # engine settings are valid for every method
    assert {"facial": "--region", "encoder": "--target", "attention": "--prompts", "deformation": "--variant"}[method] in err[0]
    assert not (tmp_path / "good.protected.png").exists()


def test_protect_unknown_parameter_has_no_traceback(tmp_path):
    result = _run("protect", str(_photo(tmp_path / "good.png")), "--bogus", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "--bogus" in result.stderr


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--epsilon", "300"], "got 300"),
        (["--epsilon", "0"], "got 0"),
        (["--psnr", "5"], "quality floor in dB"),
        (["--preset", "nosuch"], "light, standard, strong"),
        (["--method", "glaze"], "facial"),
        (["--steps", "-1"], "--steps"),
    ],
)
def test_protect_bad_settings_are_one_line_in_the_users_units(tmp_path, capsys, monkeypatch, argv, expected):
    source = _photo(tmp_path / "good.png")
    _no_work(monkeypatch)
    assert main(["protect", str(source), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert "1.176" not in err[0]  # 300 / 255: not the units the user typed


def test_preset_error_is_one_line_not_a_usage_block(tmp_path):
    for command in (["protect", str(_photo(tmp_path / "good.png"))], ["demo", "-o", str(tmp_path / "demo")]):
        result = _run(*command, "--preset", "nosuch")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == ["photoshield: error: unknown preset 'nosuch'; choose one of light, standard, strong, robust"]


@pytest.mark.parametrize("case", ["same-file", "same-folder", "extension", "under-a-file", "two-onto-one", "read-only"])
def test_protect_output_is_checked_before_any_work(tmp_path, capsys, monkeypatch, case):
    source = _photo(tmp_path / "me.png")
    folder = tmp_path / "in"
    folder.mkdir()
    _photo(folder / "a.png")
    argv = {
        "same-file": [str(source), "-o", str(source)],
        "same-folder": [str(folder), "-o", str(folder)],  # PNG into the input folder: onto the inputs
        "extension": [str(source), "-o", str(tmp_path / "out.xyz")],
        "under-a-file": [str(source), "-o", str(source / "out.png")],
        "two-onto-one": [str(folder), "-o", str(tmp_path / "out")],
        "read-only": [str(source), "-o", str(tmp_path / "locked" / "sub" / "out.png")],
    }[case]
    if case == "two-onto-one":
        _photo(folder / "a.jpg", seed=1)  # a.jpg and a.png would both become out/a.png
    if case == "read-only":
        (tmp_path / "locked").mkdir(mode=0o555)
        if os.geteuid() == 0:  # root may write anywhere: let the folder answer as it would to a user
            locked, access = tmp_path / "locked", os.access
            monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == locked else access(path, mode, **kw))
    _no_work(monkeypatch)
    assert main(["protect", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("photoshield: error: "), err
    expected = {"same-file": "overwrite an input", "same-folder": "overwrite an input", "extension": "'.xyz'",
                "under-a-file": "is not a folder", "two-onto-one": "would be written here", "read-only": "cannot write"}[case]
    assert expected in err[0]


def test_protect_folder_goes_on_past_bad_files_and_lists_them(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path)
    calls = _fake_protect(monkeypatch)
    out = tmp_path / "out"
    assert main(["protect", str(folder), "-o", str(out), "--quiet"]) == 1
    assert len(calls) == 3
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "e.png"]  # every good file, after the bad ones too
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("photoshield: error: ")]
    assert len(errors) == 2 and "b.png" in errors[0] and "empty" in errors[0] and "d.jpg" in errors[1], captured.err
    assert "2 of 5 files failed" in captured.err
    assert all(f"{folder / name} -> {out / name}" in captured.out for name in ("a.png", "c.png", "e.png"))


def test_attack_and_watermark_folders_go_on_past_bad_files(tmp_path, capsys, tiny_watermark):
    folder = _folder(tmp_path)
    assert main(["attack", str(folder), "-o", str(tmp_path / "attacked"), "--name", "jpeg", "--quality", "50"]) == 1
    assert sorted(p.name for p in (tmp_path / "attacked").iterdir()) == ["a.png", "c.png", "e.png"]
    err = capsys.readouterr().err
    assert "b.png" in err and "d.jpg" in err and "2 of 5 files failed" in err
    marked = tmp_path / "marked"
    assert main(["watermark", "embed", str(folder), "-o", str(marked), "--message", "ID-9", "--model", str(tiny_watermark),
                 "--refine-steps", "0", "--format", "webp"]) == 1
    assert sorted(p.name for p in marked.iterdir()) == ["a.webp", "c.webp", "e.webp"]
    err = capsys.readouterr().err
    assert "b.png" in err and "d.jpg" in err and "2 of 5 files failed" in err
    assert "lossy" in err and "watermark" in err  # a lossy output is warned about


def test_watermark_embed_checks_message_and_output_before_any_work(tmp_path, capsys, monkeypatch, tiny_watermark):
    folder = _folder(tmp_path, bad=())
    _no_work(monkeypatch)
    assert main(["watermark", "embed", str(folder), "-o", str(folder), "--message", "ID-9", "--model", str(tiny_watermark)]) == 2
    assert "overwrite an input" in capsys.readouterr().err
    assert main(["watermark", "embed", str(folder), "-o", str(tmp_path / "o"), "--message", "x" * 20,
                 "--model", str(tiny_watermark)]) == 2
    assert "at most 9 ASCII characters" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_watermark(tmp_path_factory):
    from photoshield.testing import tiny_watermark as build

    path = tmp_path_factory.mktemp("wm") / "tiny.safetensors"
    build().save(path)
    return path


@pytest.mark.parametrize("how", ["interrupted report", "KeyboardInterrupt"])
def test_ctrl_c_stops_a_folder_run_and_keeps_no_partial_photo(tmp_path, capsys, monkeypatch, how):
    folder = _folder(tmp_path, good=("a.png", "b.png", "c.png"), bad=())
    calls = _fake_protect(monkeypatch, **({"interrupt_at": 2} if how == "interrupted report" else {"raise_at": 2}))
    out = tmp_path / "out"
    assert main(["protect", str(folder), "-o", str(out), "--quiet"]) == 130
    assert len(calls) == 2  # the run stopped: c.png never started
    assert [p.name for p in out.iterdir()] == ["a.png"]  # b.png, interrupted, is not written (no temporary left either)
    err = capsys.readouterr().err
    assert f"interrupted while processing {folder / 'b.png'} (not written)" in err
    assert "1 of 3 files done" in err and "1 not started" in err and f"done: {folder / 'a.png'} -> {out / 'a.png'}" in err


def test_ctrl_c_on_a_single_photo_writes_nothing(tmp_path, capsys, monkeypatch):
    source = _photo(tmp_path / "me.png")
    _fake_protect(monkeypatch, interrupt_at=1)
    assert main(["protect", str(source), "--quiet"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.png"]
    assert "interrupted" in capsys.readouterr().err


def test_protect_writes_png_by_default_everywhere_and_warns_when_lossy(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(("a.jpg", "b.webp")):
        Image.open(_photo(tmp_path / f"{seed}.png", seed=seed)).save(folder / name)
    _fake_protect(monkeypatch)
    for output in (tmp_path / "out", str(tmp_path / "slash") + "/"):
        assert main(["protect", str(folder), "-o", str(output), "--quiet"]) == 0
        assert sorted(p.name for p in Path(output).iterdir()) == ["a.png", "b.png"]
        assert "lossy" not in capsys.readouterr().err
    assert main(["protect", str(folder), "--quiet"]) == 0  # the default folder: IN_protected/
    assert sorted(p.name for p in (tmp_path / "in_protected").iterdir()) == ["a.png", "b.png"]
    assert main(["protect", str(folder / "a.jpg"), "-o", str(tmp_path / "out"), "--quiet"]) == 0  # into a folder
    assert (tmp_path / "out" / "a.png").exists()
    assert "lossy" not in capsys.readouterr().err
    for argv in (["-o", str(tmp_path / "one.jpg")], ["-o", str(tmp_path / "jpgs"), "--format", "jpg"]):
        assert main(["protect", str(folder / "a.jpg"), *argv, "--quiet"]) == 0
        assert "warning: lossy output" in capsys.readouterr().err
    assert main(["protect", str(folder), "-o", str(tmp_path / "folder-jpgs"), "--format", "jpg", "--quiet"]) == 0
    assert "warning: lossy output" in capsys.readouterr().err


def test_unchanged_photos_are_written_and_make_the_exit_status_1(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path, bad=())
    calls = _fake_protect(monkeypatch, unchanged_at=(2,))
    out = tmp_path / "out"
    assert main(["protect", str(folder), "-o", str(out), "--quiet"]) == 1
    assert len(calls) == 3 and sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "e.png"]
    err = capsys.readouterr().err
    assert f"{folder / 'c.png'}: unchanged, not protected: the optimisation did not lower the objective" in err
    assert "1 of 3 photos came out unchanged" in err
    source = _photo(tmp_path / "me.png")
    _fake_protect(monkeypatch, unchanged_at=(1,))
    assert main(["protect", str(source), "--quiet"]) == 1
    assert (tmp_path / "me.protected.png").exists()


def test_verify_reports_a_different_message_and_exits_1(tmp_path, capsys, monkeypatch):
    from photoshield.watermark import VerifyResult

    source = _photo(tmp_path / "marked.png")
    found = VerifyResult(message="ID-004217", bit_accuracy=0.8125, p_value=1.0, detected=False, fpr=1e-6, errors=12,
                         n_bits=96, other_message="ID-004217")
    monkeypatch.setattr("photoshield.watermark.verify", lambda *args, **kwargs: found)
    assert main(["watermark", "verify", str(source), "--message", "ID-004218", "--key", "my secret"]) == 1
    out = capsys.readouterr().out
    assert "decision:     marked, with a different message: 'ID-004217'" in out and "DETECTED" not in out
    assert "hint" not in out  # a mark was read: no crop to look for


# ----------------------------------------------------------------------------- issue 26: speak to people


def _face_folder(tmp_path, size=128):
    folder = tmp_path / "in"
    folder.mkdir()
    _face_photo(folder / "a.png", size=size)
    _face_photo(folder / "b.png", size=size + 16)
    _write(folder / "c.png", b"")  # a bad file: listed as failed, in the table too
    return folder


def test_protect_batch_reports_each_photo_as_it_finishes_then_one_table(tmp_path):
    folder = _face_folder(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "photoshield.cli", "protect", str(folder), "-o", str(out), "--steps", "2",
               "--preset", "light", "--report", str(tmp_path / "run.csv")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        first = process.stdout.readline()  # through a pipe: the report must come as the photo finishes
        second_written_then = (out / "b.png").exists()
        rest, err = process.communicate(timeout=600)
    assert first.strip() == f"{folder / 'a.png'} -> {out / 'a.png'}", (first, rest, err)
    assert not second_written_then  # b.png was still being protected when a.png's report arrived
    assert process.returncode == 1  # c.png failed
    assert "photos:" in err and "steps:" in err  # two bars, each with its own label
    table = rest[rest.index("\nfile "):rest.index("\nreport: ")].strip().splitlines()
    assert rest.strip().endswith(f"report: {tmp_path / 'run.csv'}")
    assert table[0].split() == ["file", "faces", "verdict", "quality", "(face", "/", "photo", "PSNR)", "seconds", "status"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"a.png", "b.png", "c.png"}  # named within the folder given
    for name in ("a.png", "b.png"):
        assert re.search(r"\s1\s+fools \d of \d face models\s+[\d.]+ / [\d.]+ dB\s+[\d.]+\s+written$", rows[name]), rows
    assert rows["c.png"].endswith("failed")
    with open(tmp_path / "run.csv", newline="", encoding="utf-8") as source:
        written = list(csv.DictReader(source))
    from photoshield.reporting import BATCH_COLUMNS

    assert list(written[0]) == BATCH_COLUMNS and [row["status"] for row in written] == ["written", "written", "failed"]
    assert 25 < float(written[0]["face_psnr_db"]) < float(written[0]["psnr_db"]) and "empty" in written[2]["reason"]


def test_protect_report_json_refuses_to_overwrite_and_json_prints_the_raw_report(tmp_path, capsys, monkeypatch):
    source = _face_photo(tmp_path / "me.png", size=128)
    report = tmp_path / "run.json"
    assert main(["protect", str(source), "--steps", "1", "--preset", "light", "--quiet", "--json", "--report", str(report)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    raw = json.loads(lines[0])  # --json: the raw report, one line of strict JSON per photo
    assert raw["file"] == str(source) and raw["report"]["objective_before"] and raw["report"]["status"] == "protected"
    document = json.loads(report.read_text())
    assert document["settings"]["preset"] == "light" and document["photos"][0]["status"] == "written"
    assert document["photos"][0]["report"]["psnr_db"] == raw["report"]["psnr_db"]
    before = report.read_bytes()
    _no_work(monkeypatch)
    for bad, expected in ((str(report), "already exists; pass --overwrite"), (str(tmp_path / "run.txt"), ".json or .csv"),
                          (str(source), ".json or .csv")):
        assert main(["protect", str(source), "-o", str(tmp_path / "again.png"), "--report", bad]) == 2
        assert expected in capsys.readouterr().err
    assert report.read_bytes() == before and not (tmp_path / "again.png").exists()


def test_watermark_embed_and_verify_speak_plainly(tmp_path, capsys):
    from photoshield.models import registry

    if registry.find("watermark-diffmark") is None:
        pytest.skip("watermark-diffmark weights not present")
    source = _face_photo(tmp_path / "me.png", size=160)
    marked = tmp_path / "me.marked.png"
    assert main(["watermark", "embed", str(source), "-o", str(marked), "--message", "ID-004217", "--key", "my secret",
                 "--refine-steps", "10"]) == 0
    out = capsys.readouterr().out
    fingerprint = hashlib.sha256(b"my secret").hexdigest()[:8]
    assert f"key {fingerprint}" in out and "my secret" not in out  # a fingerprint, never the key
    assert re.search(rf"{re.escape(str(source))} -> {re.escape(str(marked))}  \(marked with 'ID-004217', PSNR \d+\.\d dB", out)
    assert main(["watermark", "verify", str(marked), "--message", "ID-004217", "--key", "my secret"]) == 0
    out = capsys.readouterr().out
    assert "decision:     DETECTED: marked with 'ID-004217'" in out and f"key:          {fingerprint}" in out
    assert main(["watermark", "verify", str(marked), "--message", "ID-004217", "--key", "another key"]) == 1
    out = capsys.readouterr().out
    assert "no mark of 'ID-004217' found: wrong key, another message, or an unmarked photo" in out
    assert "hint:         try --search (the photo may be cropped or rotated)" in out
    assert main(["watermark", "verify", str(source)]) == 1  # the unmarked original, any message
    out = capsys.readouterr().out
    assert "decision:     no mark found: wrong key or unmarked photo" in out and "(none decoded)" not in out
    assert "try --message TEXT --search" in out


def test_a_found_crop_is_given_in_the_photos_own_pixels():
    from photoshield.watermark import VerifyResult

    # The search found this copy as the window of side 96 at (top 16, left 8) of the 128 px grid the mark lives in.
    found = VerifyResult("ID-1", 0.97, 1e-12, True, 1e-6, 3, 96, geometry="crop of 96/128 side at (16, 8)",
                         image_size=(300, 240))
    assert found.crop_box == (20, 50, 260, 350)  # left, top, right, bottom in this copy's pixels
    assert found.marked_size == (320, 400)  # the marked photo at this copy's scale: 128/96 of each side
    assert found.where.startswith("a crop: this photo is x 20-260, y 50-350 of the marked photo (about 320 x 400 px")
    assert "75 % of each side" in found.where and "/128" not in str(found)
    plain = VerifyResult("ID-1", 0.97, 1e-12, True, 1e-6, 3, 96, image_size=(300, 240))
    assert plain.crop_box is None and plain.where == "as is"
    turned = VerifyResult("ID-1", 0.97, 1e-12, True, 1e-6, 3, 96, geometry="rotation by -5 degrees")
    assert turned.where == "rotated by -5 degrees" and turned.crop_box is None


def test_python_in_three_lines(tmp_path, monkeypatch):
    import photoshield as ps
    from photoshield.models import registry

    monkeypatch.chdir(tmp_path)
    _face_photo(tmp_path / "me.jpg", size=128)
    first = ps.protect("me.jpg", preset="light", steps=1, progress=False)
    assert first.path == Path("me.protected.png") and first.path.exists() and first.report["status"] == "protected"
    kept = first.path.read_bytes()
    second = ps.protect("me.jpg", preset="light", steps=1, progress=False)  # never overwrites: the next free name
    assert second.path == Path("me.protected-1.png") and first.path.read_bytes() == kept
    with pytest.raises(ps.PhotoshieldError, match="already exists"):
        ps.protect("me.jpg", "me.protected.png", steps=1, progress=False)
    assert ps.protect(read_image(tmp_path / "me.jpg"), steps=1, progress=False).path is None  # a tensor: nothing written
    if registry.find("watermark-diffmark") is None:
        pytest.skip("watermark-diffmark weights not present")
    marked = ps.watermark.embed("me.jpg", "ID-1", key="k", refine_steps=10)  # a path in, a tensor out
    assert marked.shape == read_image(tmp_path / "me.jpg").shape
    from photoshield.io import write_image

    write_image(marked, "copy.png")
    assert ps.watermark.verify("copy.png", "ID-1", key="k").detected
    assert not ps.watermark.verify("me.jpg", "ID-1", key="k").detected
