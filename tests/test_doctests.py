"""The examples in the public API's docstrings run: one test per docstring that has ``>>>`` lines.

Collected from the modules in ``MODULES`` only: each module's own docstring and every public name it
exports (``__all__``; for a module without one, the functions and classes it defines without a leading
underscore), classes with their methods. Other modules of the package are imported only as these
import them. Each example starts from an empty namespace, so it imports what it uses, as a reader would.
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

MODULES = (
    "photoshield",
    "photoshield.protect",
    "photoshield.watermark",
    "photoshield.attacks",
    "photoshield.io",
    "photoshield.metrics",
    "photoshield.image",
    "photoshield.models.registry",
)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

pytestmark = pytest.mark.usefixtures("one_thread")


def _public(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and _callable_api(value) and value.__module__ == module.__name__]


def _callable_api(value) -> bool:
    return inspect.isclass(value) or inspect.isfunction(value)


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[tuple, doctest.DocTest] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        objects = [(module_name, module)] + [(f"{module_name}.{name}", getattr(module, name)) for name in _public(module)]
        for name, value in objects:
            if not (inspect.ismodule(value) or _callable_api(value)):
                continue  # constants are documented by their #: comments
            for test in finder.find(value, name, globs={}):
                if test.examples:  # a name exported by two modules runs once, under the first
                    found.setdefault((test.filename, test.lineno, test.docstring), test)
    return sorted(found.values(), key=lambda test: test.name)


_DOCTESTS = _doctests()


@pytest.fixture(scope="module", autouse=True)
def _heavy_imports():
    """diffusers and transformers import their models lazily, seconds on first use: keep that out of the first
    example's time."""
    import diffusers
    import transformers

    for name in ("AutoencoderKL", "UNet2DConditionModel", "StableDiffusionImg2ImgPipeline"):
        getattr(diffusers, name)
    getattr(transformers, "CLIPTextModel")


@pytest.fixture(autouse=True)
def _registries():
    """Examples of ``register`` add names to the process-wide registries: take them out again afterwards."""
    from photoshield import attacks
    from photoshield.attacks import base, presets
    from photoshield.models import registry
    from photoshield.protect import api

    attacks.names()  # load every provider first, so that restoring keeps what they register
    registry.checkpoints()
    tables = (base._REGISTRY, base._ALIASES, presets._GRIDS, api._METHODS, registry._REGISTRY)
    saved = [dict(table) for table in tables]
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)


def test_every_public_name_has_an_example():
    bare = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in _public(module):
            value = getattr(module, name)
            if _callable_api(value) and ">>>" not in (inspect.getdoc(value) or ""):
                bare.append(f"{module_name}.{name}")
    assert not bare, f"public functions and classes without a runnable example: {bare}"


@pytest.mark.parametrize("test", _DOCTESTS, ids=lambda test: test.name)
def test_docstring_example(test: doctest.DocTest):
    lines: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    result = runner.run(test, out=lines.append, clear_globs=True)
    assert result.failed == 0, "".join(lines)
