"""The attack interface, the name registry and the spec parser.

An attack is configured once and called on a batch (torchattacks style)::

    jpeg = get("jpeg", quality=50)          # explicit parameter
    crop = get("crop", strength=0.4)        # one knob s in [0, 1] mapped onto a documented range
    out = jpeg(images)                      # (B, 3, H, W) float in [0, 1] -> same shape/dtype/device/range

``describe()`` gives a spec string (``"jpeg:quality=50"``) that ``parse`` turns back into
the same attack, so report rows can name attacks exactly. Later modules add attacks with
``@register("name")``; their heavy imports (models) belong inside the attack, not at
module import time.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable, ClassVar, Iterable, Sequence

import torch
from torch import nn

from ..errors import PhotoshieldError
from ..image import check_image

__all__ = [
    "Attack",
    "AttackError",
    "Compose",
    "attack_class",
    "get",
    "names",
    "parse",
    "rand",
    "randn",
    "register",
]


class AttackError(PhotoshieldError, ValueError):
    """An unknown attack name or a bad attack parameter; the message lists what is valid.

    Also a ``ValueError``.

    Examples:
        >>> from photoshield import attacks
        >>> attacks.get("jpg")
        Traceback (most recent call last):
            ...
        photoshield.attacks.base.AttackError: unknown attack 'jpg'; available: avif, bilateral, blur, ...
    """


_REGISTRY: dict[str, type["Attack"]] = {}
_ALIASES: dict[str, str] = {}
# Modules that register attacks; imported on first lookup. One that fails to import raises, on every
# lookup (no silent gaps in an evaluation).
_PROVIDERS = ("codecs", "distortions", "regeneration", "deepfake", "purify")
_loaded = False


def register(name: str, *aliases: str) -> Callable[[type["Attack"]], type["Attack"]]:
    """Class decorator: make an ``Attack`` subclass available as ``get(name)`` (and under ``aliases``).

    Args:
        name: the canonical name, used by ``describe()`` and listed by :func:`names`.
        *aliases: other names that :func:`get` and :func:`parse` accept.

    Returns:
        The decorator; it sets the class's ``name`` and returns the class.

    Raises:
        AttackError: a name is already taken by another class.

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> @attacks.register("invert", "negative")
        ... class Invert(attacks.Attack):
        ...     '''Photographic negative.'''
        ...     differentiable = True
        ...     def apply(self, images, generator):
        ...         return 1 - images
        >>> attacks.get("negative")(torch.zeros(1, 3, 2, 2)).unique()
        tensor([1.])
    """

    def decorate(cls: type[Attack]) -> type[Attack]:
        for key in (name, *aliases):
            owner = _REGISTRY.get(key) or _REGISTRY.get(_ALIASES.get(key, ""))
            if owner is not None and owner.__qualname__ != cls.__qualname__:
                raise AttackError(f"attack name {key!r} is already registered by {owner.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        for alias in aliases:
            _ALIASES[alias] = name
        return cls

    return decorate


def _load_providers() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a lookup made while a provider imports does not start over
    try:
        for module in _PROVIDERS:
            importlib.import_module(f"{__package__}.{module}")
    except BaseException:
        _loaded = False
        raise


def names() -> list[str]:
    """Sorted canonical names of every registered attack.

    Returns:
        The names (aliases left out), the built-in attacks' modules imported first.

    Examples:
        >>> from photoshield import attacks
        >>> {"jpeg", "crop", "diffpure", "faceswap"} <= set(attacks.names())
        True
    """
    _load_providers()
    return sorted(_REGISTRY)


def attack_class(name: str) -> type["Attack"]:
    """The class registered under ``name`` (or one of its aliases).

    Args:
        name: a canonical name or an alias, in any case.

    Returns:
        The registered :class:`Attack` subclass (not an instance).

    Raises:
        AttackError: no attack has that name; the message lists them.

    Examples:
        >>> from photoshield import attacks
        >>> attacks.attack_class("JXL").__name__, attacks.attack_class("jxl").strength_range
        ('JPEGXL', {'quality': (90, 10)})
    """
    key = name.strip().lower()
    if key not in _REGISTRY and key not in _ALIASES:
        _load_providers()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise AttackError(f"unknown attack {name!r}; available: {', '.join(names())}")
    return _REGISTRY[key]


def get(name: str, **params: Any) -> "Attack":
    """Build an attack by name; ``params`` are its keyword arguments (numbers or CLI strings).

    A name containing ``:`` or ``+`` is parsed as a spec (see ``parse``).

    Args:
        name: a registered name or alias, or a spec string.
        **params: the attack's parameters, ``strength`` and ``seed``; ``-`` in a key reads as ``_``.

    Returns:
        A configured :class:`Attack`.

    Raises:
        AttackError: unknown name, unknown parameter or a value out of its bounds.

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> attacks.get("jpeg", quality=50).describe(), attacks.get("crop", strength=1.0).describe()
        ('jpeg:quality=50', 'crop:area=0.5')
        >>> attacks.get("blur", sigma="2")(torch.rand(2, 3, 16, 16)).shape  # CLI strings are converted
        torch.Size([2, 3, 16, 16])
    """
    params = {key.replace("-", "_"): value for key, value in params.items()}
    if ":" in name or "+" in name:
        return parse(name, **params)
    return attack_class(name)(**params)


def parse(spec: str, **extra: Any) -> "Attack":
    """Build an attack from a spec string: ``"jpeg:quality=50"``, ``"crop:area=0.75+jpeg:quality=75"``.

    ``extra`` keyword arguments (e.g. ``strength`` or ``seed``) go to every part; parameters
    written in the spec win over ``strength``.

    Args:
        spec: ``name:key=value,...``, several joined by ``+`` (a :class:`Compose`); what
            ``Attack.describe()`` writes.
        **extra: keyword arguments for every part.

    Returns:
        The attack, or a :class:`Compose` of the parts.

    Raises:
        AttackError: an empty spec, a part without ``=``, or what :func:`get` refuses.

    Examples:
        >>> from photoshield import attacks
        >>> attack = attacks.parse("crop:area=0.75+jpeg", strength=0.5)
        >>> type(attack).__name__, attack.describe()
        ('Compose', 'crop:area=0.75+jpeg:quality=50')
        >>> attacks.parse(attack.describe()).describe() == attack.describe()  # the round trip
        True
    """
    parts = [part.strip() for part in spec.split("+") if part.strip()]
    if not parts:
        raise AttackError(f"empty attack spec {spec!r}")
    if len(parts) > 1:
        return Compose(parts, **extra)
    name, _, arguments = parts[0].partition(":")
    params: dict[str, Any] = dict(extra)
    for item in filter(None, (a.strip() for a in arguments.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise AttackError(f"bad parameter {item!r} in attack spec {spec!r}; expected key=value")
        params[key.strip().replace("-", "_")] = value.strip()
    return attack_class(name)(**params)


def _coerce(owner: str, key: str, value: Any, default: Any) -> Any:
    """Convert a CLI string or number to the type of the parameter's default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                word = value.strip().lower()
                if word in ("1", "true", "yes", "on"):
                    return True
                if word in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return int(round(number))
        if isinstance(default, float):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        return str(value)
    except (TypeError, ValueError):
        raise AttackError(
            f"{owner}: parameter {key}={value!r} is not a valid {type(default).__name__}"
        ) from None


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _generator_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return device if generator is None else generator.device


def rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers drawn from ``generator`` (its own device), moved to ``device``."""
    return torch.rand(tuple(shape), generator=generator, device=_generator_device(generator, device)).to(device)


def randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal float32 numbers drawn from ``generator`` (its own device), moved to ``device``."""
    return torch.randn(tuple(shape), generator=generator, device=_generator_device(generator, device)).to(device)


class Attack(nn.Module):
    """A configured image attack: ``attack(images, generator=None) -> images``.

    Subclasses declare class attributes and implement ``apply``:

    - ``defaults``: every parameter with its default value (its type is the parameter's type).
    - ``strength_range``: ``{param: (value at s=0, value at s=1)}``; ``strength=s`` sets those
      parameters linearly, explicit parameters override it.
    - ``bounds`` / ``choices``: valid numeric intervals / string values, checked on construction.
    - ``differentiable``: gradients flow from output to input; ``randomized``: uses the generator.

    The output keeps the input's shape, dtype and device and lies in [0, 1]. Randomised
    attacks are repeatable: pass a ``torch.Generator`` or build them with ``seed=``.

    Args:
        strength: one knob s in [0, 1] that sets the parameters of ``strength_range``; numbers or
            CLI strings. None keeps the defaults.
        seed: seeds a randomised attack's generator on every call (None: the global RNG).
        **params: the subclass's parameters (``defaults``), numbers or CLI strings converted to the
            default's type; they win over ``strength``.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: (B, 3, H, W), the same dtype and device, in [0, 1]

    Raises:
        AttackError: an unknown parameter, or a value outside ``bounds`` / ``choices``.

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> @attacks.register("posterize")
        ... class Posterize(attacks.Attack):
        ...     '''Round each channel to ``levels`` grey levels.'''
        ...     defaults = {"levels": 8}
        ...     strength_range = {"levels": (256, 2)}
        ...     bounds = {"levels": (2, 256)}
        ...     def apply(self, images, generator):
        ...         top = self.params["levels"] - 1
        ...         return (images * top).round() / top
        >>> posterize = attacks.get("posterize", strength=1.0)
        >>> posterize.describe(), posterize(torch.rand(1, 3, 8, 8)).unique().tolist()
        ('posterize:levels=2', [0.0, 1.0])
        >>> attacks.get("posterize", levels=300)
        Traceback (most recent call last):
            ...
        photoshield.attacks.base.AttackError: posterize: levels must be in [2, 256], got 300
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    strength_range: ClassVar[dict[str, tuple[float, float]]] = {}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    differentiable: ClassVar[bool] = False
    randomized: ClassVar[bool] = False

    def __init__(self, strength: float | str | None = None, seed: int | str | None = None, **params: Any):
        super().__init__()
        owner = self.name or type(self).__name__
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(["strength", "seed", *self.defaults]) if self.defaults else "strength, seed"
            raise AttackError(f"{owner}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
        values = dict(self.defaults)
        self.strength: float | None = None
        if strength is not None:
            s = _coerce(owner, "strength", strength, 0.0)
            if not 0.0 <= s <= 1.0:
                raise AttackError(f"{owner}: strength must be in [0, 1], got {s}")
            self.strength = s
            for key, (low, high) in self.strength_range.items():
                values[key] = _coerce(owner, key, low + s * (high - low), self.defaults[key])
        for key, value in params.items():
            values[key] = _coerce(owner, key, value, self.defaults[key])
        for key, (low, high) in self.bounds.items():
            if not low <= values[key] <= high:
                raise AttackError(f"{owner}: {key} must be in [{low:g}, {high:g}], got {values[key]}")
        for key, allowed in self.choices.items():
            if values[key] not in allowed:
                raise AttackError(f"{owner}: {key} must be one of {', '.join(allowed)}, got {values[key]!r}")
        self.seed: int | None = None if seed is None else _coerce(owner, "seed", seed, 0)
        self.params: dict[str, Any] = self.validate(values)

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Hook for subclasses: adjust or check the final parameters (e.g. force an odd kernel)."""
        return params

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The attack itself on a float32/float64 batch; the result is clamped to [0, 1] by the caller."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_image(images)
        if images.shape[0] == 0:
            return images.clone()
        if generator is None and self.seed is not None and self.randomized:
            generator = torch.Generator(device=images.device).manual_seed(self.seed)
        work = images if images.dtype in (torch.float32, torch.float64) else images.float()
        out = self.apply(work, generator)
        if out.shape != images.shape:
            raise RuntimeError(f"{self.describe()} changed the shape {tuple(images.shape)} -> {tuple(out.shape)}")
        return out.clamp(0.0, 1.0).to(images.dtype)

    def describe(self) -> str:
        """A spec string ``name:key=value,...`` that ``parse`` rebuilds this attack from.

        Parameters driven by the strength knob are always shown, others only when not default.
        """
        shown = [
            f"{key}={_format(value)}"
            for key, value in self.params.items()
            if key in self.strength_range or value != self.defaults.get(key)
        ]
        if self.seed is not None and self.randomized:
            shown.append(f"seed={self.seed}")
        return f"{self.name}:{','.join(shown)}" if shown else self.name

    def extra_repr(self) -> str:
        return self.describe()

    def __str__(self) -> str:
        return self.describe()


@register("combo", "compose")
class Compose(Attack):
    """Apply several attacks in order, sharing one generator (e.g. crop then JPEG).

    ``attacks`` is a list of attacks or specs, or one spec string joined by ``+``
    (``"crop:area=0.75+jpeg:quality=75"``). ``strength`` reaches every part built from a
    string (parameters written in a part's spec win). ``seed`` goes to every part that has
    none, so ``describe()`` round-trips; a generator passed at call time is shared by all parts.
    Registered as ``combo`` (alias ``compose``); differentiable when every part is.

    Args:
        attacks: the parts: attacks, specs, or one ``+``-joined spec.
        strength: given to every part built from a string.
        seed: given to every part without a seed of its own.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> combo = attacks.Compose(["crop:area=0.75", attacks.JPEG(quality=75)])
        >>> combo.describe(), combo(torch.rand(2, 3, 32, 32)).shape
        ('crop:area=0.75+jpeg:quality=75', torch.Size([2, 3, 32, 32]))
    """

    defaults = {"attacks": ""}

    def __init__(
        self,
        attacks: Sequence[Attack | str] | str = "",
        strength: float | str | None = None,
        seed: int | str | None = None,
    ):
        nn.Module.__init__(self)
        items: Iterable[Attack | str] = attacks.split("+") if isinstance(attacks, str) else attacks
        children: list[Attack] = []
        seed = None if seed is None else _coerce("combo", "seed", seed, 0)
        for item in items:
            if isinstance(item, Attack):
                children.append(item)
            elif str(item).strip():
                extra = {} if strength is None else {"strength": strength}
                children.append(parse(str(item), **extra))
        if not children:
            raise AttackError("combo: needs at least one attack, e.g. attacks='crop:area=0.75+jpeg:quality=75'")
        for child in children:
            if child.seed is None and seed is not None:
                child.seed = seed
        self.attacks = nn.ModuleList(children)
        self.strength = None if strength is None else float(strength)
        self.seed = None  # the parts hold the seeds
        self.params = {"attacks": "+".join(child.describe() for child in children)}

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return all(child.differentiable for child in self.attacks)

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return any(child.randomized for child in self.attacks)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        for child in self.attacks:
            images = child(images, generator=generator)
        return images

    def describe(self) -> str:
        return "+".join(child.describe() for child in self.attacks)
