"""What a robustness run evaluates: the config schema, method specs, editing settings and result columns.

    from photoshield.evaluate.config import EvalConfig, parse_method
    config = EvalConfig.from_dict({"inputs": ["faces"], "methods": ["clean", "facial:eps=8"], "output": "out"})
    parse_method("facial:eps=8").describe()     # 'facial:epsilon=8' (the method column of the report)
    config.columns()                            # the CSV columns of this run's rows

Parsing only: the methods, judges and editors named here are built by :mod:`.methods` and :mod:`.judges`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import PhotoshieldError
from ..models.diffusion import KINDS, pipeline_class
from ..protect.api import methods as protect_methods
from ..watermark.baselines import canonical

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_EDIT_PROMPT",
    "EDIT_COLUMNS",
    "EDIT_FACE_COLUMNS",
    "EDIT_FLUX_COLUMNS",
    "JUDGES",
    "SEGMENTATION_COLUMNS",
    "EditingSpec",
    "EvalConfig",
    "MethodSpec",
    "judge_columns",
    "parse_method",
]

#: Columns every row has, in this order; judge, segmentation and editing columns follow when configured.
BASE_COLUMNS = [
    "image", "method", "kind", "attack", "family", "strength", "seed", "status",
    "psnr", "ssim", "attack_psnr", "bit_accuracy", "p_value", "detected",
]
SEGMENTATION_COLUMNS = ["seg_miou", "seg_asr50"]
EDIT_COLUMNS = ["edit_psnr", "edit_ssim", "edit_rmse255"]
EDIT_FACE_COLUMNS = ["edit_identity", "edit_identity_clean", "edit_face_lost"]
EDIT_FLUX_COLUMNS = ["edit_context_mass", "edit_context_mass_ratio"]
DEFAULT_EDIT_PROMPT = "make the person smile"
JUDGES = ("dlib-port", "sface", "dlib")
_CONFIG_KEYS = {"inputs", "methods", "attacks", "output", "seed", "max_inputs", "max_side", "judges",
                "segmenter", "editing", "fpr", "device", "progress"}


def judge_columns(judges: Sequence[str]) -> list[str]:
    """``identity_<judge>`` (the judge's score against the clean photo) and ``identity_<judge>_same`` per judge."""
    columns = []
    for judge in judges:
        stem = "identity_" + judge.replace("-", "_")
        columns += [stem, stem + "_same"]
    return columns


def _parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    lowered = text.lower()
    return {"true": True, "false": False}.get(lowered, text)


_PARAM_ALIASES = {"eps": "epsilon"}


@dataclass(frozen=True)
class MethodSpec:
    """One method of the grid: ``kind`` "clean", "protect", "baseline" or "watermark", its name and parameters."""

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        """``name:key=value,...`` with sorted parameters: the method column of the report."""
        shown = ",".join(f"{key}={value}" for key, value in self.params)
        return f"{self.name}:{shown}" if shown else self.name

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.params)


def parse_method(spec: str | dict[str, Any]) -> MethodSpec:
    """A method from ``"facial:epsilon=8,steps=2"`` / ``"dwtDctSvd"`` / ``"clean"`` or a dict ``{name: facial, epsilon: 8}``.

    Protection epsilons are in 0-255 units (as on the command line); ``eps`` is short for ``epsilon``;
    ``psnr`` is a quality floor in dB (``facial:psnr=35``); with neither, the method's default budget.
    ``clean`` leaves the photo as it is (the reference rows); ``dwtDct``, ``dwtDctSvd`` and ``rivaGan``
    are the invisible-watermark baselines; ``watermark`` is photoshield's own watermark.
    """
    if isinstance(spec, dict):
        params = dict(spec)
        if "name" not in params:
            raise PhotoshieldError(f"a method entry needs a name, got {spec!r}")
        name = str(params.pop("name"))
        params.update(params.pop("options", None) or {})
    else:
        name, _, arguments = str(spec).strip().partition(":")
        params = {}
        for item in filter(None, (a.strip() for a in arguments.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise PhotoshieldError(f"bad parameter {item!r} in method {spec!r}; expected key=value")
            params[key.strip()] = _parse_value(value.strip())
    params = {_PARAM_ALIASES.get(k.replace("-", "_"), k.replace("-", "_")): v for k, v in params.items()}
    name = name.strip()
    if name in ("clean", "none"):
        kind, name = "clean", "clean"
    elif name in protect_methods():
        kind = "protect"  # no epsilon or psnr: the method's default budget (protect.api.DEFAULT_BUDGETS)
    elif canonical(name) is not None:
        kind, name = "baseline", canonical(name)
    elif name in ("watermark", "photoshield"):
        kind, name = "watermark", "watermark"
    else:
        raise PhotoshieldError(
            f"unknown method {name!r}; choose clean, a protection ({', '.join(protect_methods())}), "
            "a watermark baseline (dwtDct, dwtDctSvd, rivaGan) or watermark"
        )
    return MethodSpec(kind, name, tuple(sorted(params.items())))


@dataclass
class EvalConfig:
    """What to evaluate and where to write it; ``from_yaml``/``from_dict`` read the documented schema."""

    inputs: list[str] = field(default_factory=lambda: ["faces"])
    methods: list[Any] = field(default_factory=lambda: ["clean", "facial"])
    attacks: list[Any] = field(default_factory=lambda: ["quick"])
    output: str = "photoshield-eval"
    seed: int = 0
    max_inputs: int | None = None
    max_side: int | None = None
    judges: list[str] = field(default_factory=lambda: ["dlib-port", "sface"])
    segmenter: str | None = None
    editing: bool | dict[str, Any] = False  # False, or the EditingSpec fields (normalised by from_dict)
    fpr: float = 1e-6
    device: str | None = None
    progress: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "EvalConfig":
        unknown = sorted(set(values) - _CONFIG_KEYS)
        if unknown:
            raise PhotoshieldError(f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_CONFIG_KEYS))}")
        values = dict(values)
        for key in ("inputs", "methods", "attacks", "judges"):
            if key in values and not isinstance(values[key], list):
                values[key] = [values[key]]
        config = cls(**values)
        spec = EditingSpec.parse(config.editing, source)
        config.editing = asdict(spec) if spec else False
        for judge in config.judges:
            if judge not in JUDGES:
                raise PhotoshieldError(f"{source}: unknown face judge {judge!r}; choose from {', '.join(JUDGES)}")
        if not 0 < config.fpr < 1:
            raise PhotoshieldError(f"{source}: fpr must be in (0, 1), got {config.fpr}")
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "EvalConfig":
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise PhotoshieldError(f"{path}: config file not found") from None
        except yaml.YAMLError as error:
            raise PhotoshieldError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(values, dict):
            raise PhotoshieldError(f"{path}: the config must be a mapping of keys (inputs, methods, attacks, ...)")
        config = cls.from_dict(values, source=str(path))
        if not Path(config.output).is_absolute():  # relative to the config file, not the working directory
            config.output = str(path.parent / config.output)
        return config

    def editing_spec(self) -> "EditingSpec | None":
        """The editing settings, or None when edits are not measured."""
        return EditingSpec.parse(self.editing)

    def columns(self) -> list[str]:
        """The CSV columns of this run's rows: ``BASE_COLUMNS``, then judge, segmentation and edit columns as configured."""
        spec = self.editing_spec()
        return (BASE_COLUMNS + judge_columns(self.judges) + (SEGMENTATION_COLUMNS if self.segmenter else [])
                + (spec.columns() if spec else []))

    def fingerprint(self) -> dict[str, Any]:
        """Settings that change every row's numbers: results made under others cannot be resumed."""
        settings = {"seed": self.seed, "max_side": self.max_side, "fpr": self.fpr, "segmenter": self.segmenter}
        spec = self.editing_spec()
        if spec is not None:  # only when on, so folders written before editing existed still resume
            settings["editing"] = asdict(spec)
        return settings


_EDIT_KEYS = ("editor", "kind", "prompt", "steps", "strength", "guidance", "faces")


def _editor_kind_of(editor: str) -> str | None:
    """The editor kind a diffusers pipeline folder holds (its model_index.json class), or None."""
    index = Path(editor).expanduser() / "model_index.json"
    if not index.is_file():
        return None
    try:
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, json.JSONDecodeError):
        return None
    return next((kind for kind in KINDS if pipeline_class(kind).__name__ == name), None)


@dataclass(frozen=True)
class EditingSpec:
    """How every clean/protection row is edited: the editor (folder or hub id), its kind, prompt and settings.

    ``steps``, ``strength`` and ``guidance`` are the pipeline's ``num_inference_steps``,
    ``strength`` (sd-img2img, sd-inpaint) and ``guidance_scale``; None keeps its defaults.
    ``faces``: also compare each edit's face with the clean photo's (``edit_identity``).
    """

    editor: str
    kind: str
    prompt: str = DEFAULT_EDIT_PROMPT
    steps: int | None = None
    strength: float | None = None
    guidance: float | None = None
    faces: bool = True

    @classmethod
    def parse(cls, value: Any, source: str = "config") -> "EditingSpec | None":
        """None for ``false``/missing; a spec from a mapping (``kind`` read from the folder when left out)."""
        if isinstance(value, EditingSpec):
            return value
        if value is None or value is False:
            return None
        example = "editing: {editor: PATH_OR_HUB_ID, kind: " + "|".join(KINDS) + ', prompt: "...", steps: 20}'
        if not isinstance(value, dict):
            raise PhotoshieldError(f"{source}: editing needs the editor to edit with (for the CLI: in the --config file), e.g. {example}; got {value!r}")
        unknown = sorted(set(value) - set(_EDIT_KEYS))
        if unknown:
            raise PhotoshieldError(f"{source}: unknown editing key(s) {', '.join(unknown)}; valid: {', '.join(_EDIT_KEYS)}")
        if not value.get("editor"):
            raise PhotoshieldError(f"{source}: editing needs an editor (a diffusers pipeline folder or hub id), e.g. {example}")
        editor = os.fspath(value["editor"])
        kind = value.get("kind") or _editor_kind_of(editor)
        if kind is None:
            raise PhotoshieldError(f"{source}: cannot tell the kind of editor {editor!r}; add kind: one of {', '.join(KINDS)}")
        if kind not in KINDS:
            raise PhotoshieldError(f"{source}: unknown editor kind {kind!r}; choose one of {', '.join(KINDS)}")
        steps, strength, guidance = value.get("steps"), value.get("strength"), value.get("guidance")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise PhotoshieldError(f"{source}: editing steps must be a whole number >= 1, got {steps!r}")
        if strength is not None and not (isinstance(strength, (int, float)) and 0 < strength <= 1):
            raise PhotoshieldError(f"{source}: editing strength must be in (0, 1], got {strength!r}")
        if guidance is not None and not isinstance(guidance, (int, float)):
            raise PhotoshieldError(f"{source}: editing guidance must be a number, got {guidance!r}")
        prompt = value.get("prompt", DEFAULT_EDIT_PROMPT)
        if not isinstance(prompt, str) or not prompt.strip():
            raise PhotoshieldError(f"{source}: editing prompt must be a non-empty text, got {prompt!r}")
        return cls(editor, kind, prompt, steps, None if strength is None else float(strength),
                   None if guidance is None else float(guidance), bool(value.get("faces", True)))

    def columns(self) -> list[str]:
        """The edit columns rows get with these settings."""
        return EDIT_COLUMNS + (EDIT_FACE_COLUMNS if self.faces else []) + (EDIT_FLUX_COLUMNS if self.kind == "flux-kontext" else [])

    def edit_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Editor.edit`` (the settings that are not None)."""
        options = {"num_inference_steps": self.steps, "strength": self.strength, "guidance_scale": self.guidance}
        return {key: value for key, value in options.items() if value is not None}


