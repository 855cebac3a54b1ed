"""One registry for every pretrained network: names -> files -> loaded modules.

A checkpoint is resolved in this order: an explicit path, then the user cache
(``$PHOTOSHIELD_HOME/weights``, default ``~/.cache/photoshield/weights``), then the
weights bundled in ``photoshield/assets/weights``. Files are checked against their
recorded sha256 and read only with safetensors or ``torch.load(weights_only=True)``.

Model modules register their checkpoints with :func:`register` at import; the
registry imports the known provider modules lazily so that ``load(name)`` works
without the caller importing anything first.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from photoshield.errors import ChecksumError, ModelNotFoundError, PhotoshieldError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "weights"

# Modules of models/ that register checkpoints when imported (looked up lazily, in this order; then
# those of the layers above, listed in ``photoshield.CHECKPOINT_PROVIDERS``).
PROVIDER_MODULES = (
    "photoshield.models.face",
    "photoshield.models.face_detect",
    "photoshield.models.face_judge",
    "photoshield.models.arcface",
    "photoshield.models.face_description",
    "photoshield.models.sam",
    "photoshield.models.diffusion",
    "photoshield.models.editors",
    "photoshield.models.autoencoder",
)

Loader = Callable[..., Any]


@dataclass(frozen=True)
class Checkpoint:
    """A named checkpoint: where its file comes from, its license, and how to build the model."""

    name: str
    task: str
    filename: str
    loader: Loader
    source: str
    license: str
    sha256: str | None = None
    how_to_get: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)
    also_sha256: tuple[str, ...] = ()  # other files the loader reads as this model (e.g. the upstream original)


_REGISTRY: dict[str, Checkpoint] = {}
_providers_imported = False


def register(checkpoint: Checkpoint) -> Checkpoint:
    """Add a checkpoint to the registry (re-registering the same name replaces it)."""
    _REGISTRY[checkpoint.name] = checkpoint
    return checkpoint


def _import_providers() -> None:
    global _providers_imported
    if _providers_imported:
        return
    _providers_imported = True
    import photoshield  # the root package lists the providers of the layers above models/

    for module in (*PROVIDER_MODULES, *photoshield.CHECKPOINT_PROVIDERS):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def checkpoints() -> list[Checkpoint]:
    """Every registered checkpoint, sorted by name."""
    _import_providers()
    return sorted(_REGISTRY.values(), key=lambda c: c.name)


def get_checkpoint(name: str) -> Checkpoint:
    """The registry entry called ``name``; a clear error lists the known names otherwise."""
    _import_providers()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[name]


def home_dir() -> Path:
    """The user cache folder: ``$PHOTOSHIELD_HOME`` or ``~/.cache/photoshield``."""
    return Path(os.environ.get("PHOTOSHIELD_HOME") or Path.home() / ".cache" / "photoshield").expanduser()


def candidate_paths(checkpoint: Checkpoint) -> list[Path]:
    """Where a checkpoint's file is looked for, in order (user cache, then bundled)."""
    return [home_dir() / "weights" / checkpoint.filename, BUNDLED_DIR / checkpoint.filename]


def find(name: str) -> Path | None:
    """The first existing file of a checkpoint, or None."""
    checkpoint = get_checkpoint(name)
    for candidate in candidate_paths(checkpoint):
        if candidate.exists():
            return candidate
    return None


def resolve(name: str, path: str | os.PathLike | None = None) -> Path:
    """The file to load for ``name``: ``path`` if given, else the cache, else the bundled copy."""
    checkpoint = get_checkpoint(name)
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.exists():
            raise ModelNotFoundError(f"{explicit}: checkpoint file for {name!r} does not exist")
        return explicit
    found = find(name)
    if found is None:
        places = "\n  ".join(str(p) for p in candidate_paths(checkpoint))
        how = checkpoint.how_to_get or "pass path=... to load()"
        raise ModelNotFoundError(
            f"checkpoint {name!r} ({checkpoint.task}) not found. Looked in:\n  {places}\n"
            f"To get it: {how}\nSource: {checkpoint.source} (license: {checkpoint.license})"
        )
    return found


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(name: str, path: str | os.PathLike, explicit: bool = False) -> None:
    """Raise ChecksumError if a file of ``name`` does not match its recorded sha256.

    ``explicit``: the file was named by the user, so the error says how to load their own weights.
    """
    checkpoint = get_checkpoint(name)
    path = Path(path)
    if checkpoint.sha256 and path.is_file():
        actual = sha256_of(path)
        if actual != checkpoint.sha256 and actual not in checkpoint.also_sha256:
            hint = " (for weights you trained yourself, load with verify=False)" if explicit else ""
            raise ChecksumError(
                f"{path}: sha256 {actual[:12]}... does not match the registry's "
                f"{checkpoint.sha256[:12]}... for {name!r}; the file is corrupt or a different version{hint}"
            )


verify = check_sha256  # the name older callers use


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read tensors from a safetensors file, or a torch file with ``weights_only=True``; never a pickle."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except Exception as error:  # safetensors' own error types name no file
            raise PhotoshieldError(f"{path}: not a readable safetensors file ({error})") from error
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError and others for unsafe or corrupt files
        raise PhotoshieldError(f"{path}: cannot be read as a weights-only torch checkpoint ({error})") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def safetensors_metadata(path: str | os.PathLike, what: str) -> dict[str, str]:
    """The metadata of a safetensors file; a clear error naming the file when it is not one (``what``: its kind)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for non-safetensors files
        raise PhotoshieldError(f"{path}: not a safetensors {what} ({error})") from error


def default_device() -> torch.device:
    """CUDA if present, then Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load(name: str, device: str | torch.device | None = None, path: str | os.PathLike | None = None,
         verify: bool = True, **kwargs: Any) -> Any:
    """Load the model called ``name`` onto ``device`` (default: the best available), in eval mode.

    Every file, ``path`` included, is checked against the registry's sha256; ``verify=False`` skips
    the check for weights of that architecture you trained yourself. Example::

        load("face-dlib-resnet")                                   # cache or bundled copy
        load("watermark-diffmark", path="mine.safetensors", verify=False)
    """
    checkpoint = get_checkpoint(name)
    file = resolve(name, path)
    if verify:
        check_sha256(name, file, explicit=path is not None)
    device = torch.device(device) if device is not None else default_device()
    model = checkpoint.loader(file, device=device, **kwargs)
    if isinstance(model, torch.nn.Module):
        # Registry models are frozen: protections need gradients to the pixels, never to weights.
        model.eval().requires_grad_(False)
    return model
