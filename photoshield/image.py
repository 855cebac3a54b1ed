"""Tensor conventions: images are float32 RGB tensors of shape (B, 3, H, W) in [0, 1].

Everything inside the library works on that form; these helpers convert at the edges.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[torch.Tensor, Image.Image, np.ndarray]


def to_tensor(image: ImageLike) -> torch.Tensor:
    """Convert a PIL image, HWC/CHW/BCHW numpy array or tensor to a (B, 3, H, W) float32 tensor in [0, 1].

    uint8 values are divided by 255, uint16 by 65535 (integer tensors: by 255, int32 by 65535); floats
    are kept and clamped to [0, 1]. One channel is repeated to three; a fourth (alpha) is dropped.

    Args:
        image: a PIL image (any mode, converted to RGB), a numpy array or a tensor.

    Shapes:
        - image: (H, W), (H, W, C) or (C, H, W) arrays; (H, W), (C, H, W) or (B, C, H, W) tensors; C in 1, 3, 4
        - output: (B, 3, H, W) float32 in [0, 1], B = 1 unless a batch was given

    Returns:
        A new contiguous float32 tensor.

    Examples:
        >>> import numpy as np
        >>> from PIL import Image
        >>> from photoshield.image import to_tensor
        >>> red = to_tensor(Image.new("RGB", (4, 2), (255, 0, 0)))
        >>> red.shape, red[0, :, 0, 0]
        (torch.Size([1, 3, 2, 4]), tensor([1., 0., 0.]))
        >>> to_tensor(np.zeros((2, 4), dtype=np.uint16)).shape  # greyscale to RGB
        torch.Size([1, 3, 2, 4])
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            array = image.astype(np.float32) / 255.0
        elif image.dtype == np.uint16:
            array = image.astype(np.float32) / 65535.0
        elif image.dtype == np.bool_:
            array = image.astype(np.float32)
        else:
            array = image.astype(np.float32)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3):
            array = array.transpose(2, 0, 1)
        image = torch.from_numpy(np.ascontiguousarray(array))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a tensor, PIL image or numpy array, got {type(image).__name__}")
    tensor = image
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"expected an image of 2, 3 or 4 dimensions, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.float() / (65535.0 if tensor.dtype == torch.int32 else 255.0)
    channels = tensor.shape[1]
    if channels == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    elif channels == 4:
        tensor = tensor[:, :3]
    elif channels != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    return tensor.float().clamp(0.0, 1.0).contiguous()


def to_numpy_uint8(image: torch.Tensor) -> np.ndarray:
    """Convert one (1, 3, H, W) or (3, H, W) tensor in [0, 1] to an HWC uint8 array (rounded).

    Args:
        image: one image; values outside [0, 1] are clamped.

    Shapes:
        - image: (1, 3, H, W) or (3, H, W)
        - output: (H, W, 3) uint8

    Returns:
        The image as a numpy array on the CPU, ``round(value * 255)`` per channel.

    Examples:
        >>> import torch
        >>> from photoshield.image import to_numpy_uint8
        >>> array = to_numpy_uint8(torch.full((1, 3, 2, 4), 0.5))
        >>> array.shape, array.dtype, array[0, 0]
        ((2, 4, 3), dtype('uint8'), array([128, 128, 128], dtype=uint8))
    """
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {image.shape[0]}")
        image = image[0]
    array = image.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """Convert one image tensor in [0, 1] to an RGB PIL image.

    Args:
        image: one image, rounded to 8 bits (see :func:`to_numpy_uint8`).

    Shapes:
        - image: (1, 3, H, W) or (3, H, W) in [0, 1]

    Returns:
        An RGB ``PIL.Image.Image`` of width W and height H.

    Examples:
        >>> import torch
        >>> from photoshield.image import to_pil
        >>> to_pil(torch.zeros(1, 3, 2, 4)).size  # (width, height)
        (4, 2)
    """
    return Image.fromarray(to_numpy_uint8(image), mode="RGB")


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid that a saved image will have (keeps dtype and range).

    Args:
        image: values in [0, 1] (clamped first).

    Shapes:
        - image: any shape, e.g. (B, 3, H, W)
        - output: the same shape and dtype

    Returns:
        ``round(image * 255) / 255``.

    Examples:
        >>> import torch
        >>> from photoshield.image import quantize
        >>> quantize(torch.tensor([0.1, 0.5001, 1.2])) * 255
        tensor([ 26., 128., 255.])
    """
    return image.clamp(0, 1).mul(255.0).round().div(255.0)


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Raise a clear ValueError unless ``image`` follows the (B, 3, H, W) float [0, 1] convention.

    Args:
        image: the tensor to check (the range is not checked: that would cost a pass over the pixels).
        name: what the error message calls it.

    Shapes:
        - image: (B, 3, H, W), floating point

    Returns:
        ``image`` itself, so that a check can wrap an argument.

    Raises:
        TypeError: not a tensor.
        ValueError: another shape, or an integer dtype.

    Examples:
        >>> import torch
        >>> from photoshield.image import check_image
        >>> check_image(torch.zeros(3, 8, 8), "photo")
        Traceback (most recent call last):
            ...
        ValueError: photo must have shape (B, 3, H, W), got (3, 8, 8)
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got {image.dtype}")
    return image


def working_size(height: int, width: int, max_side: int | None, multiple: int = 1) -> tuple[int, int]:
    """The (h, w) a model works at: longest side at most ``max_side``, aspect kept, rounded to ``multiple``.

    Args:
        height: the image height in pixels.
        width: the image width in pixels.
        max_side: the longest side allowed (None: no limit); images are never enlarged.
        multiple: both sides are rounded to a multiple of this (e.g. a VAE's factor 8).

    Returns:
        ``(h, w)``, each at least ``multiple``.

    Examples:
        >>> from photoshield.image import working_size
        >>> working_size(3000, 4000, 512), working_size(300, 202, 512, multiple=8)
        ((384, 512), (304, 200))
    """
    scale = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
    new_h = max(multiple, int(round(height * scale / multiple)) * multiple)
    new_w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return new_h, new_w


def resize_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable antialiased bilinear resize of (B, C, H, W) to ``size``; a no-op at the same size.

    Antialiasing is on when either side shrinks, so that downscaling does not alias.

    Args:
        images: the batch to resize.
        size: the target ``(height, width)``.

    Shapes:
        - images: (B, C, H, W)
        - output: (B, C, size[0], size[1])

    Returns:
        The resized batch (``images`` itself when the size already matches).

    Examples:
        >>> import torch
        >>> from photoshield.image import resize_to
        >>> resize_to(torch.rand(2, 3, 64, 48), (32, 24)).shape
        torch.Size([2, 3, 32, 24])
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    import torch.nn.functional as F

    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
