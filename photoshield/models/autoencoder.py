"""Load a bare diffusers autoencoder (``AutoencoderKL`` and friends) from a local folder or a hub id.

Used by the regeneration attacks. A folder may hold the VAE itself (``config.json`` plus weights,
as ``vae.save_pretrained()`` writes) or a whole pipeline with a ``vae/`` subfolder; a hub id may
name either kind (``stabilityai/sd-vae-ft-mse``, or a pipeline repo, whose ``vae`` subfolder is used).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from photoshield.errors import ModelNotFoundError

__all__ = ["AUTOENCODER_CLASSES", "load_autoencoder", "scale_factor"]

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

    from photoshield.models.registry import default_device

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
