"""Geometric and photometric distortions built on kornia / torch ops (differentiable).

Every attack keeps the image size. ``strength`` s in [0, 1] maps linearly onto the range in
each class docstring (``cls.strength_range``); s = 0 is the identity for all of them.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from ..image import resize_to
from .base import Attack, rand, randn, register

__all__ = [
    "Blur",
    "Brightness",
    "Contrast",
    "Crop",
    "HorizontalFlip",
    "Hue",
    "Identity",
    "MedianBlur",
    "Noise",
    "Perspective",
    "Resize",
    "Rotation",
    "Saturation",
    "Sharpness",
]


@register("identity", "none")
class Identity(Attack):
    """No change: the baseline row of an evaluation. Registered as ``identity`` (alias ``none``).

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.rand(1, 3, 8, 8)
        >>> torch.equal(attacks.get("none")(images), images)
        True
    """

    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return images


@register("resize", "scale")
class Resize(Attack):
    """Downscale by ``scale`` (antialiased) and upscale back to the original size.

    Registered as ``resize`` (alias ``scale``).

    Keyword Args:
        scale (float): in (0, 1] (default 0.5); ``strength`` maps it 1 -> 0.25.
        mode (str): bilinear (default), bicubic or nearest.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> resize = attacks.Resize(strength=1.0)
        >>> resize.describe(), resize(torch.rand(1, 3, 32, 48)).shape
        ('resize:scale=0.25', torch.Size([1, 3, 32, 48]))
    """

    defaults = {"scale": 0.5, "mode": "bilinear"}
    strength_range = {"scale": (1.0, 0.25)}
    bounds = {"scale": (0.01, 1.0)}
    choices = {"mode": ("bilinear", "bicubic", "nearest")}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        height, width = images.shape[-2:]
        scale, mode = self.params["scale"], self.params["mode"]
        small = (max(1, round(height * scale)), max(1, round(width * scale)))
        if small == (height, width):
            return images
        if mode == "nearest":
            down = F.interpolate(images, size=small, mode="nearest")
            return F.interpolate(down, size=(height, width), mode="nearest")
        down = F.interpolate(images, size=small, mode=mode, align_corners=False, antialias=True)
        return F.interpolate(down, size=(height, width), mode=mode, align_corners=False)


@register("crop", "resized-crop")
class Crop(Attack):
    """Keep a fraction ``area`` of the image (same aspect ratio) and resize it back to full size.

    Registered as ``crop`` (alias ``resized-crop``).

    Keyword Args:
        area (float): in (0, 1] (default 0.75); ``strength`` maps it 1 -> 0.5.
        position (str): "center" (default) or "random" (per image, from the generator).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): seeds the random position.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> crop = attacks.Crop(area=0.5, position="random", seed=0)
        >>> crop.describe(), crop(torch.rand(2, 3, 32, 32)).shape
        ('crop:area=0.5,position=random,seed=0', torch.Size([2, 3, 32, 32]))
    """

    defaults = {"area": 0.75, "position": "center"}
    strength_range = {"area": (1.0, 0.5)}
    bounds = {"area": (0.01, 1.0)}
    choices = {"position": ("center", "random")}
    differentiable = True

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.params["position"] == "random"

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        height, width = images.shape[-2:]
        side = math.sqrt(self.params["area"])
        crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
        if (crop_h, crop_w) == (height, width):
            return images
        batch = images.shape[0]
        if self.randomized:
            offsets = rand((batch, 2), generator, torch.device("cpu"))
            tops = (offsets[:, 0] * (height - crop_h + 1)).long().clamp(max=height - crop_h).tolist()
            lefts = (offsets[:, 1] * (width - crop_w + 1)).long().clamp(max=width - crop_w).tolist()
        else:
            tops, lefts = [(height - crop_h) // 2] * batch, [(width - crop_w) // 2] * batch
        crops = [
            resize_to(images[i : i + 1, :, top : top + crop_h, left : left + crop_w], (height, width))
            for i, (top, left) in enumerate(zip(tops, lefts))
        ]
        return torch.cat(crops)


@register("rotation", "rotate")
class Rotation(Attack):
    """Rotate by ``degrees`` (counter-clockwise, about the centre) keeping the size; corners turn black.

    Registered as ``rotation`` (alias ``rotate``).

    Keyword Args:
        degrees (float): in [-180, 180] (default 15); ``strength`` maps it 0 -> 45.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> turned = attacks.Rotation(degrees=90)(torch.ones(1, 3, 9, 15))
        >>> turned.shape, float(turned[0, 0, 4, 0]), float(turned[0, 0, 4, 7])  # black corners, same centre
        (torch.Size([1, 3, 9, 15]), 0.0, 1.0)
    """

    defaults = {"degrees": 15.0}
    strength_range = {"degrees": (0.0, 45.0)}
    bounds = {"degrees": (-180.0, 180.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.params["degrees"] == 0:
            return images
        angle = torch.full((images.shape[0],), self.params["degrees"], device=images.device, dtype=images.dtype)
        return kornia.geometry.transform.rotate(images, angle, mode="bilinear", padding_mode="zeros")


@register("perspective")
class Perspective(Attack):
    """Random perspective warp: each corner moves inward by up to ``distortion`` x half the side.

    Randomised per image.

    Keyword Args:
        distortion (float): in [0, 1] (default 0.2); ``strength`` maps it 0 -> 0.5.
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the warps repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> warp = attacks.Perspective(distortion=0.3, seed=0)
        >>> images = torch.rand(2, 3, 32, 32)
        >>> torch.equal(warp(images), warp(images))  # the seed repeats the warps
        True
    """

    defaults = {"distortion": 0.2}
    strength_range = {"distortion": (0.0, 0.5)}
    bounds = {"distortion": (0.0, 1.0)}
    differentiable = True
    randomized = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        distortion = self.params["distortion"]
        if distortion == 0:
            return images
        batch, _, height, width = images.shape
        corners = torch.tensor(
            [[0.0, 0.0], [width - 1.0, 0.0], [width - 1.0, height - 1.0], [0.0, height - 1.0]],
            device=images.device,
            dtype=images.dtype,
        ).expand(batch, 4, 2)
        inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], device=images.device)
        half = torch.tensor([width / 2.0, height / 2.0], device=images.device)
        shift = rand((batch, 4, 2), generator, images.device) * distortion * half * inward
        target = corners + shift.to(images.dtype)
        matrix = kornia.geometry.transform.get_perspective_transform(corners, target)
        return kornia.geometry.transform.warp_perspective(images, matrix, (height, width), padding_mode="zeros")


@register("hflip", "flip")
class HorizontalFlip(Attack):
    """Mirror left-right with probability ``p`` per image. Registered as ``hflip`` (alias ``flip``).

    Keyword Args:
        p (float): probability per image (default 1: always); ``strength`` maps it 0 -> 1.
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the draws repeatable when 0 < p < 1.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.rand(1, 3, 4, 6)
        >>> torch.equal(attacks.HorizontalFlip()(images), images.flip(-1))
        True
    """

    defaults = {"p": 1.0}
    strength_range = {"p": (0.0, 1.0)}
    bounds = {"p": (0.0, 1.0)}
    differentiable = True

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return 0.0 < self.params["p"] < 1.0

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        p = self.params["p"]
        if p >= 1.0:
            return images.flip(-1)
        if p <= 0.0:
            return images
        flip = (rand((images.shape[0],), generator, images.device) < p).view(-1, 1, 1, 1)
        return torch.where(flip, images.flip(-1), images)


@register("blur", "gaussian-blur")
class Blur(Attack):
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel 2*ceil(3 sigma)+1, reflected border).

    Registered as ``blur`` (alias ``gaussian-blur``).

    Keyword Args:
        sigma (float): >= 0 (default 1); ``strength`` maps it 0 -> 4.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.rand(1, 3, 32, 32)
        >>> blurred = attacks.Blur(sigma=2)(images)
        >>> bool(blurred.std() < images.std())
        True
    """

    defaults = {"sigma": 1.0}
    strength_range = {"sigma": (0.0, 4.0)}
    bounds = {"sigma": (0.0, 50.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigma = self.params["sigma"]
        if sigma <= 0:
            return images
        height, width = images.shape[-2:]
        # Reflect padding needs the half-kernel to fit inside the image.
        radius = min(math.ceil(3 * sigma), min(height, width) - 1)
        if radius < 1:
            return images
        size = 2 * radius + 1
        return kornia.filters.gaussian_blur2d(images, (size, size), (sigma, sigma), border_type="reflect")


@register("median-blur", "median")
class MedianBlur(Attack):
    """Median filter over a ``kernel`` x ``kernel`` window (odd; 1 is the identity).

    Registered as ``median-blur`` (alias ``median``).

    Keyword Args:
        kernel (int): 1-15 (default 3; even values round up); ``strength`` maps it 1 -> 7.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.full((1, 3, 5, 5), 0.5)
        >>> images[..., 2, 2] = 1.0  # one hot pixel
        >>> attacks.MedianBlur(kernel=4).describe(), attacks.MedianBlur()(images).max()
        ('median-blur:kernel=5', tensor(0.5000))
    """

    defaults = {"kernel": 3}
    strength_range = {"kernel": (1, 7)}
    bounds = {"kernel": (1, 15)}
    differentiable = True

    def validate(self, params: dict) -> dict:
        params["kernel"] = params["kernel"] | 1
        return params

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        kernel = self.params["kernel"]
        if kernel <= 1:
            return images
        # Own unfold + median: kornia's median_blur took seconds on images with flat regions.
        # One image at a time bounds the kernel^2 copy of the input.
        height, width = images.shape[-2:]
        pad = kernel // 2
        mode = "reflect" if pad < min(height, width) else "replicate"
        out = []
        for image in images:
            padded = F.pad(image[None], (pad, pad, pad, pad), mode=mode)
            windows = padded.unfold(2, kernel, 1).unfold(3, kernel, 1).reshape(1, -1, height, width, kernel * kernel)
            out.append(windows.median(dim=-1).values)
        return torch.cat(out)


@register("noise", "gaussian-noise")
class Noise(Attack):
    """Additive Gaussian noise with standard deviation ``sigma`` in [0, 1] pixel units.

    Randomised. Registered as ``noise`` (alias ``gaussian-noise``).

    Keyword Args:
        sigma (float): >= 0 (default 0.05); ``strength`` maps it 0 -> 0.1.
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the noise repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> noise = attacks.Noise(sigma=0.02, seed=0)
        >>> images = torch.full((1, 3, 64, 64), 0.5)
        >>> noise.describe(), round(float((noise(images) - images).std()), 2)
        ('noise:sigma=0.02,seed=0', 0.02)
    """

    defaults = {"sigma": 0.05}
    strength_range = {"sigma": (0.0, 0.1)}
    bounds = {"sigma": (0.0, 1.0)}
    differentiable = True
    randomized = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigma = self.params["sigma"]
        if sigma == 0:
            return images
        noise = randn(images.shape, generator, images.device)
        return images + sigma * noise.to(images.dtype)


@register("brightness")
class Brightness(Attack):
    """Add ``delta`` to every pixel (negative darkens).

    Keyword Args:
        delta (float): in [-1, 1] (default 0.2); ``strength`` maps it 0 -> 0.5.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> attacks.Brightness(delta=-0.25)(torch.full((1, 3, 2, 2), 0.5)).unique()
        tensor([0.2500])
    """

    defaults = {"delta": 0.2}
    strength_range = {"delta": (0.0, 0.5)}
    bounds = {"delta": (-1.0, 1.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return images + self.params["delta"]


@register("contrast")
class Contrast(Attack):
    """Scale each image's deviation from its mean grey level by ``factor`` (1 = unchanged).

    Keyword Args:
        factor (float): >= 0 (default 1.5); ``strength`` maps it 1 -> 2.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.tensor([0.4, 0.6]).view(1, 1, 1, 2).expand(1, 3, 2, 2)
        >>> attacks.Contrast(factor=2.0)(images)[0, 0, 0]
        tensor([0.3000, 0.7000])
    """

    defaults = {"factor": 1.5}
    strength_range = {"factor": (1.0, 2.0)}
    bounds = {"factor": (0.0, 10.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return kornia.enhance.adjust_contrast_with_mean_subtraction(images, self.params["factor"])


@register("saturation")
class Saturation(Attack):
    """Scale colour saturation by ``factor`` (1 = unchanged, 0 = greyscale).

    Keyword Args:
        factor (float): >= 0 (default 0.5); ``strength`` maps it 1 -> 0 (s = 1 is a black-and-white filter).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> grey = attacks.Saturation(strength=1.0)(torch.rand(1, 3, 8, 8))
        >>> bool((grey.max(1).values - grey.min(1).values).max() < 1e-5)  # R = G = B
        True
    """

    defaults = {"factor": 0.5}
    strength_range = {"factor": (1.0, 0.0)}
    bounds = {"factor": (0.0, 10.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return kornia.enhance.adjust_saturation(images, self.params["factor"])


@register("hue")
class Hue(Attack):
    """Rotate hue by ``degrees`` around the colour wheel.

    Keyword Args:
        degrees (float): in [-180, 180] (default 20); ``strength`` maps it 0 -> 90.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        >>> green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
        >>> torch.allclose(attacks.Hue(degrees=120)(red), green, atol=1e-4)  # red turns green
        True
    """

    defaults = {"degrees": 20.0}
    strength_range = {"degrees": (0.0, 90.0)}
    bounds = {"degrees": (-180.0, 180.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.params["degrees"] == 0:
            return images
        return kornia.enhance.adjust_hue(images, math.radians(self.params["degrees"]))


@register("sharpness", "sharpen")
class Sharpness(Attack):
    """PIL-style sharpening: blend with a 3x3 smoothed copy, ``factor`` 1 = unchanged, > 1 sharper.

    Needs images of at least 3x3 pixels. Registered as ``sharpness`` (alias ``sharpen``).

    Keyword Args:
        factor (float): >= 0 (default 2; below 1 softens); ``strength`` maps it 1 -> 3.
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> images = torch.rand(1, 3, 16, 16)
        >>> sharper = attacks.Sharpness(factor=3)(images)
        >>> bool(sharper.std() > images.std())
        True
    """

    defaults = {"factor": 2.0}
    strength_range = {"factor": (1.0, 3.0)}
    bounds = {"factor": (0.0, 20.0)}
    differentiable = True

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.params["factor"] == 1:
            return images
        return kornia.enhance.sharpness(images, self.params["factor"])
