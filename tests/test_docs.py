"""The README stays a short user's document, its links resolve, the results pages match their JSON, and the site builds."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 300


def _render_results():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "benchmarks" / "render_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/ (at most {MAX_README_LINES})"


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
    assert targets, "the README links to no docs page"
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_results_pages_match_their_json():
    stale = _render_results().stale_pages()
    assert not stale, f"out of date (run python benchmarks/render_results.py): {stale}"


def test_results_page_renders_the_benchmark_tables(tmp_path, monkeypatch):
    render = _render_results()
    monkeypatch.setattr(render, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(render, "DOCS", tmp_path / "docs")
    (tmp_path / "results").mkdir()
    stamp = {"command": "python benchmarks/bench_models.py", "git_commit": "0123456789abcdef", "date": "2026-01-01",
             "torch": "2.13.0", "threads": 1, "device": "cpu", "machine": "x86_64"}
    table = "| model | ms |\n|---|---|\n| face-detector | 17.7 |"
    (tmp_path / "results" / "models.json").write_text(json.dumps({"stamp": stamp, "tables": table}))
    pages = render.expected_pages()
    page = pages[tmp_path / "docs" / "models.md"]
    assert page.startswith("# Model time and memory\n")
    assert "`python benchmarks/bench_models.py` at commit `0123456789`" in page and "| face-detector | 17.7 |" in page
    index = pages[tmp_path / "docs" / "index.md"]
    assert "[Model time and memory](models.md)" in index
    assert "`python benchmarks/bench_protect_engine.py`" in index  # listed as not measured yet
    assert render.stale_pages()  # nothing written yet: every page is out of date


def test_mkdocs_site_builds(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None or importlib.util.find_spec("mkdocstrings") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material / mkdocstrings not installed (pip install -e '.[docs]')")
    done = subprocess.run([mkdocs, "build", "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "watermark.html").exists()
