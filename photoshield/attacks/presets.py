"""Named lists of attacks for evaluations: ``grid("standard")``, ``grid("waves")``, ``grid("quick")``,
``grid("purify")``.

Each call builds fresh attack objects. Later modules add grids with ``register_grid``.
"""

from __future__ import annotations

from typing import Callable

from .base import Attack, AttackError, Compose, get

__all__ = ["WAVES_STRENGTHS", "grid", "grid_names", "register_grid"]

_GRIDS: dict[str, Callable[[], list[Attack]]] = {}

# The strengths a WAVES-style sweep visits (s = 0 is the unattacked baseline).
WAVES_STRENGTHS = (0.2, 0.4, 0.6, 0.8, 1.0)


def register_grid(name: str) -> Callable[[Callable[[], list[Attack]]], Callable[[], list[Attack]]]:
    """Decorator: a function returning a list of attacks becomes ``grid(name)``.

    Args:
        name: the grid's name (re-registering a name replaces it).

    Returns:
        The decorator; it returns the function unchanged.

    Examples:
        >>> from photoshield import attacks
        >>> @attacks.register_grid("codecs")
        ... def codecs():
        ...     return [attacks.get(name, quality=50) for name in ("jpeg", "webp")]
        >>> [attack.describe() for attack in attacks.grid("codecs")]
        ['jpeg:quality=50', 'webp:quality=50']
    """

    def decorate(factory: Callable[[], list[Attack]]) -> Callable[[], list[Attack]]:
        _GRIDS[name] = factory
        return factory

    return decorate


def grid_names() -> list[str]:
    """Sorted names of the registered grids.

    Returns:
        The names :func:`grid` accepts.

    Examples:
        >>> from photoshield import attacks
        >>> {"quick", "standard", "waves", "purify"} <= set(attacks.grid_names())
        True
    """
    return sorted(_GRIDS)


def grid(name: str) -> list[Attack]:
    """Fresh attacks of the named grid, in a stable order.

    Args:
        name: one of :func:`grid_names`, e.g. "quick", "standard", "waves", "purify", "deepfake".

    Returns:
        Newly built :class:`Attack` objects on every call (model attacks load their models on first use).

    Raises:
        AttackError: unknown grid.

    Examples:
        >>> from photoshield import attacks
        >>> [attack.describe() for attack in attacks.grid("quick")]
        ['jpeg:quality=75', 'resize:scale=0.5', 'crop:area=0.75', 'blur:sigma=1', 'noise:sigma=0.02,seed=0']
    """
    if name not in _GRIDS:
        raise AttackError(f"unknown attack grid {name!r}; available: {', '.join(grid_names())}")
    return _GRIDS[name]()


@register_grid("standard")
def _standard() -> list[Attack]:
    """What photos commonly go through: codecs, rescaling, crops, blur, noise, light edits."""
    return [
        get("jpeg", quality=90),
        get("jpeg", quality=75),
        get("jpeg", quality=50),
        get("jpeg", quality=30),
        get("webp", quality=75),
        get("resize", scale=0.75),
        get("resize", scale=0.5),
        get("crop", area=0.75),
        get("crop", area=0.5),
        get("blur", sigma=1.0),
        get("blur", sigma=2.0),
        get("noise", sigma=0.02, seed=0),
        get("noise", sigma=0.05, seed=0),
        get("brightness", delta=0.2),
        get("brightness", delta=-0.2),
        get("rotation", degrees=5.0),
        get("rotation", degrees=15.0),
        Compose([get("crop", area=0.75), get("jpeg", quality=75)]),
    ]


@register_grid("waves")
def _waves() -> list[Attack]:
    """A strength sweep in the style of the WAVES benchmark (An et al. 2024) over the main attacks."""
    kinds = ("jpeg", "webp", "resize", "crop", "rotation", "blur", "noise", "brightness", "contrast")
    attacks = [get(kind, strength=s, seed=0) for kind in kinds for s in WAVES_STRENGTHS]
    attacks += [Compose(["crop", "jpeg"], strength=s) for s in WAVES_STRENGTHS]
    return attacks


@register_grid("purify")
def _purify() -> list[Attack]:
    """Purifications that strip adversarial perturbations (see :mod:`.purify`): the cheap filters at three
    strengths (median at kernels 3 and 5), then IMPRESS, DiffPure and GrIDPure once each with the models
    trained here (``autoencoder-small``, ``editor-unet-small``; loaded on first use)."""
    cheap = ("noise-jpeg", "bilateral", "nlm", "tv", "noisy-upscale")
    attacks = [get(kind, strength=s, seed=0) for kind in cheap for s in (0.25, 0.5, 1.0)]
    attacks += [get("median-blur", kernel=3), get("median-blur", kernel=5)]
    attacks += [get("impress"), get("diffpure", seed=0), get("gridpure", seed=0)]
    return attacks


@register_grid("quick")
def _quick() -> list[Attack]:
    """A handful of common attacks for smoke tests and fast feedback."""
    return [
        get("jpeg", quality=75),
        get("resize", scale=0.5),
        get("crop", area=0.75),
        get("blur", sigma=1.0),
        get("noise", sigma=0.02, seed=0),
    ]
