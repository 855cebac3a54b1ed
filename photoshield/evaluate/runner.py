"""The robustness runner: inputs x methods x attacks -> one row of measurements per cell.

    from photoshield.evaluate.runner import EvalConfig, run
    config = EvalConfig.from_dict({"inputs": ["faces"], "methods": ["facial:epsilon=8,preset=light", "dwtDctSvd"],
                                   "attacks": ["quick"], "output": "out"})
    summary = run(config)          # writes out/results.csv, out/results.json, out/report.html

A method turns a clean photo into a protected or watermarked one, once per (image, method);
every attack of the grid is then applied to it and measured: quality of the method's
output against the clean photo (PSNR, SSIM), the payload read back (bit accuracy,
binomial p-value, detected at the configured false-positive rate) for watermarks, and for
protections the identity under each face judge, segmentation agreement and edit damage.

Edit damage (``editing: {editor: PATH_OR_HUB_ID, kind: sd-img2img, prompt: "...", steps: N}``):
the editor is loaded once per process; the clean photo is edited once per image (the
reference: that image's edit seed, the configured prompt and settings), and every clean or
protection row edits its attacked copy the same way and compares the two edits:
``edit_psnr`` / ``edit_ssim`` / ``edit_rmse255`` (low PSNR = the protection broke the edit),
with a face in the clean photo ``edit_identity`` / ``edit_identity_clean`` (dlib-port
cosine of the attacked copy's / the clean photo's edit to the clean face; empty when that
edit has no face) and ``edit_face_lost`` (the attacked copy's edit has no face), and for Flux
Kontext ``edit_context_mass`` / ``edit_context_mass_ratio`` (attention mass to the photo's
tokens, and its ratio to the clean photo's). Watermark rows are not edited.

Rows are keyed by (image, method, attack, strength) and journaled as they finish
(``OUT/rows/rows-RANK.jsonl``), so a second run with the same settings skips rows already done.
``OUT/rows/run.json`` records the settings and the grid (images, methods, attacks, judges): a
folder holding a different run's results (other settings or judges, or a grid that leaves out
some of its images, methods or attacks) is refused, unless ``run(config, overwrite=True)``
(``--overwrite``) clears it first; a grid that only adds to the recorded one resumes and grows
it. A row that fails records ``error: ...`` in its status and the run goes on;
``RunSummary.failed`` / ``failures`` count them (the CLI exits 1 unless ``--allow-failures``). Under
``accelerate launch`` the images are split between the processes (one device each), and
the main process merges every journal into one report, in the grid's order, so one
process and many give the same files. Every random choice draws from a seed derived from
(seed, image, method, attack), never from the process or the order rows run in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from photoshield.errors import PhotoshieldError

__all__ = [
    "BASE_COLUMNS",
    "EditingSpec",
    "EvalConfig",
    "MethodSpec",
    "RunSummary",
    "attack_strength",
    "binomial_p_value",
    "build_attacks",
    "load_inputs",
    "parse_method",
    "row_seed",
    "run",
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


def row_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run's seed and a row's identity (image, method, attack): same row, same seed."""
    text = "\x1f".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def binomial_p_value(matches: int, bits: int) -> float:
    """P(at least ``matches`` of ``bits`` random bits agree): the chance an unmarked image decodes this well."""
    from photoshield.watermark.payload import binomial_p_value as exact

    return exact(int(matches), int(bits))


# ----------------------------------------------------------------------------- config


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

    Protection epsilons are in 0-255 units (as on the command line); ``eps`` is short for ``epsilon``.
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
    from photoshield.protect.api import methods as protect_methods
    from photoshield.watermark.baselines import canonical

    if name in ("clean", "none"):
        kind, name = "clean", "clean"
    elif name in protect_methods():
        kind = "protect"
        params.setdefault("epsilon", 8)
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
    methods: list[Any] = field(default_factory=lambda: ["clean", "facial:epsilon=8"])
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
        import yaml

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
    from photoshield.models.diffusion import KINDS, pipeline_class

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
        from photoshield.models.diffusion import KINDS

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


# ----------------------------------------------------------------------------- grid


def load_inputs(items: Sequence[str], max_inputs: int | None = None, max_side: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(name, (1, 3, H, W) photo) for "faces"/"scenes"/"samples", sample names, folders and files, in order."""
    from photoshield import data
    from photoshield.image import quantize, resize_to, working_size
    from photoshield.io import list_images, read_image

    found: list[tuple[str, Callable[[], torch.Tensor]]] = []
    for item in items:
        item = str(item)
        path = Path(item)
        if item in data.KINDS or item == "samples":
            for name in data.samples(None if item == "samples" else item):
                found.append((name, lambda name=name: data.sample(name)))
        elif path.is_dir():
            files = list_images(path, recursive=True)
            if not files:
                raise PhotoshieldError(f"{path}: no images found in this folder")
            found += [(file.relative_to(path).as_posix(), lambda file=file: read_image(file)) for file in files]
        elif path.is_file():
            found.append((path.name, lambda path=path: read_image(path)))
        elif item in data.samples():
            found.append((item, lambda item=item: data.sample(item)))
        else:
            raise PhotoshieldError(f"{item}: not a file, a folder, a sample name or one of faces, scenes, samples")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PhotoshieldError(f"inputs name the same image twice: {', '.join(duplicates)}")
    found = found[:max_inputs] if max_inputs else found
    images = []
    for name, read in found:
        image = read()
        if max_side:
            size = working_size(*image.shape[-2:], max_side)
            if size != tuple(image.shape[-2:]):
                image = quantize(resize_to(image, size))
        images.append((name, image))
    return images


def build_attacks(items: Sequence[Any]) -> list[Any]:
    """Attacks from grid names ("quick"), specs ("jpeg:quality=50") and sweeps ({name: jpeg, strengths: [0.2, 1]}).

    The unattacked baseline (``identity``) comes first; duplicates are dropped.
    """
    from photoshield import attacks

    built = [attacks.get("identity")]
    for item in items:
        if isinstance(item, dict):
            params = dict(item)
            name = params.pop("name", None)
            if name is None:
                raise PhotoshieldError(f"an attack sweep needs a name, got {item!r}")
            strengths = params.pop("strengths", None)
            built += [attacks.get(name, strength=s, **params) for s in strengths] if strengths else [attacks.get(name, **params)]
        elif str(item) in attacks.grid_names():
            built += attacks.grid(str(item))
        elif str(item) not in ("none", "identity"):
            built.append(attacks.get(str(item)))
    unique: dict[str, Any] = {}
    for attack in built:
        unique.setdefault(attack.describe(), attack)
    return list(unique.values())


def attack_strength(attack: Any) -> float:
    """The attack's strength s in [0, 1]: as built, else read back from its parameters (identity is 0)."""
    if getattr(attack, "strength", None) is not None:
        return round(float(attack.strength), 4)
    children = getattr(attack, "attacks", None)
    if children is not None and not isinstance(children, str):
        values = [attack_strength(child) for child in children]
        values = [v for v in values if not math.isnan(v)]
        return round(max(values), 4) if values else float("nan")
    if attack.name == "identity":
        return 0.0
    values = []
    for key, (low, high) in type(attack).strength_range.items():
        if high != low:
            values.append(min(max((float(attack.params[key]) - low) / (high - low), 0.0), 1.0))
    return round(sum(values) / len(values), 4) if values else float("nan")


def attack_family(attack: Any) -> str:
    """The attack's name without parameters ("jpeg", "crop+jpeg"): one line per family in the plots."""
    children = getattr(attack, "attacks", None)
    if children is not None and not isinstance(children, str):
        return "+".join(attack_family(child) for child in children)
    return attack.name


# ----------------------------------------------------------------------------- measurements


class _Judges:
    """The configured face judges, each giving (score, same person?) of a photo against the clean one."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = list(names)
        self.device = device
        self._sface = self._dlib = None
        if "sface" in self.names:
            from photoshield.models import load

            self._sface = load("face-judge-sface")
        if "dlib" in self.names:
            from photoshield.models.face_judge import DlibJudge

            self._dlib = DlibJudge()

    def embed(self, judge: str, image: torch.Tensor) -> Any:
        """The judge's descriptor of the main face, or None when it finds no face."""
        from photoshield.models import face

        try:
            if judge == "dlib-port":
                with torch.no_grad():
                    return face.embed_faces(image.to(self.device))[0].cpu()
            if judge == "sface":
                return self._sface.embed(image.cpu())
            return self._dlib.embed(image.cpu())
        except PhotoshieldError:
            return None

    def score(self, judge: str, clean: Any, other: Any) -> tuple[float, bool]:
        """dlib-port/dlib: distance (same below 0.6); sface: cosine (same at or above 0.363). No face: (nan, False)."""
        import numpy as np

        if other is None:
            return float("nan"), False
        if judge == "sface":
            value = float(np.dot(clean, other))
            return value, value >= self._sface.threshold
        value = float(torch.as_tensor(clean).sub(torch.as_tensor(other)).norm()) if judge == "dlib-port" else float(np.linalg.norm(clean - other))
        return value, value < 0.6


class _Editing:
    """Edits the attacked copies with one editor and compares each edit with the clean photo's (made once per image)."""

    def __init__(self, spec: EditingSpec, device: torch.device):
        from photoshield.models.diffusion import resolve_editor

        self.spec = spec
        # Shared with the attention method's editor cache (one copy in memory). The prompt is encoded now,
        # before that method may free the text encoders of the shared editor.
        self.editor, _ = resolve_editor(spec.editor, spec.kind, device, owner="editing")
        try:
            self.editor.encode_prompt(spec.prompt)
        except PhotoshieldError:  # an earlier attention run freed the shared copy's text encoders: load our own
            from photoshield.models.diffusion import load_editor

            self.editor = load_editor(spec.editor, spec.kind, device=device)
            self.editor.encode_prompt(spec.prompt)
        self.editor.pipe.set_progress_bar_config(disable=True)
        self.probe = None
        if self.editor.is_flux:
            from photoshield.protect.attention import AttentionAttack

            self.probe = AttentionAttack(self.editor, prompts=[spec.prompt], faces=False, gradient_checkpointing=False)

    def measure(self, clean: torch.Tensor, attacked: torch.Tensor, seed: int, cache: dict[str, Any]) -> dict[str, Any]:
        """The edit columns of one row; ``cache`` (per image) keeps the clean photo's edit and context mass."""
        from photoshield.evaluate.editing import edit_disruption, edit_photo

        spec, options = self.spec, self.spec.edit_options()
        if "edit" not in cache:
            cache["edit"] = edit_photo(self.editor, clean, spec.prompt, seed=seed, **options)
            if self.probe is not None:
                cache["context_mass"] = float(self.probe.context_mass(clean).mean())
        figures = edit_disruption(self.editor, clean, attacked, spec.prompt, seed=seed, faces=spec.faces, context_mass=False,
                                  edited_clean=cache["edit"], **options)
        row = {"edit_psnr": figures["psnr_db"], "edit_ssim": figures["ssim"], "edit_rmse255": figures["rmse255"]}
        if spec.faces:
            row["edit_identity"] = figures.get("identity_cosine_protected_edit")
            row["edit_identity_clean"] = figures.get("identity_cosine_clean_edit")
            lost = figures.get("faces_lost_in_edit_protected_edit")  # None: no face in the clean photo
            row["edit_face_lost"] = None if lost is None else lost > 0
        if self.probe is not None:
            mass = float(self.probe.context_mass(attacked).mean())
            row["edit_context_mass"] = mass
            row["edit_context_mass_ratio"] = mass / max(cache["context_mass"], 1e-12)
        return row


@dataclass
class _Output:
    image: torch.Tensor
    status: str
    payload: Any = None  # the bits (baselines) or message (photoshield's watermark) embedded


class _Methods:
    """Applies the grid's methods to clean photos, building watermark models once."""

    def __init__(self, device: torch.device):
        self.device = device
        self._baselines: dict[MethodSpec, Any] = {}

    def apply(self, spec: MethodSpec, image: torch.Tensor, seed: int) -> _Output:
        options = spec.options
        if spec.kind == "clean":
            return _Output(image, "clean")
        if spec.kind == "protect":
            from photoshield.protect import protect

            epsilon = float(options.pop("epsilon")) / 255.0
            result = protect(image.to(self.device), method=spec.name, epsilon=epsilon, steps=options.pop("steps", None),
                             preset=options.pop("preset", "standard"), seed=seed % 2**31, device=self.device,
                             progress=False, **options)
            return _Output(result.image.cpu(), str(result.report.get("status", "protected")))
        generator = torch.Generator().manual_seed(seed)
        if spec.kind == "baseline":
            if spec not in self._baselines:
                from photoshield.watermark.baselines import baseline

                self._baselines[spec] = baseline(spec.name, **options)
            model = self._baselines[spec]
            payload = torch.randint(0, 2, (1, model.bits), generator=generator)
            return _Output(model.embed(image, payload).cpu(), "marked", payload)
        import photoshield.watermark as watermark

        message = int(torch.randint(0, 2**20, (1,), generator=generator))  # a per-row owner id
        marked = watermark.embed(image, message, key=options.get("key"), strength=float(options.get("strength", 1.0)),
                                 model=options.get("model"), seed=seed % 2**31,
                                 refine_steps=int(options.get("refine_steps", watermark.DEFAULT_REFINE_STEPS)))
        return _Output(marked.cpu(), "marked", message)

    def decode(self, spec: MethodSpec, image: torch.Tensor) -> torch.Tensor:
        return self._baselines[spec].decode(image).cpu()

    def verify(self, spec: MethodSpec, image: torch.Tensor, message: Any, fpr: float) -> dict[str, Any]:
        """photoshield's own watermark: its verify() gives bit accuracy, p-value and the decision."""
        import photoshield.watermark as watermark

        options = spec.options
        found = watermark.verify(image, message=message, key=options.get("key"), fpr=fpr, model=options.get("model"),
                                 search=bool(options.get("search", False)))
        return {"bit_accuracy": found.bit_accuracy, "p_value": found.p_value, "detected": bool(found.detected)}


def _clean_number(value: Any) -> Any:
    """Rows hold plain JSON numbers, rounded to 6 significant digits so reports compare across machines."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    value = float(value)
    return value if not math.isfinite(value) else float(f"{value:.6g}")


# ----------------------------------------------------------------------------- the run


@dataclass
class RunSummary:
    """What a run did: ``rows`` in the report, ``computed`` now (all processes), ``skipped`` as already done.

    ``failed``: rows of the report whose status is ``error: ...``; ``failures``: (reason, count) per
    distinct reason, most frequent first. Both are filled on the main process, with ``files``.
    """

    rows: int
    computed: int
    skipped: int
    output: str
    files: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    failures: list[tuple[str, int]] = field(default_factory=list)


def _key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (str(row["image"]), str(row["method"]), str(row["attack"]), repr(row["strength"]))


def _read_journals(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for journal in sorted(folder.glob("rows-*.jsonl")):
        for number, line in enumerate(journal.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interrupted run: that row runs again
                continue
    return rows


#: Files a run writes in OUT besides the journals; ``overwrite`` removes them with the journals.
REPORT_FILES = ("results.csv", "results.json", "report.html", "robustness_watermark.png", "robustness_protection.png",
                "quality_robustness.png")
_GRID_KEYS = ("images", "methods", "attacks", "judges")
_GROWABLE = ("images", "methods", "attacks")  # a run may add to these and resume; dropping one loses its rows


def _run_record(config: EvalConfig, inputs, methods, attack_list) -> dict[str, Any]:
    """What makes two runs the same run: the settings that change the numbers and the grid itself."""
    record = dict(config.fingerprint())
    record.update(images=[name for name, _ in inputs], methods=[spec.describe() for spec in methods],
                  attacks=[attack.describe() for attack in attack_list], judges=list(config.judges))
    return record


def _unique(values) -> list[Any]:
    return list(dict.fromkeys(values))


def _previous_record(output: Path) -> dict[str, Any] | None:
    """The record of the run that wrote ``output``, or None when it holds none."""
    meta = output / "rows" / "run.json"
    if not meta.exists():
        return None
    try:
        previous = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PhotoshieldError(f"{meta}: unreadable run record ({error}); remove it, or pass --overwrite") from None
    if "images" not in previous and (output / "results.json").exists():  # recorded before the grid was: read it back
        try:
            rows = json.loads((output / "results.json").read_text(encoding="utf-8")).get("rows", [])
        except (OSError, json.JSONDecodeError, AttributeError):
            rows = []
        if rows:
            previous.update(images=_unique(row.get("image") for row in rows), methods=_unique(row.get("method") for row in rows),
                            attacks=_unique(row.get("attack") for row in rows))
    return previous


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _change(key: str, old: Any, new: Any) -> str:
    if isinstance(old, list) and isinstance(new, list):
        added, removed = [v for v in new if v not in old], [v for v in old if v not in new]
        parts = [f"+{', '.join(map(str, added[:3]))}{' ...' if len(added) > 3 else ''}" if added else "",
                 f"-{', '.join(map(str, removed[:3]))}{' ...' if len(removed) > 3 else ''}" if removed else ""]
        detail = " ".join(part for part in parts if part) or "reordered"
        return f"{key} {detail}"
    return f"{key} {_shorten(old)} -> {_shorten(new)}"


def _conflict(output: Path, record: dict[str, Any]) -> str | None:
    """Why ``output`` cannot be resumed with ``record`` (it holds a different run), or None."""
    previous = _previous_record(output)
    if previous is None:
        leftovers = [name for name in REPORT_FILES if (output / name).exists()]
        if leftovers:
            return f"holds {', '.join(leftovers)} of another run (no run record in rows/run.json)"
        return None
    changed = []
    for key in _unique([*record, *previous]):
        old, new = previous.get(key), record.get(key)
        if key in _GRID_KEYS and key not in previous:  # a record written before the grid was recorded
            continue
        if key in _GROWABLE and isinstance(old, list) and isinstance(new, list):
            if all(item in new for item in old):  # the same grid, or a larger one: its rows stay in the report
                continue
        elif old == new:
            continue
        changed.append(_change(key, old, new))
    return f"holds results made with other settings ({'; '.join(changed)})" if changed else None


def _clear(output: Path) -> None:
    """Remove a previous run's journals, run record and report files (nothing else in the folder)."""
    for path in [*sorted((output / "rows").glob("rows-*.jsonl")), output / "rows" / "run.json", *(output / n for n in REPORT_FILES)]:
        path.unlink(missing_ok=True)


def _prepare_output(output: Path, record: dict[str, Any], state: Any, overwrite: bool) -> None:
    """Refuse a folder holding another run's results (unless ``overwrite``), then record this run in it."""
    from photoshield.evaluate.report import _atomic_write

    conflict = _conflict(output, record)  # every process reads before the main process writes
    if conflict and not overwrite:
        raise PhotoshieldError(
            f"{output}: {conflict}; choose another output folder, or pass --overwrite (overwrite=True in Python) to replace them"
        )
    state.wait_for_everyone()
    if state.is_main_process:
        if conflict:
            _clear(output)
        _atomic_write(output / "rows" / "run.json", json.dumps(record, sort_keys=True).encode("utf-8"))
    state.wait_for_everyone()


class _OneProcess:
    """The single process of a run without accelerate installed: what ``PartialState`` is for a plain ``python`` run."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    def __init__(self, cpu: bool):
        self.device = torch.device("cpu" if cpu else "cuda")

    def wait_for_everyone(self) -> None:
        pass

    @contextlib.contextmanager
    def split_between_processes(self, items: list) -> Any:
        yield items


def _process_state(cpu: bool) -> Any:
    """accelerate's ``PartialState`` (one process or many, under ``accelerate launch``); one process without accelerate."""
    try:
        from accelerate import PartialState
    except ImportError:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise PhotoshieldError(
                "multi-process evaluation needs accelerate: pip install accelerate (or 'photoshield[train]')"
            ) from None
        return _OneProcess(cpu)
    return PartialState(cpu=cpu)


def run(config: EvalConfig, state: Any = None, overwrite: bool = False) -> RunSummary:
    """Run the grid of ``config`` (resuming), then write the merged CSV, JSON and HTML report on the main process.

    ``overwrite``: replace the results of a different run in the output folder instead of refusing it.
    """
    from tqdm.auto import tqdm

    from photoshield.metrics import psnr, ssim

    cpu = config.device == "cpu" or not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = state or _process_state(cpu)  # cpu: processes launched without GPUs talk over gloo
    device = torch.device(config.device) if config.device else state.device
    output = Path(config.output)
    journal_dir = output / "rows"
    if state.is_main_process:
        journal_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()

    specs = [parse_method(item) for item in config.methods]
    methods = list({spec.describe(): spec for spec in specs}.values())
    attack_list = build_attacks(config.attacks)
    inputs = load_inputs(config.inputs, config.max_inputs, config.max_side)
    _prepare_output(output, _run_record(config, inputs, methods, attack_list), state, overwrite)
    judge_names = list(config.judges)
    editing = config.editing_spec()
    columns = BASE_COLUMNS + judge_columns(judge_names) + (SEGMENTATION_COLUMNS if config.segmenter else [])
    columns += editing.columns() if editing else []

    done = {_key(row) for row in _read_journals(journal_dir)}
    indices = list(range(len(inputs)))
    with state.split_between_processes(indices) as mine:
        mine = list(mine)
    todo = []
    for index in mine:
        name = inputs[index][0]
        for spec in methods:
            for attack in attack_list:
                if (name, spec.describe(), attack.describe(), repr(attack_strength(attack))) not in done:
                    todo.append((index, spec, attack))
    computed = len(todo)
    if todo:
        appliers = _Methods(device)
        judges = _Judges(judge_names, device) if judge_names else None
        segmenter = None
        if config.segmenter:
            from photoshield.models.sam import load_segmenter

            segmenter = load_segmenter(config.segmenter, device=device)
        editor = _Editing(editing, device) if editing else None
        journal = journal_dir / f"rows-{state.process_index}.jsonl"
        clean_cache: dict[int, dict[str, Any]] = {}
        outputs: dict[tuple[int, MethodSpec], _Output | str] = {}
        bar = tqdm(todo, desc=f"evaluate [{state.process_index}]", unit="row", disable=not config.progress or not state.is_main_process)
        with journal.open("a", encoding="utf-8") as sink:
            if journal.stat().st_size and not journal.read_bytes().endswith(b"\n"):
                sink.write("\n")  # close a line an interrupted run cut short, so the next row starts clean
            for index, spec, attack in bar:
                name, clean = inputs[index]
                method_seed = row_seed(config.seed, name, spec.describe())
                seed = row_seed(config.seed, name, spec.describe(), attack.describe())
                row: dict[str, Any] = {"image": name, "method": spec.describe(), "kind": spec.kind, "attack": attack.describe(),
                                       "family": attack_family(attack), "strength": attack_strength(attack), "seed": seed}
                if (index, spec) not in outputs:
                    try:
                        outputs[index, spec] = appliers.apply(spec, clean, method_seed)
                    except PhotoshieldError as error:  # recorded in the row's status; the run goes on
                        outputs[index, spec] = f"error: {error}"
                made = outputs[index, spec]
                if isinstance(made, str):
                    row["status"] = made
                else:
                    edit_seed = row_seed(config.seed, name, "edit") % 2**31  # one per image: every row's edit matches the reference
                    row.update(_measure(config, spec, attack, clean, made, seed, appliers, judges, segmenter, editor, edit_seed,
                                        clean_cache, index, psnr, ssim))
                sink.write(json.dumps({key: _clean_number(value) for key, value in row.items()}) + "\n")
                sink.flush()
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        totals = gather_object([computed])
    else:
        totals = [computed]
    state.wait_for_everyone()
    summary = RunSummary(rows=len(inputs) * len(methods) * len(attack_list), computed=int(sum(totals)), skipped=0, output=str(output))
    summary.skipped = summary.rows - summary.computed
    if state.is_main_process:
        rows = _merge(_read_journals(journal_dir), inputs, methods, attack_list)
        extra = sorted({key for row in rows for key in row} - set(columns))
        from photoshield.evaluate.report import write_report

        summary.files = write_report(rows, columns + extra, output, config=asdict(config))
        reasons = Counter(str(row["status"])[len("error:"):].strip() for row in rows if str(row.get("status", "")).startswith("error"))
        summary.failed = sum(reasons.values())
        summary.failures = reasons.most_common()
    state.wait_for_everyone()
    return summary


def _measure(config, spec, attack, clean, made, seed, appliers, judges, segmenter, editor, edit_seed, clean_cache, index, psnr,
             ssim) -> dict[str, Any]:
    """The measurements of one row: quality, payload, identity, segmentation, edit damage."""
    row: dict[str, Any] = {"status": made.status}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        attacked = attack(made.image, generator=generator)
    row["psnr"] = float(psnr(clean, made.image)[0])
    row["ssim"] = float(ssim(clean, made.image)[0])
    row["attack_psnr"] = float(psnr(made.image, attacked)[0])
    if made.payload is not None and spec.kind == "watermark":
        row.update(appliers.verify(spec, attacked, made.payload, config.fpr))
        return row
    if made.payload is not None:
        try:
            decoded = appliers.decode(spec, attacked)
            matches = int((decoded == made.payload).sum())
            bits = made.payload.shape[-1]
            row["bit_accuracy"] = matches / bits
            row["p_value"] = binomial_p_value(matches, bits)
            row["detected"] = row["p_value"] <= config.fpr
        except PhotoshieldError as error:
            row["status"] = f"error: {error}"
        return row
    cache = clean_cache.setdefault(index, {})
    if judges is not None:
        for judge in judges.names:
            if judge not in cache:
                cache[judge] = judges.embed(judge, clean)
            stem = "identity_" + judge.replace("-", "_")
            if cache[judge] is None:  # no face in the clean photo: nothing to judge
                row[stem] = row[stem + "_same"] = None
                continue
            row[stem], row[stem + "_same"] = judges.score(judge, cache[judge], judges.embed(judge, attacked))
    if segmenter is not None:
        from photoshield.models.sam_prompts import draw_prompts, predict_prompts, segmentation_agreement

        if "prompts" not in cache:
            cache["prompts"] = draw_prompts(segmenter, clean.to(segmenter_device(segmenter)), seed=config.seed)
            cache["reference"] = predict_prompts(segmenter, clean.to(segmenter_device(segmenter)), cache["prompts"])
        device = segmenter_device(segmenter)
        figures = segmentation_agreement(segmenter, clean.to(device), attacked.to(device), prompts=cache["prompts"], reference=cache["reference"])
        row["seg_miou"], row["seg_asr50"] = figures["miou"], figures["asr50"]
    if editor is not None:
        try:
            row.update(editor.measure(clean, attacked, edit_seed, cache))
        except PhotoshieldError as error:  # recorded in the row's status; the run goes on
            row["status"] = f"error: {error}"
    return row


def segmenter_device(segmenter: Any) -> torch.device:
    """The device a segmenter's weights are on."""
    return next(segmenter.parameters()).device


def _merge(rows: list[dict[str, Any]], inputs, methods, attack_list) -> list[dict[str, Any]]:
    """Rows of the current grid in grid order (image, method, attack), one per key, from any number of journals."""
    by_key: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        by_key.setdefault(_key(row), row)
    merged = []
    for name, _ in inputs:
        for spec in methods:
            for attack in attack_list:
                key = (name, spec.describe(), attack.describe(), repr(attack_strength(attack)))
                if key in by_key:
                    merged.append(by_key[key])
    return merged
