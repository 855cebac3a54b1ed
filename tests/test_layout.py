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
