"""Deepfake attacks: a graphics face swap, face-region inpainting and instruction edits.

- ``faceswap``: FaceForensics++'s FaceSwap in 2-D: 68 landmarks on both faces, a Delaunay
  triangulation, a piecewise-affine warp of the source face onto the target, colour matching
  in Lab and Poisson (seamless) blending. Needs no generative model.
- ``face-inpaint``: the face region repainted by a Stable Diffusion inpainting pipeline.
- ``instruct-edit``: a text instruction applied by InstructPix2Pix or Flux Kontext.

Faces are found with the registry's MTCNN detector and 68-point landmark net
(:mod:`photoshield.models.face`). An image without a face is returned unchanged and the report
says so. Each call leaves ``last_report``: ``{"attack": spec, "images": [per-image dict]}`` with
``faces`` (N, 4) boxes x1 y1 x2 y2 in pixels, ``mask`` (1, H, W) where the image was changed
(1 = changed) and a ``status`` line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PhotoshieldError
from .base import Attack, AttackError, Compose, get, register
from .presets import register_grid
from .regeneration import ModelAttack, draw_seed, resolve_editor

__all__ = ["FaceInpaint", "FaceSwap", "InstructEdit", "face_regions", "harmonic_fill", "poisson_blend"]

NO_FACE = "no face found: image unchanged"
AUTO_MIN_SOURCE = 96.0  # px: bundled source faces smaller than this are not picked by source="auto"


# --------------------------------------------------------------------------- faces


def _landmarks(images: torch.Tensor, min_face: float) -> list[dict[str, torch.Tensor]]:
    """Per image: ``boxes`` (N, 4), ``scores`` (N,), ``landmarks`` (N, 68, 2) in pixels of faces >= min_face px."""
    from ..models.face import detect_faces, landmarks68

    images = images.detach().float()
    found = detect_faces(images)
    results = []
    for number, faces in enumerate(found):
        boxes = faces["boxes"].to(images.device, torch.float32)
        sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = sides >= min_face
        boxes, scores = boxes[keep], faces["scores"][keep]
        with torch.no_grad():
            points = landmarks68(images[number : number + 1], boxes, [0] * len(boxes)) if len(boxes) else None
        results.append({"boxes": boxes, "scores": scores, "landmarks": points if points is not None else boxes.new_zeros(0, 68, 2)})
    return results


def _hull_mask(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) float mask of the convex hull of (K, 2) pixel points (pixel centres at integer coordinates)."""
    from scipy.spatial import Delaunay

    array = points.detach().cpu().double().numpy()
    x0, y0 = np.clip(np.floor(array.min(0)).astype(int), 0, [width - 1, height - 1])
    x1, y1 = np.clip(np.ceil(array.max(0)).astype(int), 0, [width - 1, height - 1])
    mask = torch.zeros(height, width)
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = Delaunay(array).find_simplex(np.stack([xs.ravel(), ys.ravel()], 1)) >= 0
    mask[y0 : y1 + 1, x0 : x1 + 1] = torch.from_numpy(inside.reshape(xs.shape).astype(np.float32))
    return mask


def _grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (pixels < 0) an (H, W) mask by a square of that radius."""
    if pixels == 0:
        return mask
    radius = abs(pixels)
    x = mask[None, None] if pixels > 0 else 1 - mask[None, None]
    x = F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)
    return (x if pixels > 0 else 1 - x)[0, 0]


def face_regions(
    images: torch.Tensor, grow: float = 0.1, min_face: float = 24.0
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Masks (B, 1, H, W) of every face (the hull of its 68 landmarks, dilated by ``grow`` x face size), and the faces."""
    batch, _, height, width = images.shape
    faces = _landmarks(images, min_face)
    masks = torch.zeros(batch, 1, height, width)
    for number, found in enumerate(faces):
        for points in found["landmarks"]:
            hull = _hull_mask(points, height, width)
            size = float((points.max(0).values - points.min(0).values).max())
            masks[number, 0] = torch.maximum(masks[number, 0], _grow(hull, round(grow * size)))
    return masks.to(images.device), faces


# --------------------------------------------------------------------------- blending


def _neighbours(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of every pixel of (B, C, H, W), zero outside."""
    kernel = x.new_tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel, groups=x.shape[1])


def harmonic_fill(values: torch.Tensor, mask: torch.Tensor, tol: float = 1e-5, max_iter: int = 2000) -> torch.Tensor:
    """Solve Laplace(f) = 0 inside ``mask`` (B, 1, H, W) with f = ``values`` outside (5-point stencil).

    Conjugate gradients, started from the solution at half resolution (a cascadic multigrid), so
    large regions converge in a few hundred iterations. The mask must not touch the border.
    """
    mask = (mask > 0.5).to(values)
    if mask.sum() == 0:
        return values
    x = torch.zeros_like(values)
    if min(values.shape[-2:]) >= 48:  # coarse start: the harmonic function is smooth
        coarse_mask = (F.avg_pool2d(mask, 2) > 0.5).to(values)
        coarse_mask[..., [0, -1], :], coarse_mask[..., :, [0, -1]] = 0, 0
        coarse = harmonic_fill(F.avg_pool2d(values, 2), coarse_mask, tol * 10, max_iter)
        x = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False) * mask
    b = _neighbours(values * (1 - mask)) * mask

    def operator(v: torch.Tensor) -> torch.Tensor:
        return (4 * v - _neighbours(v * mask)) * mask

    r = b - operator(x)
    p, rs = r.clone(), r.pow(2).sum((-2, -1), keepdim=True)
    goal = tol**2 * b.pow(2).sum((-2, -1), keepdim=True).clamp_min(1e-12)
    for _ in range(max_iter):
        if bool((rs <= goal).all()):
            break
        q = operator(p)
        alpha = rs / (p * q).sum((-2, -1), keepdim=True).clamp_min(1e-30)
        x, r = x + alpha * p, r - alpha * q
        new = r.pow(2).sum((-2, -1), keepdim=True)
        p, rs = r + new / rs.clamp_min(1e-30) * p, new
    return values * (1 - mask) + x * mask


def poisson_blend(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Seamless cloning (Pérez et al. 2003): ``source``'s gradients inside ``mask`` (B, 1, H, W), ``target`` outside.

    The result is ``source`` plus the membrane that interpolates ``target - source`` from the mask
    boundary (the same solution as the guided Poisson equation with the source gradient field).
    """
    mask = (mask > 0.5).to(target)
    padded = [F.pad(t, (1, 1, 1, 1), mode="replicate") for t in (source, target)]
    fill = harmonic_fill(padded[1] - padded[0], F.pad(mask, (1, 1, 1, 1)))[..., 1:-1, 1:-1]
    return target * (1 - mask) + (source + fill) * mask


def _match_colour(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Shift and scale ``source``'s Lab channels to ``target``'s mean and std inside ``mask`` (1, 1, H, W)."""
    weight = mask / mask.sum().clamp_min(1.0)
    src, tgt = kornia.color.rgb_to_lab(source.clamp(0, 1)), kornia.color.rgb_to_lab(target.clamp(0, 1))
    stats = []
    for lab in (src, tgt):
        mean = (lab * weight).sum((-2, -1), keepdim=True)
        std = ((lab - mean).pow(2) * weight).sum((-2, -1), keepdim=True).sqrt()
        stats.append((mean, std))
    (mean_s, std_s), (mean_t, std_t) = stats
    matched = (src - mean_s) * (std_t / std_s.clamp_min(1e-3)).clamp(0.25, 4.0) + mean_t
    return kornia.color.lab_to_rgb(matched, clip=True)


# --------------------------------------------------------------------------- face swap


def with_forehead(points: torch.Tensor, height: float = 0.3) -> torch.Tensor:
    """68 landmarks plus 10 forehead points: the brows (17-26) moved up by ``height`` x chin-to-brow distance."""
    brows = points[17:27]
    up = brows.mean(0) - points[8]
    return torch.cat([points, brows + height * up])


def _piecewise_affine(
    source: torch.Tensor, source_points: torch.Tensor, target_points: torch.Tensor, box: tuple[int, int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``source`` (1, 3, Hs, Ws) so its landmarks land on ``target_points``, over the pixel box (x0, y0, x1, y1).

    The target landmarks are Delaunay-triangulated; each target pixel is mapped into the source by
    the affine map of its triangle and sampled bilinearly. Returns the warped crop (1, 3, h, w) and
    its mask (1, 1, h, w) of pixels inside the triangulation.
    """
    from scipy.spatial import Delaunay

    x0, y0, x1, y1 = box
    target_np = target_points.detach().cpu().double().numpy()
    triangulation = Delaunay(target_np)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    pixels = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    simplex = torch.from_numpy(triangulation.find_simplex(pixels)).long()
    corners = torch.from_numpy(triangulation.simplices).long()
    target_t = torch.from_numpy(target_np)
    source_t = source_points.detach().cpu().double()
    homogeneous = torch.cat([target_t[corners], torch.ones(len(corners), 3, 1, dtype=torch.float64)], 2)
    maps = torch.linalg.pinv(homogeneous) @ source_t[corners]  # (T, 3, 2): [x y 1] @ map = source point
    inside = simplex >= 0
    pixel_h = torch.cat([torch.from_numpy(pixels), torch.ones(len(pixels), 1, dtype=torch.float64)], 1)
    mapped = torch.zeros(len(pixels), 2, dtype=torch.float64)
    mapped[inside] = (pixel_h[inside, None, :] @ maps[simplex[inside]])[:, 0]
    height, width = source.shape[-2:]
    grid = torch.stack([2 * mapped[:, 0] / max(width - 1, 1) - 1, 2 * mapped[:, 1] / max(height - 1, 1) - 1], 1)
    grid = grid.reshape(1, y1 - y0, x1 - x0, 2).to(source)
    warped = F.grid_sample(source, grid.to(source.device), mode="bilinear", padding_mode="border", align_corners=True)
    mask = inside.reshape(1, 1, y1 - y0, x1 - x0).to(source)
    return warped, mask.to(source.device)


def _source_image(source: Any) -> tuple[torch.Tensor | None, str]:
    """The source photo and its name from "auto" (None: chosen per target), a sample name, a path or a tensor."""
    from .. import data
    from ..image import to_tensor

    if isinstance(source, torch.Tensor):
        return to_tensor(source.detach().cpu())[:1], "tensor"
    text = os.fspath(source)
    if text == "auto":
        return None, "auto"
    if text in data.samples():
        return data.sample(text), text
    if Path(text).expanduser().is_file():
        from ..io import read_image

        return read_image(Path(text).expanduser()), text
    raise AttackError(
        f"faceswap: source {text!r} is neither 'auto', a bundled sample ({', '.join(data.samples('faces'))}) "
        "nor an image file"
    )


@register("faceswap", "face-swap")
class FaceSwap(Attack):
    """A graphics face swap in the style of FaceForensics++'s FaceSwap: another person's face on every face.

    ``source``: "auto" (default: the bundled face photo of a different person, the one farthest
    from the target's main face by dlib descriptor), a bundled sample name, an image path, or a
    tensor (Python only). Both faces get 68 landmarks; the target's are Delaunay-triangulated and
    the source face is warped onto them triangle by triangle, matched in colour (mean and std in
    Lab inside the face) and Poisson-blended. ``blend`` in [0, 1] (default 1) mixes the swapped face
    over the original; ``strength`` maps it 0 -> 1. ``shrink`` (default 0.03, x face size) erodes the
    face hull so the seam avoids the landmark outline. ``min_face``: faces smaller (px) are left alone.
    Not differentiable; deterministic (the seed is accepted for a uniform interface). Registered as
    ``faceswap`` (alias ``face-swap``); ``last_report["images"]`` says per image what was swapped.

    Keyword Args:
        source (str | Tensor): "auto", a sample name, an image path, or a (3, H, W) / (1, 3, H, W) tensor.
        blend (float): in [0, 1] (default 1).
        shape (float): in [0, 1] (default 0.5): how far the face outline moves towards the source's proportions.
        forehead (float): in [0, 1] (default 0.3): forehead points above the brows, x chin-to-brow distance.
        shrink (float): in [0, 0.3] (default 0.03), x face size.
        min_face (float): smallest face side in pixels (default 40).
        strength (float): s in [0, 1]; explicit parameters win.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> from photoshield import attacks, data
        >>> from photoshield.image import resize_to
        >>> photo = resize_to(data.sample("obama"), (256, 205))
        >>> swap = attacks.FaceSwap(source="biden")
        >>> swapped = swap(photo)
        >>> swap.last_report["images"][0]["status"], bool((swapped != photo).any())
        ('swapped 1 face(s) with biden', True)
    """

    defaults = {"source": "auto", "blend": 1.0, "shape": 0.5, "forehead": 0.3, "shrink": 0.03, "min_face": 40.0}
    strength_range = {"blend": (0.0, 1.0)}
    bounds = {"blend": (0.0, 1.0), "shape": (0.0, 1.0), "forehead": (0.0, 1.0), "shrink": (0.0, 0.3), "min_face": (8.0, 10000.0)}

    def __init__(self, source: Any = "auto", strength: float | str | None = None, seed: int | str | None = None, **params):
        tensor = isinstance(source, torch.Tensor)
        super().__init__(strength=strength, seed=seed, source="tensor" if tensor else os.fspath(source), **params)
        if tensor and source.ndim not in (3, 4):
            raise AttackError(f"faceswap: a source tensor must be (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}")
        self._source = source
        self._faces: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_report: dict[str, Any] = {}

    def _face_of(self, key: str, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, 68 landmarks) of the main face of a source photo, computed once."""
        if key not in self._faces:
            found = _landmarks(image, 16.0)[0]
            if len(found["boxes"]) == 0:
                raise PhotoshieldError(f"faceswap: no face found in the source photo {key!r}")
            self._faces[key] = (image, found["landmarks"][int(found["scores"].argmax())])
        return self._faces[key]

    def _auto_source(self, image: torch.Tensor, points: torch.Tensor) -> tuple[str, torch.Tensor, torch.Tensor]:
        """The bundled face photo of the person least like the target face (dlib descriptor distance)."""
        from .. import data
        from ..models.face import embed_faces

        people: dict[str, str] = {}
        for name in data.samples("faces"):
            people.setdefault(str(data.sample_info(name).get("person", name)), name)
        with torch.no_grad():
            target = embed_faces(image, landmarks=points[None].to(image.device))
            best, best_distance = "", -1.0
            for name in people.values():
                photo, landmarks = self._face_of(name, data.sample(name))
                if float((landmarks.max(0).values - landmarks.min(0).values).max()) < AUTO_MIN_SOURCE:
                    continue  # small source faces give blurry swaps
                distance = float((embed_faces(photo, landmarks=landmarks[None]) - target.cpu()).norm())
                if distance > best_distance:
                    best, best_distance = name, distance
        return (best, *self._face_of(best, data.sample(best)))

    def swap_face(self, image: torch.Tensor, points: torch.Tensor, source: torch.Tensor, source_points: torch.Tensor):
        """Swap one face of ``image`` (1, 3, H, W) at 68 ``points``; returns the image and the changed-pixel mask."""
        height, width = image.shape[-2:]
        size = float((points.max(0).values - points.min(0).values).max())
        mask_full = torch.zeros(1, 1, height, width, device=image.device)
        shape = self.params["shape"]
        if shape > 0:  # move the destination towards the source face's proportions (in the target's pose)
            from ..models.face import similarity_transform

            fit = similarity_transform(source_points[None].cpu(), points[None].cpu())[0].to(points)
            aligned = source_points.to(points) @ fit[:, :2].T + fit[:, 2]
            points = (1 - shape) * points + shape * aligned
        if self.params["forehead"] > 0:
            points = with_forehead(points, self.params["forehead"])
            source_points = with_forehead(source_points, self.params["forehead"])
        margin = 3
        x0, y0 = (points.min(0).values.floor().long() - margin).clamp_min(0).tolist()
        x1, y1 = (points.max(0).values.ceil().long() + margin + 1).tolist()
        x1, y1 = min(x1, width), min(y1, height)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return image, mask_full
        warped, mask = _piecewise_affine(source.to(image), source_points, points, (x0, y0, x1, y1))
        mask = _grow(mask[0, 0], -max(1, round(self.params["shrink"] * size)))[None, None]
        mask[..., [0, -1], :], mask[..., :, [0, -1]] = 0, 0  # the seam needs known pixels around it
        if mask.sum() < 16:
            return image, mask_full
        crop = image[..., y0:y1, x0:x1].float()
        warped = _match_colour(warped.float(), crop, mask)
        blended = poisson_blend(warped, crop, mask).clamp(0, 1)
        alpha = self.params["blend"] * mask
        out = image.clone()
        out[..., y0:y1, x0:x1] = (crop * (1 - alpha) + blended * alpha).to(image)
        mask_full[..., y0:y1, x0:x1] = mask
        return out, mask_full

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        source, source_name = _source_image(self._source)
        faces = _landmarks(images, self.params["min_face"])
        outputs, reports = [], []
        for number, found in enumerate(faces):
            image = images[number : number + 1]
            mask = torch.zeros(1, 1, *image.shape[-2:], device=image.device)
            report = {"faces": found["boxes"].cpu(), "landmarks": found["landmarks"].cpu(), "source": source_name}
            if len(found["boxes"]) == 0 or self.params["blend"] == 0:
                outputs.append(image)
                reports.append({**report, "mask": mask[0].cpu(), "swapped": 0, "status": NO_FACE if not len(found["boxes"]) else "blend=0: image unchanged"})
                continue
            if source is None:
                main = found["landmarks"][int(found["scores"].argmax())]
                name, photo, source_points = self._auto_source(image, main)
                report["source"] = name
            else:
                photo, source_points = self._face_of(source_name, source)
            for points in found["landmarks"]:
                image, changed = self.swap_face(image, points, photo, source_points)
                mask = torch.maximum(mask, changed)
            outputs.append(image)
            count = len(found["boxes"])
            reports.append({**report, "mask": mask[0].cpu(), "swapped": count, "status": f"swapped {count} face(s) with {report['source']}"})
        self.last_report = {"attack": self.describe(), "images": reports}
        return torch.cat(outputs)


# --------------------------------------------------------------------------- generative edits


@register("face-inpaint", "faceinpaint")
class FaceInpaint(ModelAttack):
    """Repaint every face with a Stable Diffusion inpainting pipeline (the face region, not the whole photo).

    ``model``: a ``StableDiffusionInpaintPipeline``, an ``sd-inpaint`` Editor, or a path / hub id.
    The mask is the hull of the 68 landmarks dilated by ``grow`` (default 0.1 x face size).
    ``noise`` in (0, 1] (default 1: repaint from pure noise): the pipeline's strength; ``strength``
    maps it 0.3 -> 1. ``prompt`` (default "a photo of a person's face"), ``steps`` (default 30),
    ``guidance`` (default 7.5). ``paste_back`` (default true) keeps the original pixels outside the
    (feathered) mask, as inpainting tools do, so only the face changes. Randomised. Registered as
    ``face-inpaint`` (alias ``faceinpaint``).

    Keyword Args:
        model (Editor | str): the inpainting pipeline, Editor, folder or hub id (required).
        prompt (str): what to paint (default "a photo of a person's face").
        noise (float): in (0, 1] (default 1).
        steps (int): 1-1000 (default 30).
        guidance (float): 0-50 (default 7.5).
        grow (float): mask dilation, x face size, in [0, 1] (default 0.1).
        paste_back (bool): keep the pixels outside the mask (default true).
        min_face (float): smallest face side in pixels (default 24).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the edit repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> from photoshield import attacks, data
        >>> from photoshield.image import resize_to
        >>> from photoshield.testing import tiny_editor
        >>> face = resize_to(data.sample("obama")[..., :256, 100:356], (64, 64))
        >>> inpaint = attacks.FaceInpaint(model=tiny_editor("sd-inpaint"), steps=1, min_face=16, seed=0)
        >>> inpaint(face).shape, inpaint.last_report["images"][0]["status"]
        (torch.Size([1, 3, 64, 64]), 'repainted 1 face(s)')
    """

    defaults = {
        "model": "",
        "prompt": "a photo of a person's face",
        "noise": 1.0,
        "steps": 30,
        "guidance": 7.5,
        "grow": 0.1,
        "paste_back": True,
        "min_face": 24.0,
    }
    strength_range = {"noise": (0.3, 1.0)}
    bounds = {"noise": (0.01, 1.0), "steps": (1, 1000), "guidance": (0.0, 50.0), "grow": (0.0, 1.0), "min_face": (8.0, 10000.0)}
    model_help = "a StableDiffusionInpaintPipeline"

    def load(self, model: Any) -> Any:
        return resolve_editor(model, ("sd-inpaint",), self.name)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        editor = self.loaded()
        masks, faces = face_regions(images, self.params["grow"], self.params["min_face"])
        seed = draw_seed(generator)
        has_face = [i for i, found in enumerate(faces) if len(found["boxes"])]
        out = images.clone()
        if has_face:
            steps = max(self.params["steps"], int(np.ceil(1.0 / self.params["noise"])))
            with torch.no_grad():
                edited = editor.edit(
                    images[has_face].float(),
                    self.params["prompt"],
                    seed=seed,
                    num_inference_steps=steps,
                    strength=self.params["noise"],
                    guidance_scale=self.params["guidance"],
                    mask=masks[has_face],
                ).to(images)
            if self.params["paste_back"]:
                soft = kornia.filters.gaussian_blur2d(masks[has_face], (7, 7), (1.5, 1.5)).to(images)
                soft = torch.maximum(soft, masks[has_face].to(images))
                edited = soft * edited + (1 - soft) * images[has_face]
            out[has_face] = edited
        self.last_report = {
            "attack": self.describe(),
            "seed": seed,
            "images": [
                {
                    "faces": found["boxes"].cpu(),
                    "mask": masks[i].cpu(),
                    "status": f"repainted {len(found['boxes'])} face(s)" if len(found["boxes"]) else NO_FACE,
                }
                for i, found in enumerate(faces)
            ],
        }
        return out


@register("instruct-edit", "instruct")
class InstructEdit(ModelAttack):
    """Apply a text instruction with InstructPix2Pix or Flux Kontext ("make him look older").

    ``model``: a ``StableDiffusionInstructPix2PixPipeline`` or ``FluxKontextPipeline`` (or an Editor
    of either kind); a path / hub id is loaded as ``kind`` (default "instruct-pix2pix", or
    "flux-kontext"). ``prompt`` is the instruction (default "make the person look like someone else").
    ``guidance`` (default 7.5): text guidance for pix2pix, the distilled guidance for Kontext (whose
    usual value is 2.5); ``strength`` maps it 1.5 -> 12. ``image_guidance`` (pix2pix only, default
    1.5): lower follows the instruction more, less the photo. ``steps`` (default 30). ``region``:
    "image" (default) edits the whole photo, "face" keeps the edit only inside the faces' masks.
    Randomised. Registered as ``instruct-edit`` (alias ``instruct``).

    Keyword Args:
        model (Editor | str): the pipeline, Editor, folder or hub id (required).
        kind (str): how a path is loaded: "instruct-pix2pix" (default) or "flux-kontext".
        prompt (str): the instruction.
        guidance (float): 0-50 (default 7.5).
        image_guidance (float): 0-20 (default 1.5; pix2pix only).
        steps (int): 1-1000 (default 30).
        region (str): "image" (default) or "face".
        grow (float): face mask dilation, x face size (default 0.1).
        strength (float): s in [0, 1]; explicit parameters win.
        seed (int): makes the edit repeatable.

    Shapes:
        - images: (B, 3, H, W) float in [0, 1]
        - output: the same shape, dtype and device, in [0, 1]

    Examples:
        >>> import torch
        >>> from photoshield import attacks
        >>> from photoshield.testing import tiny_editor
        >>> edit = attacks.InstructEdit(model=tiny_editor("instruct-pix2pix"), prompt="make it winter", steps=2, seed=0)
        >>> edit(torch.rand(1, 3, 32, 32)).shape, edit.last_report["kind"]
        (torch.Size([1, 3, 32, 32]), 'instruct-pix2pix')
    """

    defaults = {
        "model": "",
        "kind": "instruct-pix2pix",
        "prompt": "make the person look like someone else",
        "guidance": 7.5,
        "image_guidance": 1.5,
        "steps": 30,
        "region": "image",
        "grow": 0.1,
    }
    strength_range = {"guidance": (1.5, 12.0)}
    bounds = {"guidance": (0.0, 50.0), "image_guidance": (0.0, 20.0), "steps": (1, 1000), "grow": (0.0, 1.0)}
    choices = {"kind": ("instruct-pix2pix", "flux-kontext"), "region": ("image", "face")}
    model_help = "a StableDiffusionInstructPix2PixPipeline or FluxKontextPipeline"

    def load(self, model: Any) -> Any:
        kinds = ("instruct-pix2pix", "flux-kontext")
        if isinstance(model, (str, os.PathLike)):
            kinds = (self.params["kind"],)
        return resolve_editor(model, kinds, self.name)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        editor = self.loaded()
        seed = draw_seed(generator)
        batch, _, height, width = images.shape
        faces: list[dict[str, torch.Tensor]] = [{"boxes": torch.zeros(0, 4)} for _ in range(batch)]
        masks = torch.ones(batch, 1, height, width, device=images.device)
        if self.params["region"] == "face":
            masks, faces = face_regions(images, self.params["grow"])
        extra = {"image_guidance_scale": self.params["image_guidance"]} if editor.kind == "instruct-pix2pix" else {}
        keep = [i for i in range(batch) if masks[i].any()]
        out = images.clone()
        if keep:
            with torch.no_grad():
                edited = editor.edit(
                    images[keep].float(),
                    self.params["prompt"],
                    seed=seed,
                    num_inference_steps=self.params["steps"],
                    guidance_scale=self.params["guidance"],
                    mask=None if self.params["region"] == "image" else masks[keep],
                    **extra,
                )
            out[keep] = edited.to(images)
        self.last_report = {
            "attack": self.describe(),
            "seed": seed,
            "kind": editor.kind,
            "images": [
                {
                    "faces": faces[i]["boxes"].cpu(),
                    "mask": masks[i].cpu(),
                    "status": "edited" if i in keep else NO_FACE,
                }
                for i in range(batch)
            ],
        }
        return out


@register_grid("deepfake")
def _deepfake_grid() -> list[Attack]:
    """Model-free deepfake edits for evaluations: the graphics face swap at half and full blend, and then JPEG q75."""
    return [
        get("faceswap", strength=0.5, seed=0),
        get("faceswap", seed=0),
        Compose([get("faceswap", seed=0), get("jpeg", quality=75)]),
    ]
