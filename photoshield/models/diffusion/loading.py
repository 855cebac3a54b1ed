"""Turn what a user passes as ``editor=`` (a folder, a hub id, a registry name, a pipeline) into an :class:`.Editor`.

:func:`load_editor` loads a diffusers pipeline of a known kind with ``from_pretrained``;
:func:`resolve_editor` and :func:`as_editor` are the one place protect/, attacks/ and evaluate/
accept an editor, loading each path once per process::

    editor, loaded_here = resolve_editor("path/to/sd-pipeline", "sd-img2img", device="cuda")
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from ...errors import ModelNotFoundError, PhotoshieldError
from .editor import KINDS, PIPELINES, Editor, pipeline_class

__all__ = ["as_editor", "bf16_supported", "editor_kind_of", "load_editor", "resolve_editor"]

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _missing_message(path_or_id: str, kind: str, cause: str = "") -> str:
    return (
        f"cannot load a {kind} pipeline from {path_or_id!r}{': ' + cause if cause else ''}\n"
        f"Point load_editor() at a local folder holding a diffusers pipeline of class {PIPELINES[kind]} "
        "(model_index.json plus one folder per component, as written by pipe.save_pretrained()), "
        "or pass a Hugging Face hub id (e.g. 'org/model') on a machine with network access "
        "or with that model already in the hub cache."
    )


def load_editor(
    path_or_id: str | os.PathLike,
    kind: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> "Editor":
    """Load a pipeline of ``kind`` with diffusers ``from_pretrained`` (local folder or hub id) as an Editor.

    Extra keyword arguments go to ``from_pretrained`` (e.g. ``safety_checker=None``, ``variant="fp16"``).
    """
    from huggingface_hub.errors import HFValidationError

    from ..registry import default_device

    cls = pipeline_class(kind)
    name = os.fspath(path_or_id)
    local = Path(name).expanduser()
    if not local.exists() and not _HUB_ID.fullmatch(name):
        raise ModelNotFoundError(_missing_message(name, kind, "no such folder"))
    source = str(local) if local.exists() else name
    if dtype is not None:
        from diffusers.utils import deprecation_utils

        # diffusers 0.42 renamed torch_dtype to dtype (the old name still works, with a warning)
        kwargs["dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"] = dtype
    try:
        pipe = cls.from_pretrained(source, **kwargs)
    except (OSError, HFValidationError) as error:
        raise ModelNotFoundError(_missing_message(name, kind, str(error).splitlines()[0])) from error
    return Editor.from_pipeline(pipe, kind, device=device if device is not None else default_device())


def editor_kind_of(path: str | os.PathLike) -> str | None:
    """The editor kind a saved pipeline folder holds, read from its ``model_index.json`` (None if unknown)."""
    index = Path(path).expanduser() / "model_index.json"
    if not index.is_file():
        return None
    name = json.loads(index.read_text()).get("_class_name", "")
    return next((kind for kind, cls in PIPELINES.items() if cls == name), None)


@functools.lru_cache(maxsize=4)
def _load_cached(source: str, kind: str, device: str | None, dtype: torch.dtype | None) -> "Editor":
    return load_editor(source, kind, device=device, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _load_registered(name: str, device: str | None) -> "Editor":
    from ..registry import load

    return load(name, device=device)


def as_editor(
    model: Any,
    kinds: Sequence[str] = KINDS,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    owner: str = "editor",
    error: type[Exception] = PhotoshieldError,
) -> "Editor":
    """An :class:`Editor` of one of ``kinds`` from an Editor, a pipeline object, a folder / hub id, or a registry name.

    The one place protect/, attacks/ and evaluate/ turn a user's ``editor=``/``model=`` into an
    Editor: a path or a registered small editor (``editor-kontext-small``, ``editor-unet-small``) is loaded
    once per process (cached), a path's kind read from ``model_index.json``
    or taken as the first of ``kinds``; argument errors are raised as ``error`` prefixed by ``owner``.
    """
    kinds = tuple(kinds)
    if isinstance(model, Editor):
        if model.kind not in kinds:
            raise error(f"{owner}: needs a {' or '.join(kinds)} editor, got a {model.kind} editor")
        return model
    if isinstance(model, str) and _registered_editor(model):
        device_key = str(torch.empty(0, device=device).device) if device is not None else None
        editor = _load_registered(model, device_key)
        if editor.kind not in kinds:
            raise error(f"{owner}: needs a {' or '.join(kinds)} editor, {model} is a {editor.kind} editor")
        return editor
    if isinstance(model, (str, os.PathLike)):
        kind = editor_kind_of(model) if len(kinds) > 1 else kinds[0]
        if kind is None:
            raise error(
                f"{owner}: cannot tell the editor kind of {os.fspath(model)} (no model_index.json naming a known "
                f"pipeline); pass the kind, one of {', '.join(kinds)} (CLI: --editor-kind KIND)"
            )
        if kind not in kinds:
            raise error(f"{owner}: needs a {' or '.join(kinds)} editor, {os.fspath(model)} holds a {kind} pipeline")
        # "cuda" and "cuda:0" are one device: normalise so every caller shares one cached copy
        device_key = str(torch.empty(0, device=device).device) if device is not None else None
        return _load_cached(os.fspath(model), kind, device_key, dtype)
    for kind in kinds:
        if isinstance(model, pipeline_class(kind)):
            return Editor.from_pipeline(model, kind, device=device)
    names = ", ".join(pipeline_class(kind).__name__ for kind in kinds)
    raise error(f"{owner}: needs a {names}, a photoshield Editor or a path, got {type(model).__name__}")


def bf16_supported(device: torch.device | str) -> bool:
    """True on a CUDA device that computes in bfloat16 (where loaded editors run in bf16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def resolve_editor(
    editor: Any, editor_kind: str | None = None, device: torch.device | str | None = None, owner: str = "editor"
) -> tuple["Editor", bool]:
    """An :class:`Editor` from an Editor, a diffusers pipeline, a folder, a hub id or a registry name; True when loaded here.

    A path or hub id is loaded once per process (shared by every caller that asks for the same
    editor, kind and device: protect/'s attention method and evaluate/'s editing measure hold one
    copy), on the default device unless ``device`` is given, in bfloat16 where the device supports it.
    """
    if editor is None:
        raise PhotoshieldError(
            f"{owner}: needs a diffusion editor: a diffusers pipeline folder (save_pretrained()), a hub id, "
            "a registered small editor (editor-kontext-small, editor-unet-small), or a loaded pipeline / Editor"
        )
    if editor_kind is not None and editor_kind not in KINDS:
        raise PhotoshieldError(f"unknown editor kind {editor_kind!r}; choose one of {', '.join(KINDS)}")
    kinds = (editor_kind,) if editor_kind else KINDS
    owned = isinstance(editor, (str, os.PathLike))
    if owned and device is None:
        from ..registry import default_device

        device = default_device()
    dtype = torch.bfloat16 if owned and bf16_supported(device) else None
    return as_editor(editor, kinds, device=device if owned else None, dtype=dtype, owner=owner), owned


def _registered_editor(name: str) -> bool:
    """True when ``name`` is a registry checkpoint whose loader builds an Editor (the small editors)."""
    from ..registry import checkpoints

    return any(checkpoint.name == name and "editor_kind" in checkpoint.extra for checkpoint in checkpoints())
