"""Every pretrained network is loaded here, through :mod:`photoshield.models.registry`."""

from .registry import Checkpoint, checkpoints, default_device, find, load, load_state_dict, register

__all__ = ["Checkpoint", "checkpoints", "default_device", "find", "load", "load_state_dict", "register"]
