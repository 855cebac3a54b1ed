"""Results in words and tables for people, and batch reports for machines.

``protection_text(report)`` turns a ``protect()`` report into a few lines in plain language,
``protection_verdict(report)`` into one phrase, ``batch_table(entries)`` lays a batch out as one table,
and ``write_batch_report(entries, path)`` writes it as JSON or CSV (atomically). ``verify_lines`` words a
watermark verification, ``key_fingerprint`` names a key without showing it, and ``preset_help`` says what
each protection preset costs and buys::

    result = protect(photo, preset="light")
    print(protection_text(result.report))
    print(protection_verdict(result.report, short=True))     # "fools 4 of 5 face models"
"""

from __future__ import annotations

import hashlib
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "BATCH_COLUMNS",
    "PhotoEntry",
    "batch_table",
    "json_document",
    "key_fingerprint",
    "preset_help",
    "protection_text",
    "protection_verdict",
    "verify_lines",
    "write_batch_report",
]

def _first(value: Any, image: int = 0) -> Any:
    """One image's value of a per-image list (a scalar stays as it is)."""
    if isinstance(value, (list, tuple)):
        return value[image] if image < len(value) else None
    return value


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "unchanged"
    return f"{value:.{digits}f}"


def protection_verdict(report: dict[str, Any], short: bool = False, image: int = 0) -> str:
    """One phrase saying what the protection achieved, e.g. ``fools 4 of 5 face models``.

    Facial reports count the face models (the attacked ones and the independent judges) that no longer
    recognise the face (:func:`photoshield.protect.verdicts.judge_verdicts`); segmentation reports the share
    of masks broken; other methods how far their own score moved. ``short`` drops the explanation (for a table).
    """
    from .protect.verdicts import judge_verdicts, model_label

    status = report.get("status", "")
    if status == "unchanged":
        reason = str(report.get("reason", ""))
        if "no face" in reason:
            return "not protected: no face found"
        return "not protected: unchanged" if short else f"not protected: {reason or 'the photo is unchanged'}"
    verdicts = judge_verdicts(report, image)
    if verdicts:
        fooled = [v for v in verdicts if not v.recognised]
        phrase = f"fools {len(fooled)} of {len(verdicts)} face models"
        faces = {v.face for v in verdicts if v.face is not None}
        if len(faces) > 1:
            phrase += f" (counted over {len(faces)} faces)"
        if short:
            return phrase
        still = sorted({model_label(v.model) for v in verdicts if v.recognised and v.attacked is False})
        if still:
            phrase += f"; {' and '.join(still)}, never seen by the protection, still recognise{'s' if len(still) == 1 else ''} the face"
        return phrase
    after = report.get("protected") or {}
    if "asr50" in after:
        broken = _first(after["asr50"], image)
        return f"breaks {100 * broken:.0f} % of the segmentation masks" if broken is not None else str(status)
    before, now = _first(report.get("objective_before"), image), _first(report.get("objective_after"), image)
    if before is not None and now is not None and not short:
        return f"{status}: the method's own score went from {before:.3g} to {now:.3g} (lower is better)"
    return status or "done"


def protection_text(report: dict[str, Any], image: int = 0) -> str:
    """Image ``image``'s protection in plain language, one fact per line: status and settings, each face model's
    verdict (:func:`photoshield.protect.verdicts.summary`), and the figures of non-face methods in words."""
    from .protect.verdicts import summary

    lines = summary(report, image).splitlines()
    after = report.get("protected") or {}
    if "miou" in after:
        lines.append(f"segmentation: mask overlap with the original {_number(_first(after['miou'], image))} "
                     f"(1 = the same masks); {100 * (_first(after.get('asr50'), image) or 0):.0f} % of masks broken "
                     "(overlap below 0.5)")
    editor = f"editor ({report['editor']})" if isinstance(report.get("editor"), str) else "editor"
    if "attention_retention" in after:
        lines.append(f"{editor}: its attention keeps {_number(_first(after['attention_retention'], image))} of the "
                     "original photo's structure (1 = all of it)")
    if "context_attention_mass" in after:
        before = _first((report.get("clean") or {}).get("context_attention_mass"), image)
        lines.append(f"{editor}: attention paid to the photo {_number(_first(after['context_attention_mass'], image), 3)}"
                     + (f" (was {_number(before, 3)})" if before is not None else ""))
    return "\n".join(lines)


def face_psnr(report: dict[str, Any], image: int = 0) -> float | None:
    """PSNR (dB) over the face boxes of the protected photo, when the report has it."""
    return _first((report.get("protected") or {}).get("face_psnr_db"), image)


# ----------------------------------------------------------------------------- presets

#: What each transformation a preset trains through is, in words (``protect --help``).
_EOT_WORDS = {"jpeg-diff": "JPEG {quality}", "jpeg": "JPEG {quality}", "resize": "downscaling", "blur": "blur",
              "noise-jpeg": "noise then JPEG", "tv": "smoothing", "noisy-upscale": "noisy upscaling"}
#: What each preset is for, in words.
_PRESET_PURPOSE = {
    "light": "the quickest; not trained against any change to the photo",
    "standard": "JPEG 75 is about what most sites do to uploads",
    "strong": "for photos that will be recompressed, resized or blurred",
    "robust": "made to hold up through the cheap clean-ups that try to wash a protection off",
}


def preset_help() -> str:
    """One entry per preset of ``protect.api.PRESETS``: steps, time against standard, what it is trained through."""
    from .protect.api import PRESETS

    reference = PRESETS.get("standard", next(iter(PRESETS.values())))["steps"]
    lines = ["presets (what each costs and buys; standard takes about 20 s for a 512 px portrait on one CPU core):"]
    for name, settings in PRESETS.items():
        cost = "" if name == "standard" else f", about {settings['steps'] / reference:.2g}x the time of standard"
        through = []
        for spec in settings.get("eot", ()):
            family, _, arguments = spec.partition(":")
            values = dict(item.split("=", 1) for item in arguments.split(",") if "=" in item)
            try:
                word = _EOT_WORDS.get(family, family).format(**values)
            except KeyError:
                word = family
            if word not in through:
                through.append(word)
        trained = f"; trained through {', '.join(through)}" if through else ""
        purpose = _PRESET_PURPOSE.get(name)
        text = f"{settings['steps']} steps{cost}{trained}" + (f": {purpose}" if purpose else "")
        lines += textwrap.wrap(text, 92, initial_indent=f"  {name:10s} ", subsequent_indent=" " * 13)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- batches

#: Columns of a batch report (CSV) and of each photo in its JSON.
BATCH_COLUMNS = ["file", "output", "status", "verdict", "faces", "face_psnr_db", "psnr_db", "ssim", "seconds", "reason"]


@dataclass
class PhotoEntry:
    """One photo of a batch: where it went, what happened (``written``, ``unchanged``, ``failed``, ``interrupted``)."""

    file: str
    output: str | None = None
    status: str = "written"
    seconds: float | None = None
    reason: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The entry as a flat row of ``BATCH_COLUMNS``."""
        report = self.report
        return {
            "file": self.file,
            "output": self.output,
            "status": self.status,
            "verdict": protection_verdict(report, short=True) if report else "",
            "faces": report.get("faces") if report else None,
            "face_psnr_db": face_psnr(report) if report else None,
            "psnr_db": _first(report.get("psnr_db")) if report else None,
            "ssim": _first(report.get("ssim")) if report else None,
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "reason": self.reason or str(report.get("reason", "")),
        }


def batch_table(entries: Sequence[PhotoEntry], root: str | os.PathLike | None = None) -> str:
    """The batch as one aligned table: file (relative to ``root``, the folder given), faces, verdict, quality
    (face / photo PSNR), seconds, status."""
    head = ("file", "faces", "verdict", "quality (face / photo PSNR)", "seconds", "status")
    lines = []
    for entry in entries:
        row = entry.row()
        quality = ""
        if row["psnr_db"] is not None:
            face = "-" if row["face_psnr_db"] is None else _number(row["face_psnr_db"], 1)
            quality = f"{face} / {_number(row['psnr_db'], 1)} dB"
        faces = "" if row["faces"] is None else str(row["faces"])
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        name = os.path.relpath(entry.file, root) if root is not None else entry.file
        lines.append((_shorten(name, 48), faces, row["verdict"], quality, seconds, entry.status))
    widths = [max(len(line[i]) for line in [head, *lines]) for i in range(len(head))]
    right = {1, 4}
    out = []
    for line in [head, *lines]:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def write_batch_report(entries: Sequence[PhotoEntry], path: str | os.PathLike, settings: dict[str, Any] | None = None) -> Path:
    """Write the batch as ``.json`` (rows with each photo's full report, and the settings) or ``.csv`` (the
    ``BATCH_COLUMNS``), atomically. The extension chooses the format."""
    from .evaluate.report import write_csv, write_json

    path = Path(path)
    if path.suffix.lower() == ".csv":
        return write_csv([entry.row() for entry in entries], BATCH_COLUMNS, path)
    if path.suffix.lower() == ".json":
        photos = [{**entry.row(), "report": entry.report} for entry in entries]
        return write_json({"settings": settings or {}, "photos": photos}, path)
    raise ValueError(f"{path}: a report is written as .json or .csv")


def json_document(value: Any) -> Any:
    """``value`` with what JSON cannot hold made plain: non-finite numbers as null, tuples as lists, paths as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_document(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_document(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def key_fingerprint(key: str | bytes | None) -> str:
    """A short public fingerprint of a watermark key: the first 8 hex digits of its sha256 (never the key)."""
    if key is None:
        return "public key"
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return hashlib.sha256(data).hexdigest()[:8]


#: A p-value above this reads as chance: the bits look like an unmarked photo's (or a wrong key's).
CHANCE_P_VALUE = 0.01


def verify_lines(result: Any, message: str | None, key: str | bytes | None, searched: bool = False) -> list[tuple[str, str]]:
    """A watermark ``VerifyResult`` as (label, text) lines for people: the decision first, then the message
    read, the bit accuracy and p-value explained, where a crop or rotation was found, and a hint when the
    plain read is at chance and no search was asked."""
    lines = []
    other = getattr(result, "other_message", None)
    at_chance = result.p_value > CHANCE_P_VALUE
    if result.detected:
        shown = result.message if result.message is not None else message
        decision = f"DETECTED: marked with {shown!r}" if shown is not None else "DETECTED"
    elif other is not None:
        decision = f"marked, with a different message: {other!r}"
    elif at_chance:
        decision = ("no mark found: wrong key or unmarked photo" if message is None else
                    f"no mark of {message!r} found: wrong key, another message, or an unmarked photo")
    else:
        decision = f"not detected: a weak trace of the mark, short of the false-positive rate asked ({result.fpr:g})"
    lines.append(("decision", decision))
    if result.message is not None:
        asked = f" (asked: {message!r})" if message is not None and message != result.message else ""
        lines.append(("message", f"{result.message!r} read from the photo{asked}"))
    else:
        lines.append(("message", "no valid message read from the photo" + (f" (asked: {message!r})" if message else "")))
    lines.append(("key", key_fingerprint(key) + ("" if key is None else " (sha256 fingerprint)")))
    if result.bit_accuracy is None:
        lines.append(("bit accuracy", f"n/a: no valid message is within reach of the {result.n_bits} bits read"))
    else:
        against = f"the codeword of {message!r}" if message is not None else "the nearest valid message"
        lines.append(("bit accuracy", f"{100 * result.bit_accuracy:.1f} % of {result.n_bits} bits match {against} (50 % is chance)"))
    lines.append(("p-value", f"{result.p_value:.3g}: the chance an unmarked photo reads this well "
                             f"(detected at or below {result.fpr:g})"))
    if getattr(result, "geometry", "as is") != "as is":
        where = getattr(result, "where", result.geometry)
        lines.append(("found", where))
    if at_chance and not result.detected and other is None and not searched:
        hint = "try --search (the photo may be cropped or rotated)"
        lines.append(("hint", hint if message is not None else "try --message TEXT --search (the photo may be cropped or rotated)"))
    return lines
