"""The README's Python examples run as written.

A block preceded by ``<!-- needs-weights: NAME -->`` uses a registry checkpoint that is not
shipped yet; it is skipped, with that reason in the test report, until the weights exist.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"(?:<!-- needs-weights: ([\w.-]+) -->\n)?```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize(("needs", "code"), BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(needs, code, tmp_path, monkeypatch):
    if needs:
        from photoshield.models import registry

        if registry.find(needs) is None:
            pytest.skip(f"README block needs the {needs} checkpoint, which is not shipped yet")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
