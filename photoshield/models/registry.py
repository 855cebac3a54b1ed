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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ChecksumError, ModelNotFoundError, PhotoshieldError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "weights"

# Modules of models/ that register checkpoints when imported (looked up lazily, in this order; then
# those of the layers above, listed in ``photoshield.CHECKPOINT_PROVIDERS``).
PROVIDER_MODULES = (
    "photoshield.models.face.dlib_port",
    "photoshield.models.face.detect",
    "photoshield.models.face.judge",
    "photoshield.models.face.arcface",
    "photoshield.models.face.description",
    "photoshield.models.sam.segmenter",
    "photoshield.models.sam.distilled",
    "photoshield.models.diffusion.small_editors",
    "photoshield.models.autoencoder",
)

Loader = Callable[..., Any]


@dataclass(frozen=True)
class Checkpoint:
    """A named checkpoint: where its file comes from, its license, and how to build the model.

    Args:
        name: the registry name (``load(name)``).
        task: what the model does, in words.
        filename: the file's name in the user cache and the bundled weights folder.
        loader: ``loader(path, device=..., **kwargs) -> model`` builds the model from the file.
        source: where the file comes from (package and path, or the training script).
        license: the file's license.
        sha256: the file's hex sha256, checked on every load (None: not checked).
        how_to_get: what to do when the file is missing (shown in the error).
        description: a longer note for listings.
        extra: free-form details for the model's own code.
        also_sha256: other files the loader reads as this model (e.g. the upstream original).

    Examples:
        >>> from photoshield.models import registry
        >>> entry = registry.get_checkpoint("face-embedder")
        >>> entry.task, entry.license, entry.filename
        ('face identity embedding (128-d)', 'MIT', 'face_recognition_dlib.safetensors')
    """

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
    """Add a checkpoint to the registry (re-registering the same name replaces it).

    Model modules call it at import; the registry imports them on its first lookup.

    Args:
        checkpoint: the entry to add.

    Returns:
        ``checkpoint`` itself.

    Examples:
        >>> import shutil, tempfile, torch
        >>> from pathlib import Path
        >>> from safetensors.torch import save_file
        >>> from photoshield.models import registry
        >>> def build(path, device):
        ...     layer = torch.nn.Linear(2, 2)
        ...     layer.load_state_dict(registry.load_state_dict(path))
        ...     return layer.to(device)
        >>> _ = registry.register(registry.Checkpoint(
        ...     name="my-linear", task="an example layer", filename="my_linear.safetensors", loader=build,
        ...     source="trained here", license="MIT"))
        >>> folder = Path(tempfile.mkdtemp())
        >>> save_file(torch.nn.Linear(2, 2).state_dict(), folder / "my_linear.safetensors")
        >>> layer = registry.load("my-linear", path=folder / "my_linear.safetensors", device="cpu")
        >>> layer.training, layer.weight.requires_grad  # registry models come frozen, in eval mode
        (False, False)
        >>> shutil.rmtree(folder)
    """
    _REGISTRY[checkpoint.name] = checkpoint
    return checkpoint


def _import_providers() -> None:
    global _providers_imported
    if _providers_imported:
        return
    _providers_imported = True  # set first: a lookup made while a provider imports does not start over
    from .. import CHECKPOINT_PROVIDERS  # the root package lists the providers of the layers above models/

    try:
        for module in (*PROVIDER_MODULES, *CHECKPOINT_PROVIDERS):
            importlib.import_module(module)
    except BaseException:
        _providers_imported = False  # a provider that fails to import fails every lookup, never a partial registry
        raise


def checkpoints() -> list[Checkpoint]:
    """Every registered checkpoint, sorted by name.

    Returns:
        All the :class:`Checkpoint` entries, the shipped ones included (their modules are imported first).

    Examples:
        >>> from photoshield.models import registry
        >>> names = [entry.name for entry in registry.checkpoints()]
        >>> "watermark-diffmark" in names and "sam-litemedsam" in names
        True
    """
    _import_providers()
    return sorted(_REGISTRY.values(), key=lambda c: c.name)


def get_checkpoint(name: str) -> Checkpoint:
    """The registry entry called ``name``; a clear error lists the known names otherwise.

    Args:
        name: a registry name, e.g. ``"face-embedder"``.

    Returns:
        The registry entry, a :class:`Checkpoint`.

    Raises:
        ModelNotFoundError: no checkpoint has that name.

    Examples:
        >>> from photoshield.models import registry
        >>> registry.get_checkpoint("sam-litemedsam").license
        'Apache-2.0'
    """
    _import_providers()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[name]


def home_dir() -> Path:
    """The user cache folder: ``$PHOTOSHIELD_HOME`` or ``~/.cache/photoshield``.

    Returns:
        The folder (it may not exist); checkpoints are looked for in its ``weights`` subfolder.

    Examples:
        >>> from photoshield.models import registry
        >>> entry = registry.get_checkpoint("face-embedder")
        >>> registry.candidate_paths(entry)[0] == registry.home_dir() / "weights" / entry.filename
        True
    """
    return Path(os.environ.get("PHOTOSHIELD_HOME") or Path.home() / ".cache" / "photoshield").expanduser()


def candidate_paths(checkpoint: Checkpoint) -> list[Path]:
    """Where a checkpoint's file is looked for, in order (user cache, then bundled).

    Args:
        checkpoint: the registry entry.

    Returns:
        ``[home_dir() / "weights" / filename, BUNDLED_DIR / filename]``.

    Examples:
        >>> from photoshield.models import registry
        >>> paths = registry.candidate_paths(registry.get_checkpoint("face-embedder"))
        >>> [path.parent.name for path in paths]
        ['weights', 'weights']
    """
    return [home_dir() / "weights" / checkpoint.filename, BUNDLED_DIR / checkpoint.filename]


def find(name: str) -> Path | None:
    """The first existing file of a checkpoint, or None.

    Args:
        name: a registry name.

    Returns:
        The first of :func:`candidate_paths` that exists, or None (no error: see :func:`resolve`).

    Examples:
        >>> from photoshield.models import registry
        >>> registry.find("face-embedder").name
        'face_recognition_dlib.safetensors'
    """
    checkpoint = get_checkpoint(name)
    for candidate in candidate_paths(checkpoint):
        if candidate.exists():
            return candidate
    return None


def resolve(name: str, path: str | os.PathLike | None = None) -> Path:
    """The file to load for ``name``: ``path`` if given, else the cache, else the bundled copy.

    Args:
        name: a registry name.
        path: an explicit file, which must exist.

    Returns:
        The path of the file to load (not yet checked against its sha256).

    Raises:
        ModelNotFoundError: the name is unknown, ``path`` does not exist, or no copy is found; the
            message lists the places looked in and how to get the file.

    Examples:
        >>> from photoshield.models import registry
        >>> registry.resolve("sam-litemedsam").name
        'litemedsam.safetensors'
    """
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
    """Hex sha256 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        The 64-character lower-case hex digest.

    Examples:
        >>> import os, tempfile
        >>> from photoshield.models import registry
        >>> handle, name = tempfile.mkstemp()
        >>> os.write(handle, b"abc"), os.close(handle)
        (3, None)
        >>> registry.sha256_of(name)
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
        >>> os.remove(name)
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(name: str, path: str | os.PathLike, explicit: bool = False) -> None:
    """Raise ChecksumError if a file of ``name`` does not match its recorded sha256.

    Also available as ``verify``. Nothing is checked for an entry without a sha256 or a missing file.

    Args:
        name: a registry name.
        path: the file meant as that checkpoint.
        explicit: the file was named by the user, so the error says how to load their own weights.

    Raises:
        ChecksumError: the file's sha256 is neither the recorded one nor one of ``also_sha256``.

    Examples:
        >>> import os, tempfile
        >>> from photoshield.models import registry
        >>> registry.check_sha256("face-embedder", registry.find("face-embedder"))  # the shipped file: passes
        >>> handle, name = tempfile.mkstemp()
        >>> os.write(handle, b"not the weights"), os.close(handle)
        (15, None)
        >>> registry.check_sha256("face-embedder", name)
        Traceback (most recent call last):
            ...
        photoshield.errors.ChecksumError: ...: sha256 ... does not match the registry's ... for 'face-embedder'; ...
        >>> os.remove(name)
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
    """Read tensors from a safetensors file, or a torch file with ``weights_only=True``; never a pickle.

    A torch file holding ``{"state_dict": ...}`` or ``{"model": ...}`` gives that inner dict.

    Args:
        path: a ``.safetensors`` file, or any other suffix for a torch file.
        device: where the tensors are put.

    Returns:
        Parameter names to tensors.

    Raises:
        PhotoshieldError: the file cannot be read that way (the message names it).

    Examples:
        >>> import shutil, tempfile, torch
        >>> from pathlib import Path
        >>> from photoshield.models import registry
        >>> folder = Path(tempfile.mkdtemp())
        >>> torch.save({"state_dict": {"weight": torch.ones(2)}}, folder / "old.pt")
        >>> registry.load_state_dict(folder / "old.pt")
        {'weight': tensor([1., 1.])}
        >>> shutil.rmtree(folder)
    """
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
    """The metadata of a safetensors file; a clear error naming the file when it is not one (``what``: its kind).

    Args:
        path: the file.
        what: what the file should be, for the error message ("watermark checkpoint").

    Returns:
        The string-to-string header metadata ({} when there is none).

    Raises:
        PhotoshieldError: not a safetensors file.

    Examples:
        >>> from photoshield.models import registry
        >>> registry.safetensors_metadata(registry.find("autoencoder-small"), "autoencoder")["class"]
        'AutoencoderKL'
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for non-safetensors files
        raise PhotoshieldError(f"{path}: not a safetensors {what} ({error})") from error


def default_device() -> torch.device:
    """CUDA if present, then Apple MPS, else CPU.

    Returns:
        The device models load onto when none is given.

    Examples:
        >>> from photoshield.models import registry
        >>> registry.default_device().type in ("cuda", "mps", "cpu")
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load(name: str, device: str | torch.device | None = None, path: str | os.PathLike | None = None,
         verify: bool = True, **kwargs: Any) -> Any:
    """Load the model called ``name`` onto ``device`` (default: the best available), in eval mode.

    Every file, ``path`` included, is checked against the registry's sha256; ``verify=False`` skips
    the check for weights of that architecture you trained yourself
    (``load("watermark-diffmark", path="mine.safetensors", verify=False)``).

    Args:
        name: a registry name (:func:`checkpoints` lists them).
        device: where to put the model; None for :func:`default_device`.
        path: a file to load instead of the cached or bundled copy.
        verify: check the file's sha256.
        **kwargs: passed to the checkpoint's loader.

    Returns:
        The model; a ``torch.nn.Module`` comes in eval mode with ``requires_grad`` off.

    Raises:
        ModelNotFoundError: unknown name or no file.
        ChecksumError: the file is not the registered one.

    Examples:
        >>> from photoshield.models import registry
        >>> embedder = registry.load("face-embedder", device="cpu")  # the cached or bundled copy
        >>> type(embedder).__name__, embedder.training
        ('FaceEmbedder', False)
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
