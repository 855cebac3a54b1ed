"""The resumable results journal of a run: ``OUT/rows/rows-RANK.jsonl`` (one JSON row a line) and ``OUT/rows/run.json``.

    from photoshield.evaluate.journal import JournalWriter, merge, read_journals
    with JournalWriter(Path("out/rows"), rank=0) as journal:
        journal.write({"image": "obama", "method": "clean", "attack": "identity", "strength": 0.0, "psnr": float("inf")})
    rows = read_journals(Path("out/rows"))       # every process's rows; a line cut short is skipped

Each process appends the rows it finishes to its own file, flushed row by row, so an interrupted run
loses at most the row in progress. ``run.json`` records the settings and the grid that made the rows:
:func:`prepare_output` refuses a folder holding another run's results, and lets a grid that only adds
images, methods or attacks resume. :func:`merge` puts the rows of the current grid in grid order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import PhotoshieldError
from ..io.atomic import atomic_write
from .config import EvalConfig, MethodSpec
from .grid import row_key

__all__ = [
    "REPORT_FILES",
    "JournalWriter",
    "clear",
    "conflict",
    "key_of",
    "merge",
    "plain_number",
    "prepare_output",
    "read_journals",
    "run_record",
]


def plain_number(value: Any) -> Any:
    """Rows hold plain JSON numbers, rounded to 6 significant digits so reports compare across machines."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    value = float(value)
    return value if not math.isfinite(value) else float(f"{value:.6g}")


def key_of(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """The key of a journaled row: (image, method, attack, repr(strength)), as :func:`~.grid.row_key` makes it."""
    return (str(row["image"]), str(row["method"]), str(row["attack"]), repr(row["strength"]))


def read_journals(folder: Path) -> list[dict[str, Any]]:
    """Every row of every ``rows-*.jsonl`` in ``folder``, file by file; a line cut short by an interruption is skipped."""
    rows = []
    for journal in sorted(folder.glob("rows-*.jsonl")):
        for line in journal.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interrupted run: that row runs again
                continue
    return rows


class JournalWriter:
    """Appends rows to ``folder/rows-RANK.jsonl``, one JSON line each, flushed as written (a context manager)."""

    def __init__(self, folder: Path, rank: int):
        self.path = folder / f"rows-{rank}.jsonl"
        self._sink: Any = None

    def __enter__(self) -> "JournalWriter":
        self._sink = self.path.open("a", encoding="utf-8")
        if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            self._sink.write("\n")  # close a line an interrupted run cut short, so the next row starts clean
        return self

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row`` (numbers as :func:`plain_number` makes them) and flush it to the file."""
        self._sink.write(json.dumps({key: plain_number(value) for key, value in row.items()}) + "\n")
        self._sink.flush()

    def __exit__(self, *exc_info: Any) -> None:
        self._sink.close()


def merge(rows: list[dict[str, Any]], inputs: Sequence[tuple[str, Any]], methods: Sequence[MethodSpec],
          attack_list: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of the current grid in grid order (image, method, attack), one per key, from any number of journals."""
    by_key: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        by_key.setdefault(key_of(row), row)
    merged = []
    for name, _ in inputs:
        for spec in methods:
            for attack in attack_list:
                key = row_key(name, spec.describe(), attack)
                if key in by_key:
                    merged.append(by_key[key])
    return merged


#: Files a run writes in OUT besides the journals; ``overwrite`` removes them with the journals.
REPORT_FILES = ("results.csv", "results.json", "report.html", "robustness_watermark.png", "robustness_protection.png",
                "quality_robustness.png")
_GRID_KEYS = ("images", "methods", "attacks", "judges")
_GROWABLE = ("images", "methods", "attacks")  # a run may add to these and resume; dropping one loses its rows


def run_record(config: EvalConfig, inputs: Sequence[tuple[str, Any]], methods: Sequence[MethodSpec],
               attack_list: Sequence[Any]) -> dict[str, Any]:
    """What makes two runs the same run: the settings that change the numbers and the grid itself."""
    record = dict(config.fingerprint())
    record.update(images=[name for name, _ in inputs], methods=[spec.describe() for spec in methods],
                  attacks=[attack.describe() for attack in attack_list], judges=list(config.judges))
    return record


def _unique(values) -> list[Any]:
    return list(dict.fromkeys(values))


def _previous_record(output: Path) -> dict[str, Any] | None:
    """The record of the run that wrote ``output``, or None when it holds none."""
    meta = output / "rows" / "run.json"
    if not meta.exists():
        return None
    try:
        previous = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PhotoshieldError(f"{meta}: unreadable run record ({error}); remove it, or pass --overwrite") from None
    if "images" not in previous and (output / "results.json").exists():  # recorded before the grid was: read it back
        try:
            rows = json.loads((output / "results.json").read_text(encoding="utf-8")).get("rows", [])
        except (OSError, json.JSONDecodeError, AttributeError):
            rows = []
        if rows:
            previous.update(images=_unique(row.get("image") for row in rows), methods=_unique(row.get("method") for row in rows),
                            attacks=_unique(row.get("attack") for row in rows))
    return previous


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _change(key: str, old: Any, new: Any) -> str:
    if isinstance(old, list) and isinstance(new, list):
        added, removed = [v for v in new if v not in old], [v for v in old if v not in new]
        parts = [f"+{', '.join(map(str, added[:3]))}{' ...' if len(added) > 3 else ''}" if added else "",
                 f"-{', '.join(map(str, removed[:3]))}{' ...' if len(removed) > 3 else ''}" if removed else ""]
        detail = " ".join(part for part in parts if part) or "reordered"
        return f"{key} {detail}"
    return f"{key} {_shorten(old)} -> {_shorten(new)}"


def conflict(output: Path, record: dict[str, Any]) -> str | None:
    """Why ``output`` cannot be resumed with ``record`` (it holds a different run), or None."""
    previous = _previous_record(output)
    if previous is None:
        leftovers = [name for name in REPORT_FILES if (output / name).exists()]
        if leftovers:
            return f"holds {', '.join(leftovers)} of another run (no run record in rows/run.json)"
        return None
    changed = []
    for key in _unique([*record, *previous]):
        old, new = previous.get(key), record.get(key)
        if key in _GRID_KEYS and key not in previous:  # a record written before the grid was recorded
            continue
        if key in _GROWABLE and isinstance(old, list) and isinstance(new, list):
            if all(item in new for item in old):  # the same grid, or a larger one: its rows stay in the report
                continue
        elif old == new:
            continue
        changed.append(_change(key, old, new))
    return f"holds results made with other settings ({'; '.join(changed)})" if changed else None


def clear(output: Path) -> None:
    """Remove a previous run's journals, run record and report files (nothing else in the folder)."""
    for path in [*sorted((output / "rows").glob("rows-*.jsonl")), output / "rows" / "run.json", *(output / n for n in REPORT_FILES)]:
        path.unlink(missing_ok=True)


def prepare_output(output: Path, record: dict[str, Any], state: Any, overwrite: bool) -> None:
    """Refuse a folder holding another run's results (unless ``overwrite``), then record this run in it."""
    problem = conflict(output, record)  # every process reads before the main process writes
    if problem and not overwrite:
        raise PhotoshieldError(
            f"{output}: {problem}; choose another output folder, or pass --overwrite (overwrite=True in Python) to replace them"
        )
    state.wait_for_everyone()
    if state.is_main_process:
        if problem:
            clear(output)
        atomic_write(output / "rows" / "run.json", json.dumps(record, sort_keys=True).encode("utf-8"))
    state.wait_for_everyone()
