"""What each tab of the web app does, without the web page: plain functions from files to files and text.

The page (:mod:`photoshield.app.ui`) only collects the inputs and shows what these return, so they are
tested directly and can be scripted::

    run = protect_photos(["selfie.jpg"], preset="light", workdir=Path("out"))
    print(run.text())                     # the verdicts of every identity model, face by face
    run.download                          # out/protect/.../selfie.protected.png (a zip for many photos)

Every file is written atomically under ``workdir`` (one fresh folder per run); inputs are never changed.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image, ImageDraw, ImageFont

from ..errors import PhotoshieldError

__all__ = [
    "CheckOutcome",
    "EmbedOutcome",
    "ProtectRun",
    "ProtectedPhoto",
    "check_photo",
    "embed_watermark",
    "protect_photos",
    "verify_watermark",
]

#: ``progress(fraction done in [0, 1], what is happening)``
Progress = Callable[[float, str], None]
#: The judges a protection is checked by: the attacked ensemble is added by the method itself.
PROTECT_JUDGES = ("sface", "dlib")
#: Errors that fail one photo of a run (recorded; the other photos go on).
_PHOTO_ERRORS = (PhotoshieldError, OSError, ValueError)


def _say(progress: Progress | None, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


def _run_folder(workdir: Path, kind: str) -> Path:
    """A fresh folder ``workdir/kind/YYYYmmdd-HHMMSS-xxxx`` for one run's files."""
    parent = Path(workdir) / kind
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=parent))


def _unique_stem(name: str, taken: set[str]) -> str:
    stem = Path(name).stem or "photo"
    candidate, number = stem, 2
    while candidate in taken:
        candidate, number = f"{stem}-{number}", number + 1
    taken.add(candidate)
    return candidate


def _text(value: str | None) -> str | None:
    """A text field as given, or None when left empty."""
    value = (value or "").strip()
    return value or None


# ----------------------------------------------------------------------------- protect


@dataclass
class ProtectedPhoto:
    """One photo of a protect run: the protected PNG, its previews and its verdicts (or why it failed)."""

    name: str
    original: Path
    output: Path | None = None
    comparison: Path | None = None  # the face before | after, zoomed 2x
    difference: Path | None = None  # the change of that crop, amplified by ``gain``
    gain: float = 1.0
    summary: str = ""
    error: str | None = None


@dataclass
class ProtectRun:
    """A protect run: every photo, the folder they went to, and the file to download (a PNG or a zip)."""

    photos: list[ProtectedPhoto] = field(default_factory=list)
    folder: Path | None = None
    download: Path | None = None

    def text(self) -> str:
        """Every photo's verdicts (or error) under its name; where the files went."""
        parts = []
        for photo in self.photos:
            body = f"failed: {photo.error}" if photo.error else photo.summary
            parts.append(f"{photo.name}\n{body}" if len(self.photos) > 1 else body)
        if self.folder is not None and any(photo.output for photo in self.photos):
            parts.append(f"saved in {self.folder}")
        return "\n\n".join(parts)


def protect_photos(paths: Sequence[str | Path], preset: str = "standard", quality: float = 35, steps: int | None = None,
                   seed: int = 0, workdir: Path = Path("."), progress: Progress | None = None,
                   tqdm_progress: bool = True) -> ProtectRun:
    """Protect every photo of ``paths`` with the facial method (the one for selfies and portraits).

    ``quality``: the PSNR in dB the faces keep (the budget; lower protects more and shows more); ``steps``: None
    for the preset's. Writes ``NAME.protected.png``, ``NAME.preview.png`` and ``NAME.difference.png`` per photo and,
    for several photos, ``protected-photos.zip``. A photo that fails is reported and the others go on.
    ``tqdm_progress`` shows the optimisation's step bar (the page follows it).
    """
    from ..io import read_photo, write_image
    from ..protect import protect
    from ..protect.api import PRESETS
    from ..protect.preview import face_box, face_previews

    if not paths:
        raise PhotoshieldError("add one or more photos first")
    if preset not in PRESETS:
        raise PhotoshieldError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not 20 <= quality <= 60:
        raise PhotoshieldError(f"the face quality is a PSNR in dB, 20 to 60 (e.g. 35); got {quality:g}")
    run = ProtectRun(folder=_run_folder(workdir, "protect"))
    taken: set[str] = set()
    for number, path in enumerate(paths):
        path = Path(path)
        photo_result = ProtectedPhoto(name=path.name, original=path)
        run.photos.append(photo_result)
        _say(progress, number / len(paths), f"protecting {path.name} ({number + 1} of {len(paths)})")
        try:
            photo = read_photo(path)
            result = protect(photo.pixels, method="facial", psnr=quality, steps=steps, preset=preset,
                             seed=seed, progress=tqdm_progress, judges=PROTECT_JUDGES)
            stem = run.folder / _unique_stem(path.name, taken)
            photo_result.output = stem.with_name(stem.name + ".protected.png")
            write_image(result.image, photo_result.output, metadata=photo)
            previews = face_previews(photo.pixels, result.image, box=face_box(result.report))
            photo_result.comparison = stem.with_name(stem.name + ".preview.png")
            photo_result.difference = stem.with_name(stem.name + ".difference.png")
            write_image(previews.comparison, photo_result.comparison)
            write_image(previews.difference, photo_result.difference)
            photo_result.gain = previews.gain
            photo_result.summary = result.summary()
        except _PHOTO_ERRORS as error:
            photo_result.error = str(error) or type(error).__name__
    written = [photo.output for photo in run.photos if photo.output is not None]
    if len(written) == 1:
        run.download = written[0]
    elif written:
        run.download = _zip(written, run.folder / "protected-photos.zip")
    _say(progress, 1.0, "done")
    return run


def _zip(files: Sequence[Path], target: Path) -> Path:
    """``files`` in one zip at ``target`` (written atomically); PNGs are stored, not compressed again."""
    from ..io.atomic import atomic_write

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.write(file, arcname=file.name)
    atomic_write(target, buffer.getvalue())
    return target


# ----------------------------------------------------------------------------- watermark


@dataclass
class EmbedOutcome:
    """A marked photo: the PNG written, the change made visible, and a text with the PSNR and where it went."""

    output: Path
    difference: Path
    psnr_db: float
    text: str


def embed_watermark(path: str | Path, message: str, key: str | None = None, strength: float = 1.0,
                    workdir: Path = Path("."), progress: Progress | None = None) -> EmbedOutcome:
    """Mark the photo at ``path`` with ``message`` (up to 9 ASCII characters) under ``key`` (None: the public key).

    Writes ``NAME.marked.png`` and ``NAME.watermark.png`` (the change, amplified) in a fresh folder.
    """
    from ..io import read_photo, write_image
    from ..metrics import psnr
    from ..protect.preview import difference_image
    from ..watermark import embed

    if path is None:
        raise PhotoshieldError("add a photo to mark first")
    message = _text(message)
    if message is None:
        raise PhotoshieldError("write the message to embed (up to 9 letters or digits, e.g. an ID)")
    path = Path(path)
    _say(progress, 0.1, f"marking {path.name}")
    photo = read_photo(path)
    marked = embed(photo.pixels, message, key=_text(key), strength=strength)
    folder = _run_folder(workdir, "watermark")
    stem = folder / (path.stem or "photo")
    output = stem.with_name(stem.name + ".marked.png")
    write_image(marked, output, metadata=photo)
    picture, gain = difference_image(photo.pixels, marked)
    difference = stem.with_name(stem.name + ".watermark.png")
    write_image(picture, difference)
    quality = float(psnr(photo.pixels, marked.clamp(0, 1)).item())
    who = "your key" if _text(key) else "the public key (anyone can verify it)"
    text = (f"Marked with message {message!r} under {who}.\n"
            f"PSNR {quality:.1f} dB against the original (higher is less visible; 40 dB and up is hard to see).\n"
            f"The change, amplified x{gain:.0f}, is shown on the right: the mark spreads over the whole photo.\n"
            f"Saved as {output}")
    _say(progress, 1.0, "done")
    return EmbedOutcome(output, difference, quality, text)


def verify_watermark(path: str | Path, message: str | None = None, key: str | None = None, search: bool = False,
                     progress: Progress | None = None) -> str:
    """The decision on the photo at ``path`` in words (see ``photoshield.watermark.explain``).

    ``message``: the message to test for (None: any); ``search``: also read through crops and rotations
    (needs the message, some seconds more).
    """
    from ..watermark import verify
    from ..watermark.explain import explain

    if path is None:
        raise PhotoshieldError("add the copy to verify first")
    message = _text(message)
    if search and message is None:
        raise PhotoshieldError("looking through crops and rotations needs the message to look for")
    _say(progress, 0.1, "reading the mark" + (" through crops and rotations" if search else ""))
    result = verify(Path(path), message=message, key=_text(key), search=search)
    _say(progress, 1.0, "done")
    return explain(result)


# ----------------------------------------------------------------------------- check


@dataclass
class CheckOutcome:
    """A checked photo: the faces found (boxes drawn and numbered) and a text with every verdict."""

    faces: Image.Image
    text: str


@lru_cache(maxsize=1)
def _judges():
    """Every identity judge, loaded once (the shipped models, SFace, and real dlib when installed)."""
    from ..protect.facial import IdentityJudges

    return IdentityJudges()


def _draw_faces(image: Image.Image, boxes: Sequence[Sequence[float]]) -> Image.Image:
    """A copy of ``image`` with each face box drawn and numbered from 1."""
    picture = image.convert("RGB").copy()
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 250))
    font = ImageFont.load_default(size=max(12, 8 * width))
    for number, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        draw.rectangle((x0, y0, x1, y1), outline=(255, 200, 0), width=width)
        draw.text((x0 + 2 * width, y0 + width), str(number), fill=(255, 200, 0), font=font,
                  stroke_width=max(1, width // 2), stroke_fill=(0, 0, 0))
    return picture


def check_photo(path: str | Path, reference: str | Path | None = None, key: str | None = None,
                message: str | None = None, watermark: bool = False, progress: Progress | None = None) -> CheckOutcome:
    """Which faces the photo shows, whether each identity model still recognises the person of ``reference``
    in it (the largest face of each photo is compared), and, with ``watermark``, whether it carries a mark
    under ``key`` (and ``message``, if given)."""
    from ..image import to_pil
    from ..io import read_photo
    from ..protect.faces import find_faces
    from ..protect.verdicts import score_verdicts

    if path is None:
        raise PhotoshieldError("add the photo to check first")
    _say(progress, 0.05, "looking for faces")
    photo = read_photo(Path(path))
    faces = find_faces(photo.pixels)
    boxes = faces.boxes.tolist()
    lines = [f"{len(boxes)} face{'' if len(boxes) == 1 else 's'} found" + (" (numbered on the photo)" if boxes else "")]
    if reference is not None:
        _say(progress, 0.3, "comparing with the reference photo")
        judges = _judges()
        known = judges.reference(read_photo(Path(reference)).pixels)
        if all(value is None for value in known.values()):
            lines.append("No face found on the reference photo, so there is nobody to recognise.")
        else:
            verdicts = score_verdicts(judges.score(known, photo.pixels))
            still = [v for v in verdicts if v.recognised]
            lines.append(f"Same person as the reference (largest face of each photo): {len(still)} of {len(verdicts)} "
                         "face models say so")
            lines.extend(f"  {verdict}" for verdict in verdicts)
            missing = [name for name, value in known.items() if value is None]
            if missing:
                lines.append(f"  (no reference face for {', '.join(missing)})")
        if judges.skipped:
            lines.append("Not available here: " + "; ".join(f"{name} ({why})" for name, why in judges.skipped.items()))
    else:
        lines.append("Add a reference photo of the person to see which face models still recognise them.")
    if watermark:
        _say(progress, 0.8, "reading the watermark")
        lines.append("")
        lines.append(verify_watermark(path, message=message, key=key))
    _say(progress, 1.0, "done")
    return CheckOutcome(_draw_faces(to_pil(photo.pixels), boxes), "\n".join(lines))
