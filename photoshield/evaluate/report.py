"""Reports of a robustness run: ``results.csv``, ``results.json``, PNG plots and ``report.html``.

``write_report(rows, columns, folder)`` writes them all (atomically) and returns their paths.
Plots use matplotlib's Agg backend (no display): robustness against attack strength per
attack family, quality against robustness per method, and a summary table per method.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

__all__ = ["summarize", "write_csv", "write_json", "write_report"]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(data)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; reports are ordinary files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")
    return str(value)


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> Path:
    """One line per row, the given columns in order; empty cells for measurements a row does not have."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    path = Path(path)
    _atomic_write(path, buffer.getvalue().encode("utf-8"))
    return path


def _strict(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null (a PSNR of an untouched image is +inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json(document: dict[str, Any], path: str | os.PathLike) -> Path:
    """Strict JSON (non-finite numbers as null), keys in insertion order."""
    path = Path(path)
    _atomic_write(path, (json.dumps(_strict(document), indent=1, allow_nan=False) + "\n").encode("utf-8"))
    return path


def _mean(values: Sequence[Any]) -> float:
    values = [float(v) for v in values if _finite(v)]
    return sum(values) / len(values) if values else float("nan")


def _judges(columns: Sequence[str]) -> list[str]:
    return [column[len("identity_") : -len("_same")] for column in columns if column.startswith("identity_") and column.endswith("_same")]


def summarize(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: images, rows, errors, mean PSNR/SSIM of its output, and over the attacked rows
    the mean bit accuracy and detection rate (watermarks) or, per judge, the share of faces no longer
    recognised (``protected_<judge>``), the mean segmentation IoU, and the mean edit PSNR against the
    clean photo's edit (``edit_psnr`` unattacked, ``edit_psnr_attacked`` under attack)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["method"]].append(row)
    summary = []
    for method, group in groups.items():
        ok = [row for row in group if not str(row.get("status", "")).startswith("error")]
        attacked = [row for row in ok if row.get("attack") != "identity"]
        entry: dict[str, Any] = {
            "method": method,
            "kind": group[0].get("kind"),
            "images": len({row["image"] for row in group}),
            "rows": len(group),
            "errors": len(group) - len(ok),
            "psnr": _mean([row.get("psnr") for row in ok if row.get("attack") == "identity"]),
            "ssim": _mean([row.get("ssim") for row in ok if row.get("attack") == "identity"]),
        }
        if entry["kind"] in ("baseline", "watermark"):
            entry["bit_accuracy"] = _mean([row.get("bit_accuracy") for row in attacked])
            detected = [row["detected"] for row in attacked if row.get("detected") is not None]
            entry["detected"] = sum(map(bool, detected)) / len(detected) if detected else float("nan")
        else:
            for judge in _judges(columns):
                same = [row.get(f"identity_{judge}_same") for row in attacked]
                same = [value for value in same if value is not None]
                entry[f"protected_{judge}"] = sum(not value for value in same) / len(same) if same else float("nan")
            if "seg_miou" in columns:
                entry["seg_miou"] = _mean([row.get("seg_miou") for row in attacked])
            if "edit_psnr" in columns:  # the edit of the method's output, then of its attacked copies
                entry["edit_psnr"] = _mean([row.get("edit_psnr") for row in ok if row.get("attack") == "identity"])
                entry["edit_psnr_attacked"] = _mean([row.get("edit_psnr") for row in attacked])
        summary.append(entry)
    return summary


def _robustness_metric(kind: str, columns: Sequence[str]) -> tuple[str, str] | None:
    """(column, label) plotted for a method kind: bit accuracy for watermarks, the first judge's score otherwise."""
    if kind in ("baseline", "watermark"):
        return "bit_accuracy", "bit accuracy"
    judges = _judges(columns)
    if judges:
        return f"identity_{judges[0]}", f"identity score ({judges[0].replace('_', '-')})"
    if "seg_miou" in columns:
        return "seg_miou", "segmentation mIoU"
    return None


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def plot_robustness(rows: Sequence[dict[str, Any]], columns: Sequence[str], kinds: Sequence[str]) -> bytes | None:
    """One panel per attack family: the metric (mean over images) against strength, a line per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    chosen = [row for row in rows if row.get("kind") in kinds and _finite(row.get("strength"))]
    metric = _robustness_metric(kinds[0], columns)
    if not chosen or metric is None:
        return None
    column, label = metric
    families = sorted({row["family"] for row in chosen if row["family"] != "identity"})
    if not families:
        return None
    baseline = defaultdict(list)  # strength 0: the method's own output, shared by every family
    for row in chosen:
        if row["family"] == "identity":
            baseline[row["method"]].append(row.get(column))
    cols = min(4, len(families))
    lines = math.ceil(len(families) / cols)
    figure, axes = plt.subplots(lines, cols, figsize=(3.2 * cols, 2.6 * lines), squeeze=False, sharey=True,
                               layout="constrained")
    methods = list(dict.fromkeys(row["method"] for row in chosen))
    for number, family in enumerate(families):
        axis = axes[number // cols][number % cols]
        for method in methods:
            points = defaultdict(list)
            for row in chosen:
                if row["method"] == method and row["family"] == family:
                    points[row["strength"]].append(row.get(column))
            if method in baseline:
                points[0.0] += baseline[method]
            xs = sorted(points)
            ys = [_mean(points[x]) for x in xs]
            if any(math.isfinite(y) for y in ys):
                axis.plot(xs, ys, marker="o", markersize=3, label=method)
        axis.set_title(family, fontsize=9)
        axis.set_xlabel("attack strength s", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for number in range(len(families), lines * cols):
        axes[number // cols][number % cols].axis("off")
    for line in axes:
        line[0].set_ylabel(label, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(3, max(len(labels), 1)), fontsize=7, bbox_to_anchor=(0.5, 1.0))
    png = _figure_png(figure)
    plt.close(figure)
    return png


def plot_quality(summary: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes | None:
    """Quality (PSNR of the method's output) against robustness (bit accuracy / share protected under attack)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    judges = _judges(columns)
    points = []
    for entry in summary:
        if not _finite(entry.get("psnr")):
            continue
        if entry["kind"] in ("baseline", "watermark"):
            value, marker = entry.get("bit_accuracy"), "s"
        elif judges:
            value, marker = entry.get(f"protected_{judges[0]}"), "o"
        else:
            continue
        if _finite(value):
            points.append((entry["psnr"], value, entry["method"], marker))
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for x, y, method, marker in points:
        axis.scatter([x], [y], marker=marker, label=method)
    axis.set_xlabel("PSNR of the output, dB (higher: less visible)")
    title = "squares: mean bit accuracy under attack"
    if judges:
        title += f"; dots: share protected under attack ({judges[0].replace('_', '-')})"
    axis.set_title(title, fontsize=8)
    axis.set_ylabel("robustness")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    png = _figure_png(figure)
    plt.close(figure)
    return png


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(entries: Sequence[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(key for entry in entries for key in entry))
    head = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    body = "".join("<tr>" + "".join(f"<td>{_format(entry.get(key, ''))}</td>" for key in keys) + "</tr>" for entry in entries)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(rows: Sequence[dict[str, Any]], columns: Sequence[str], folder: str | os.PathLike, config: dict[str, Any] | None = None) -> dict[str, str]:
    """Write results.csv, results.json, the plots and report.html under ``folder``; returns name -> path."""
    folder = Path(folder)
    summary = summarize(rows, columns)
    files = {
        "csv": str(write_csv(rows, columns, folder / "results.csv")),
        "json": str(write_json({"columns": list(columns), "rows": list(rows), "summary": summary, "config": config or {}}, folder / "results.json")),
    }
    plots = {
        "robustness_watermark.png": ("Watermarks: bit accuracy against attack strength", plot_robustness(rows, columns, ["baseline", "watermark"])),
        "robustness_protection.png": ("Protections: identity against attack strength", plot_robustness(rows, columns, ["protect", "clean"])),
        "quality_robustness.png": ("Quality against robustness", plot_quality(summary, columns)),
    }
    sections = []
    for name, (title, png) in plots.items():
        if png is None:
            continue
        _atomic_write(folder / name, png)
        files[name] = str(folder / name)
        encoded = base64.b64encode(png).decode("ascii")
        sections.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>")
    errors = [row for row in rows if str(row.get("status", "")).startswith("error")]
    error_list = "".join(f"<li>{html.escape(str(row['image']))} / {html.escape(str(row['method']))} / {html.escape(str(row.get('attack', '')))}: "
                         f"{html.escape(str(row['status']))}</li>" for row in errors[:50])
    if len(errors) > 50:
        error_list += f"<li>... and {len(errors) - 50} more (results.csv lists them all)</li>"
    failed = f"<p><strong>{len(errors)} of {len(rows)} rows failed</strong> (status <code>error: ...</code>; listed under Errors).</p>" if errors else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>photoshield robustness report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}th{{background:#eee}}img{{max-width:100%}}</style></head>
<body><h1>photoshield robustness report</h1>
<p>{len(rows)} rows: {len({row['image'] for row in rows})} images x {len({row['method'] for row in rows})} methods x
{len({row['attack'] for row in rows})} attacks. Full rows: <a href="results.csv">results.csv</a>, <a href="results.json">results.json</a>.
Identity scores: dlib-port/dlib are distances (same person below 0.6), sface a cosine (same person at or above 0.363);
"protected_*" is the share of attacked rows whose face the judge no longer recognises.</p>
{failed}
<h2>Summary</h2>{_table(summary)}
{''.join(sections)}
{f'<h2>Errors</h2><ul>{error_list}</ul>' if errors else ''}
</body></html>
"""
    _atomic_write(folder / "report.html", page.encode("utf-8"))
    files["html"] = str(folder / "report.html")
    return files
