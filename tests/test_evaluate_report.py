"""The evaluation report as people read it: a figure per quantity, real units, thresholds, no empty panels,
failures grouped; and every results.csv column the documentation names exists in a real run."""

import csv
import re
from pathlib import Path

import pytest

from photoshield.evaluate.runner import EvalConfig, run

REPO = Path(__file__).resolve().parent.parent
try:  # the invisible-watermark baselines are an optional extra
    import imwatermark  # noqa: F401

    HAVE_BASELINES = True
except ImportError:
    HAVE_BASELINES = False

# Two faces x (the clean photo, a two-step facial protection, a watermark that fails on every row: its checkpoint
# does not exist, and the dwtDctSvd baseline when installed) x (unattacked, JPEG 50 and 80, half size).
GRID = {
    "inputs": ["obama", "biden"],
    "methods": ["clean", "facial:eps=8,steps=2,preset=light", "watermark:model=missing.safetensors"]
    + (["dwtDctSvd"] if HAVE_BASELINES else []),
    "attacks": ["jpeg:quality=50", "jpeg:quality=80", "resize:scale=0.5"],
    "judges": ["dlib-port", "sface"],
    "max_side": 128,
    "seed": 2,
    "progress": False,
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("report") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run(EvalConfig.from_dict({**GRID, "output": str(folder)}))
    finally:
        torch.set_num_threads(threads)
    return folder, summary, (folder / "report.html").read_text(encoding="utf-8")


def _ids(page: str, prefix: str) -> list[str]:
    return re.findall(rf'id="{prefix}-([^"]+)"', page)


def _texts(page: str) -> set[str]:
    """Every piece of text drawn in the figures (the SVG keeps text as text)."""
    return {re.sub(r"\s+", " ", text).strip() for text in re.findall(r"<text[^>]*>([^<]*)</text>", page)}


def test_one_figure_per_quantity_with_every_judge(report):
    folder, summary, page = report
    sections = re.findall(r"<section class='figure' id='([^']+)'><h2>([^<]+)</h2>", page)
    names = [name for name, _ in sections]
    assert "identity_dlib_port" in names and "identity_sface" in names  # every judge, SFace too
    assert ("bit_accuracy" in names) == HAVE_BASELINES  # the failed watermark alone would leave it empty: dropped
    assert names[-1] == "quality_robustness"
    for name in names:
        assert Path(summary.files[f"{name}.svg"]).read_text(encoding="utf-8").startswith("<svg")
    titles = dict(sections)
    assert titles["identity_sface"] == "Identity: SFace judge" and titles["identity_dlib_port"] == "Identity: dlib-port judge"


def test_panels_have_real_units_and_threshold_lines(report):
    _, _, page = report
    texts = _texts(page)
    assert {"JPEG", "resize"} <= texts  # a panel per attack family
    assert {"JPEG quality (0-100)", "scale factor"} <= texts  # the attack's own parameter, not the strength s
    assert not any("attack strength" in text for text in texts)
    assert "distance to the original face (dlib-port)" in texts and "cosine to the original face (SFace)" in texts
    assert "same person below 0.6" in texts and "same person at or above 0.363" in texts
    panels = _ids(page, "panel")
    thresholds = set(_ids(page, "threshold"))
    identity = [panel for panel in panels if panel.startswith("identity-")]
    assert len(identity) == 2 * 2  # two judges x (jpeg, resize)
    assert set(identity) <= thresholds  # every identity panel has its same-person line


def test_no_empty_panel_and_bit_accuracy_apart_from_share_protected(report):
    _, _, page = report
    panels = _ids(page, "panel")
    data = _ids(page, "data")
    assert panels
    for panel in panels:
        assert any(line.startswith(panel + "-") for line in data), f"panel {panel} has nothing plotted"
    quality = [panel for panel in panels if panel.startswith("quality-")]
    assert "quality-protections-dlib-port-judge" in quality and "quality-protections-sface-judge" in quality
    assert ("quality-watermarks" in quality) == HAVE_BASELINES  # bit accuracy on a panel of its own
    texts = _texts(page)
    assert any(text.startswith("share protected") for text in texts) and ("mean bit accuracy under attack" in texts) == HAVE_BASELINES


def test_failures_are_grouped_with_a_count(report):
    folder, summary, page = report
    with open(folder / "results.csv", newline="", encoding="utf-8") as source:
        failed = [row for row in csv.DictReader(source) if row["status"].startswith("error")]
    assert len(failed) == summary.failed == 2 * 4  # both photos, unattacked and three attacks
    groups = re.findall(r"<li class='error-group'><strong>(\d+) x</strong> ([^<]+)<br>", page)
    assert len(groups) == 1 and int(groups[0][0]) == len(failed) and "missing.safetensors" in groups[0][1]
    assert f"{len(failed)} of {summary.rows} rows failed" in page


def _documented_columns() -> list[str]:
    """The column names in the documentation's table of results.csv columns (the README, or the page under docs/
    it links to)."""
    heading = "Columns of `results.csv`"
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    text = next(page.read_text(encoding="utf-8") for page in pages if heading in page.read_text(encoding="utf-8"))
    lines = text[text.index(heading):].splitlines()[1:]
    names: list[str] = []
    for line in lines:
        if not line.strip() and not names:
            continue
        if not line.startswith("|"):
            break
        names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def _header(folder: Path) -> list[str]:
    with open(folder / "results.csv", newline="", encoding="utf-8") as source:
        return next(csv.reader(source))


def test_every_column_the_docs_name_is_in_a_real_run(report, tmp_path):
    """Base and judge columns from the report's run; segmentation and edit columns from runs with a tiny SAM and
    tiny editors (the same code paths as the shipped ones)."""
    import torch
    from transformers import SamConfig, SamModel

    from photoshield.testing import tiny_editor

    folder, _, _ = report
    vision = {"hidden_size": 32, "output_channels": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 64,
              "patch_size": 8, "window_size": 4, "global_attn_indexes": [2], "mlp_dim": 64, "num_pos_feats": 16,
              "initializer_range": 0.02}
    prompt = {"hidden_size": 32, "image_size": 64, "patch_size": 8, "mask_input_channels": 8}
    decoder = {"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "iou_head_hidden_dim": 32}
    torch.manual_seed(0)
    SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).save_pretrained(tmp_path / "sam")
    small = {"inputs": ["obama"], "max_side": 64, "judges": [], "seed": 1, "progress": False, "methods": ["clean"],
             "attacks": ["noise:sigma=0.1"]}
    headers = set(_header(folder))
    for kind, extra in (("sd-img2img", {"segmenter": str(tmp_path / "sam")}), ("flux-kontext", {})):
        tiny_editor(kind, seed=0).pipe.save_pretrained(tmp_path / kind)
        editing = {"editor": str(tmp_path / kind), "kind": kind, "steps": 2, "faces": kind == "sd-img2img"}
        run(EvalConfig.from_dict({**small, **extra, "editing": editing, "output": str(tmp_path / f"out-{kind}")}))
        headers |= set(_header(tmp_path / f"out-{kind}"))
    judges = ["dlib_port", "sface"]
    named = [name.replace("<judge>", judge) for name in _documented_columns() for judge in (judges if "<judge>" in name else [""])]
    assert len(named) > 20
    missing = [name for name in named if name not in headers]
    assert not missing, f"the documentation names columns a real run does not write: {missing}"
