"""Griffe extension for the API reference: the project's ``Example:`` docstring sections read as ``Examples:``.

Google-style parsing knows ``Examples:`` (doctest lines rendered as code) but takes a singular
``Example:`` for a plain admonition, whose ``>>> x[:3]`` lines Markdown then reads as links.
Loaded by mkdocs.yml (mkdocstrings ``extensions``); the library itself never imports it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename every ``Example:`` section title to ``Examples:`` as each object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
