"""The library's shape: it imports without the training extra, never imports training/, and finds every checkpoint."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
sys.modules["accelerate"] = None  # as if the train extra were not installed
import photoshield
for info in pkgutil.walk_packages(photoshield.__path__, "photoshield."):
    importlib.import_module(info.name)
assert not [name for name in sys.modules if name == "training" or name.startswith("training.")]
print("ok")
"""

FRESH_REGISTRY = """
import sys
from photoshield.models import registry
assert "photoshield.watermark" not in sys.modules
print(registry.get_checkpoint("watermark-diffmark").name)
"""


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_every_library_module_imports_without_accelerate_or_training():
    assert _python(IMPORT_EVERYTHING) == "ok"


def test_the_registry_finds_the_watermark_checkpoint_without_importing_watermark_first():
    assert _python(FRESH_REGISTRY) == "watermark-diffmark"


def _absolute_imports_of_the_package(path: Path) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "photoshield":
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "photoshield" for alias in node.names):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: import {node.names[0].name}")
    return found


def test_modules_of_the_library_import_each_other_relatively():
    found = [line for path in sorted((REPO / "photoshield").rglob("*.py")) for line in _absolute_imports_of_the_package(path)]
    assert not found, "use relative imports inside photoshield/:\n" + "\n".join(found)
