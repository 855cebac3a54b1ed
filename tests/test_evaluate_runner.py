"""The robustness runner: documented columns, resume without recomputing, one process = two processes."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from photoshield.errors import PhotoshieldError
from photoshield.evaluate.runner import BASE_COLUMNS, EvalConfig, binomial_p_value, judge_columns, parse_method, run

REPO = Path(__file__).resolve().parent.parent
try:  # the invisible-watermark baselines are an optional extra: without it the grid leaves them out
    import imwatermark  # noqa: F401

    HAVE_BASELINES = True
except ImportError:
    HAVE_BASELINES = False
needs_baselines = pytest.mark.skipif(
    not HAVE_BASELINES, reason="the optional baselines extra (invisible-watermark) is not installed: pip install -e '.[baselines]'"
)
METHODS = ["clean", "facial:eps=8,steps=2,preset=light"] + (["dwtDctSvd"] if HAVE_BASELINES else [])
GRID = {
    "inputs": ["obama", "biden"],
    "methods": METHODS,
    "attacks": ["jpeg:quality=50"],
    "judges": ["dlib-port", "sface"],
    "max_side": 320,
    "seed": 3,
    "progress": False,
}
ROWS = 2 * len(METHODS) * 2  # images x methods x (identity, jpeg)
CLI_GRID = [
    "evaluate", "--inputs", "obama", "biden", "--methods", *METHODS,
    "--attacks", "jpeg:quality=50", "--judges", "dlib-port", "sface", "--max-side", "320", "--seed", "3", "--quiet",
]


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", newline="", encoding="utf-8") as source:
        return list(csv.DictReader(source))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("eval") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the launched processes (OMP_NUM_THREADS=1): float32 sums depend on the thread count
    try:
        summary = run(EvalConfig.from_dict({**GRID, "output": str(folder)}))
    finally:
        torch.set_num_threads(threads)
    return folder, summary


def test_report_files_have_the_documented_columns_and_real_measurements(one_process):
    folder, summary = one_process
    assert (summary.rows, summary.computed, summary.skipped, summary.failed) == (ROWS, ROWS, 0, 0)
    names = ["results.csv", "results.json", "report.html", "identity_dlib_port.svg", "identity_sface.svg", "quality_robustness.svg"]
    for name in names + (["bit_accuracy.svg"] if HAVE_BASELINES else []):
        assert (folder / name).stat().st_size > 0, name
    with open(folder / "results.csv", encoding="utf-8") as source:
        header = source.readline().strip().split(",")
    assert header == BASE_COLUMNS + judge_columns(["dlib-port", "sface"])
    rows = {(r["image"], r["method"], r["attack"]): r for r in _rows(folder)}
    assert len(rows) == ROWS
    clean = rows["obama", "clean", "identity"]
    assert float(clean["identity_dlib_port"]) == 0.0 and clean["identity_dlib_port_same"] == "true"
    protected = rows["obama", "facial:epsilon=8,preset=light,steps=2", "identity"]
    assert float(protected["identity_dlib_port"]) > 0.2  # two PGD steps already move the identity
    assert 40 < float(protected["psnr"]) < 60 and protected["status"] == "protected"
    jpeg = rows["obama", "clean", "jpeg:quality=50"]
    assert float(jpeg["strength"]) == 0.5 and jpeg["family"] == "jpeg" and float(jpeg["attack_psnr"]) < 40
    document = json.loads((folder / "results.json").read_text())
    assert [entry["method"] for entry in document["summary"]] == [parse_method(m).describe() for m in METHODS]
    assert "<table>" in (folder / "report.html").read_text() and "<svg" in (folder / "report.html").read_text()
    assert "rows failed" not in (folder / "report.html").read_text()


@needs_baselines
def test_baseline_rows_read_their_payload_back(one_process):
    folder, _ = one_process
    rows = {(r["image"], r["method"], r["attack"]): r for r in _rows(folder)}
    marked = rows["obama", "dwtDctSvd", "identity"]
    assert float(marked["bit_accuracy"]) == 1.0 and marked["detected"] == "true"
    assert math.isclose(float(marked["p_value"]), 2.0**-32, rel_tol=1e-4)
    jpeg = rows["obama", "dwtDctSvd", "jpeg:quality=50"]
    assert float(jpeg["strength"]) == 0.5 and jpeg["family"] == "jpeg" and float(jpeg["attack_psnr"]) < 40


@pytest.fixture
def one_thread():
    """Recomputed rows must match the reference rows, which were computed on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_second_run_resumes_and_recomputes_only_missing_rows(one_process, tmp_path, one_thread):
    folder, _ = one_process
    copy = tmp_path / "out"
    shutil.copytree(folder, copy)
    before = (copy / "results.csv").read_bytes()
    journal = copy / "rows" / "rows-0.jsonl"
    config = EvalConfig.from_dict({**GRID, "output": str(copy)})
    again = run(config)
    assert (again.computed, again.skipped) == (0, ROWS)
    assert len(journal.read_text().splitlines()) == ROWS  # nothing appended
    assert (copy / "results.csv").read_bytes() == before
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])  # an interrupted run: 5 rows and a cut line
    resumed = run(config)
    assert resumed.computed == ROWS - 5
    assert (copy / "results.csv").read_bytes() == before  # same seeds per row: the same numbers
    with pytest.raises(PhotoshieldError, match="other settings"):
        run(EvalConfig.from_dict({**GRID, "output": str(copy), "seed": 4}))


@pytest.mark.slow
def test_two_processes_give_the_same_report_as_one(one_process, tmp_path):
    folder, _ = one_process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "photoshield.cli"]
    done = subprocess.run(launcher + CLI_GRID + ["-o", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{ROWS} rows ({ROWS} computed, 0 already done)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "two" / "rows").glob("rows-*.jsonl")) == ["rows-0.jsonl", "rows-1.jsonl"]
    assert (tmp_path / "two" / "results.csv").read_bytes() == (folder / "results.csv").read_bytes()


def test_config_schema_and_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("inputs: faces\nmethods: [clean, {name: facial, epsilon: 4, preset: light}]\noutput: results\n")
    config = EvalConfig.from_yaml(tmp_path / "c.yaml")
    assert config.inputs == ["faces"] and Path(config.output) == tmp_path / "results"  # relative to the config file
    assert parse_method(config.methods[1]).describe() == "facial:epsilon=4,preset=light"
    assert parse_method("rivagan").kind == "baseline" and parse_method("clean").kind == "clean"
    with pytest.raises(PhotoshieldError, match="unknown key"):
        EvalConfig.from_dict({"method": ["clean"]})
    with pytest.raises(PhotoshieldError, match="unknown method"):
        parse_method("glaze")
    with pytest.raises(PhotoshieldError, match="face judge"):
        EvalConfig.from_dict({"judges": ["arcface"]})
    with pytest.raises(PhotoshieldError, match="config file not found"):
        EvalConfig.from_yaml(tmp_path / "missing.yaml")


@needs_baselines
def test_baselines_run_clean_on_images_smaller_than_their_limit(tmp_path, one_thread):
    # --max-side 256 failed half the rows ("images need at least 256 x 256 pixels"); obama2 at 320 is 320 x 167
    for side in (256, 320):
        config = {"inputs": ["obama2"], "methods": ["dwtDctSvd", "rivaGan"], "attacks": ["jpeg:quality=90"], "judges": [],
                  "max_side": side, "progress": False, "output": str(tmp_path / str(side))}
        summary = run(EvalConfig.from_dict(config))
        assert (summary.rows, summary.failed) == (4, 0), summary.failures
        rows = {(r["method"], r["attack"]): r for r in _rows(tmp_path / str(side))}
        assert {row["status"] for row in rows.values()} == {"marked"}
        assert float(rows["dwtDctSvd", "identity"]["bit_accuracy"]) >= 0.8  # 256 x 134 is half padding: fewer bits hold


def test_one_process_runs_without_accelerate_and_many_need_it(tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed: importing it raises ImportError
    config = {"inputs": ["obama"], "methods": ["clean"], "attacks": ["jpeg:quality=50"], "judges": [], "max_side": 64,
              "progress": False, "output": str(tmp_path / "one")}
    summary = run(EvalConfig.from_dict(config))
    assert (summary.rows, summary.failed) == (2, 0) and len(_rows(tmp_path / "one")) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PhotoshieldError, match="needs accelerate"):
        run(EvalConfig.from_dict({**config, "output": str(tmp_path / "two")}))


# A grid whose watermark rows fail (no such checkpoint) next to clean rows that work: cheap and without extras.
FAILING = ["--inputs", "obama", "--methods", "clean", "watermark:model=missing.safetensors", "--attacks", "jpeg:quality=50",
           "--judges", "--max-side", "64", "--quiet"]


def test_cli_counts_failed_rows_and_exits_1_unless_allowed(tmp_path, capsys):
    from photoshield.cli import main

    out = tmp_path / "out"
    assert main(["evaluate", *FAILING, "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "4 rows (4 computed, 0 already done, 2 failed)" in captured.out
    err = captured.err.strip().splitlines()
    assert err[0].startswith("photoshield: error: 2 of 4 rows failed") and "--allow-failures" in err[0]
    assert err[1].startswith("  2 x ") and "missing.safetensors" in err[1] and len(err) == 2  # one distinct reason, counted
    assert "2 of 4 rows failed" in (out / "report.html").read_text()
    assert main(["evaluate", *FAILING, "-o", str(out), "--allow-failures"]) == 0  # resumed, accepted
    captured = capsys.readouterr()
    assert "(0 computed, 4 already done, 2 failed)" in captured.out and "photoshield: warning: 2 of 4 rows failed" in captured.err


def test_a_folder_holding_another_run_is_refused_unless_overwrite(tmp_path, capsys, one_thread):
    from photoshield.cli import main

    base = {"inputs": ["obama"], "methods": ["clean"], "judges": [], "max_side": 64, "progress": False, "output": str(tmp_path / "out")}
    first = run(EvalConfig.from_dict({**base, "attacks": ["jpeg:quality=50"]}))
    assert first.computed == 2
    before = (tmp_path / "out" / "results.csv").read_bytes()
    other = EvalConfig.from_dict({**base, "attacks": ["noise:sigma=0.1"]})
    with pytest.raises(PhotoshieldError, match=r"other settings \(attacks \+noise:sigma=0.1 -jpeg:quality=50\).*--overwrite"):
        run(other)
    assert (tmp_path / "out" / "results.csv").read_bytes() == before  # nothing touched
    assert run(EvalConfig.from_dict({**base, "attacks": ["jpeg:quality=50"]})).computed == 0  # the same run resumes
    grown = run(EvalConfig.from_dict({**base, "attacks": ["jpeg:quality=50", "blur:sigma=1"]}))  # adding to it loses nothing
    assert (grown.computed, grown.skipped) == (1, 2)
    with pytest.raises(PhotoshieldError, match="attacks -blur:sigma=1"):  # leaving part of it out would
        run(EvalConfig.from_dict({**base, "attacks": ["jpeg:quality=50"]}))
    replaced = run(other, overwrite=True)
    assert (replaced.computed, replaced.skipped) == (2, 0)
    assert {r["attack"] for r in _rows(tmp_path / "out")} == {"identity", "noise:sigma=0.1"}
    journal = (tmp_path / "out" / "rows" / "rows-0.jsonl").read_text()
    assert "jpeg" not in journal  # the old run's journal went with it
    cli = ["evaluate", "--inputs", "obama", "--methods", "clean", "--judges", "--max-side", "64", "--quiet", "-o", str(tmp_path / "out")]
    assert main([*cli, "--attacks", "jpeg:quality=50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "--overwrite" in err[0]
    assert main([*cli, "--attacks", "jpeg:quality=50", "--overwrite"]) == 0


def test_a_report_without_a_run_record_is_not_overwritten(tmp_path, one_thread):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "results.csv").write_text("someone else's results\n")
    config = EvalConfig.from_dict({"inputs": ["obama"], "methods": ["clean"], "attacks": [], "judges": [], "max_side": 64,
                                   "progress": False, "output": str(folder)})
    with pytest.raises(PhotoshieldError, match="results.csv of another run"):
        run(config)
    assert (folder / "results.csv").read_text() == "someone else's results\n"
    assert run(config, overwrite=True).computed == 1


def test_binomial_p_value():
    assert binomial_p_value(32, 32) == 2.0**-32
    assert binomial_p_value(0, 32) == 1.0
    assert math.isclose(binomial_p_value(16, 32), 0.5700, abs_tol=1e-4)
    assert binomial_p_value(28, 32) < 1e-4 < binomial_p_value(24, 32)


# ----------------------------------------------------------------------------- edit damage and segmentation columns
SMALL = {"inputs": ["obama"], "max_side": 64, "judges": [], "seed": 1, "progress": False}


def _editor_folder(tmp_path, kind: str) -> Path:
    from photoshield.testing import tiny_editor

    folder = tmp_path / kind
    tiny_editor(kind, seed=0).pipe.save_pretrained(folder)
    return folder


def _by_key(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["method"].split(":")[0], r["attack"]): r for r in _rows(folder)}


def test_edit_columns_compare_each_edit_with_the_clean_photos_edit(tmp_path, one_thread):
    from photoshield.evaluate.runner import EDIT_COLUMNS, EDIT_FACE_COLUMNS

    editor = _editor_folder(tmp_path, "sd-img2img")
    # First in the grid: it loads the same (cached) editor and frees its text encoders before any row is edited.
    attention = {"name": "attention", "epsilon": 8, "steps": 2, "preset": "light", "editor": str(editor), "editor_kind": "sd-img2img",
                 "prompts": "make it dark", "timesteps": 25, "faces": False}
    grid = {**SMALL, "methods": [attention, "clean"], "attacks": ["jpeg:quality=50"], "output": str(tmp_path / "out"),
            "editing": {"editor": str(editor), "kind": "sd-img2img", "prompt": "make it night", "steps": 2, "strength": 0.6}}
    summary = run(EvalConfig.from_dict(grid))
    assert summary.computed == 4
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as source:
        header = source.readline().strip().split(",")
    assert header[-6:] == EDIT_COLUMNS + EDIT_FACE_COLUMNS
    rows = _by_key(tmp_path / "out")
    assert rows["attention", "identity"]["status"] == "protected"
    for row in rows.values():
        assert math.isfinite(float(row["edit_psnr"])) and -1 <= float(row["edit_ssim"]) <= 1 and float(row["edit_rmse255"]) >= 0
        assert row["edit_face_lost"] in ("true", "false")  # the clean photo has a face: the edit's face was looked for
        assert (row["edit_identity"] == "") == (row["edit_face_lost"] == "true")
    reference = rows["clean", "identity"]  # the clean photo edited again with the same seed: the same edit
    assert float(reference["edit_psnr"]) == 100.0 and float(reference["edit_rmse255"]) == 0.0
    for changed in (rows["clean", "jpeg:quality=50"], rows["attention", "identity"], rows["attention", "jpeg:quality=50"]):
        assert float(changed["edit_psnr"]) < 60 and float(changed["edit_rmse255"]) > 0
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["config"]["editing"]["prompt"] == "make it night"
    clean_summary = next(entry for entry in document["summary"] if entry["method"] == "clean")
    assert clean_summary["edit_psnr"] == 100.0 and clean_summary["edit_psnr_attacked"] < 60
    assert run(EvalConfig.from_dict(grid)).computed == 0  # the same editing settings resume
    other = {**grid, "editing": {**grid["editing"], "prompt": "make it day"}}
    with pytest.raises(PhotoshieldError, match="other settings.*editing"):
        run(EvalConfig.from_dict(other))


def test_edit_columns_on_flux_kontext_add_the_context_mass(tmp_path, one_thread):
    from photoshield.evaluate.runner import EDIT_FLUX_COLUMNS

    editor = _editor_folder(tmp_path, "flux-kontext")
    grid = {**SMALL, "methods": ["clean"], "attacks": ["noise:sigma=0.1"], "output": str(tmp_path / "out"),
            "editing": {"editor": str(editor), "steps": 2, "faces": False}}  # kind read from the folder
    config = EvalConfig.from_dict(grid)
    assert config.editing["kind"] == "flux-kontext"
    run(config)
    rows = _by_key(tmp_path / "out")
    assert set(EDIT_FLUX_COLUMNS) <= set(rows["clean", "identity"]) and "edit_identity" not in rows["clean", "identity"]
    assert float(rows["clean", "identity"]["edit_context_mass_ratio"]) == 1.0
    noisy = rows["clean", "noise:sigma=0.1"]
    assert 0 < float(noisy["edit_context_mass"]) < 1 and float(noisy["edit_context_mass_ratio"]) != 1.0
    assert float(noisy["edit_psnr"]) < float(rows["clean", "identity"]["edit_psnr"])


def test_editing_config_errors(tmp_path):
    with pytest.raises(PhotoshieldError, match="needs the editor"):
        EvalConfig.from_dict({"editing": True})
    with pytest.raises(PhotoshieldError, match="cannot tell the kind"):
        EvalConfig.from_dict({"editing": {"editor": str(tmp_path)}})
    with pytest.raises(PhotoshieldError, match="unknown editing key"):
        EvalConfig.from_dict({"editing": {"editor": "org/model", "kind": "sd-img2img", "step": 2}})
    with pytest.raises(PhotoshieldError, match="unknown editor kind"):
        EvalConfig.from_dict({"editing": {"editor": "org/model", "kind": "dalle"}})
    assert EvalConfig.from_dict({"editing": False}).editing_spec() is None


def test_segmentation_columns_with_a_sam_folder(tmp_path, one_thread):
    import torch
    from transformers import SamConfig, SamModel

    vision = {"hidden_size": 32, "output_channels": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 64,
              "patch_size": 8, "window_size": 4, "global_attn_indexes": [2], "mlp_dim": 64, "num_pos_feats": 16,
              "initializer_range": 0.02}  # the default init gives masks that ignore the image
    prompt = {"hidden_size": 32, "image_size": 64, "patch_size": 8, "mask_input_channels": 8}
    decoder = {"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "iou_head_hidden_dim": 32}
    torch.manual_seed(0)
    SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).save_pretrained(tmp_path / "sam")
    grid = {**SMALL, "methods": ["clean"], "attacks": ["noise:sigma=0.1"], "segmenter": str(tmp_path / "sam"), "output": str(tmp_path / "out")}
    run(EvalConfig.from_dict(grid))
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as source:
        assert source.readline().strip().split(",")[-2:] == ["seg_miou", "seg_asr50"]
    rows = _by_key(tmp_path / "out")
    for row in rows.values():
        assert 0 <= float(row["seg_miou"]) <= 1 and 0 <= float(row["seg_asr50"]) <= 1
    clean = rows["clean", "identity"]
    assert float(clean["seg_miou"]) == 1.0 and float(clean["seg_asr50"]) == 0.0  # the same photo: the same masks
    assert float(rows["clean", "noise:sigma=0.1"]["seg_miou"]) < 0.99
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert summary[0]["seg_miou"] == float(rows["clean", "noise:sigma=0.1"]["seg_miou"])


@pytest.mark.slow
def test_photoshield_watermark_rows_with_the_shipped_weights(tmp_path, one_thread):
    from photoshield.models import registry

    if registry.find("watermark-diffmark") is None:
        pytest.skip("watermark-diffmark weights not committed")
    config = {"inputs": ["chelsea"], "methods": ["clean", "watermark", "watermark:search=1"],
              "attacks": ["jpeg:quality=50", "crop:area=0.6"], "max_side": 320, "seed": 1, "progress": False,
              "judges": [], "output": str(tmp_path / "out")}
    run(EvalConfig.from_dict(config))
    rows = {(r["method"], r["attack"]): r for r in _rows(tmp_path / "out")}
    jpeg = rows[("watermark", "jpeg:quality=50")]
    assert float(jpeg["bit_accuracy"]) >= 0.95 and jpeg["detected"] == "true", jpeg
    assert float(jpeg["psnr"]) > 33
    assert rows[("watermark", "crop:area=0.6")]["detected"] == "false"
    searched = rows[("watermark:search=1", "crop:area=0.6")]
    assert searched["detected"] == "true", searched
    assert rows[("clean", "jpeg:quality=50")]["detected"] in ("", "false")
