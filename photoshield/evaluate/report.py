"""Reports of a robustness run: ``results.csv``, ``results.json``, SVG figures and ``report.html``.

``write_report(rows, columns, folder)`` writes them all (atomically) and returns their paths.
Figures use matplotlib's Agg backend (no display): one figure per measured quantity (bit accuracy,
each face judge's identity score with its same-person threshold, segmentation and edit agreement),
with a panel per attack family whose x axis is the attack's own parameter (JPEG quality, scale,
sigma, ...); then quality against robustness, one panel per robustness measure. Failed rows are
grouped by message. ``figures(rows, columns)`` gives the figures as SVG text (e.g. for a notebook).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Figure", "figures", "group_errors", "quantities", "summarize", "write_csv", "write_json", "write_report"]


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


# ----------------------------------------------------------------------------- figures

#: The quantity each judge's ``identity_<judge>`` column holds, and its same-person threshold.
JUDGE_SCALES: dict[str, tuple[str, float]] = {"dlib_port": ("distance", 0.6), "dlib": ("distance", 0.6),
                                               "sface": ("cosine", 0.363)}
#: How the judges are called in the report.
JUDGE_LABELS = {"dlib_port": "dlib-port", "dlib": "dlib", "sface": "SFace"}
#: Families named the way people write them.
FAMILY_LABELS = {"jpeg": "JPEG", "jpeg-diff": "JPEG (differentiable)", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL",
                 "vae": "VAE round trip", "sdedit": "SDEdit", "diffpure": "DiffPure", "gridpure": "GrIDPure"}
#: What each attack parameter is, in words with its unit (the x axis of a panel).
PARAMETER_LABELS = {
    "quality": "quality (0-100)", "scale": "scale factor", "area": "share of the photo kept", "degrees": "degrees",
    "sigma": "sigma", "kernel": "kernel size (px)", "delta": "brightness shift (0-1)", "factor": "factor",
    "distortion": "corner shift (share of the side)", "p": "probability", "h": "filter strength h",
    "weight": "weight", "steps": "steps", "noise": "noise level (0-1)", "times": "times", "blend": "blend (0-1)",
    "guidance": "guidance scale", "iterations": "iterations",
}
SIGMA_LABELS = {"blur": "blur sigma (px)", "noise": "noise sigma (0-1 pixel units)"}


@dataclass(frozen=True)
class Quantity:
    """A measured column plotted against attack strength: its title, axis label and reference line."""

    column: str
    kinds: tuple[str, ...]  # the method kinds that have it
    title: str
    axis: str
    caption: str
    line: float | None = None  # a threshold or chance level drawn across every panel
    line_label: str = ""


def quantities(columns: Sequence[str]) -> list[Quantity]:
    """The quantities a run measured: bit accuracy (watermarks), each judge's identity score, segmentation and
    edit agreement (protections and the clean photo)."""
    found = []
    if "bit_accuracy" in columns:
        found.append(Quantity("bit_accuracy", ("baseline", "watermark"), "Watermarks: bit accuracy",
                              "bit accuracy (share of bits read back)",
                              "Share of the mark's bits read back from the attacked copy; the dashed line is chance (0.5).",
                              0.5, "chance"))
    for judge in _judges(columns):
        measure, threshold = JUDGE_SCALES.get(judge, ("score", None))
        name = JUDGE_LABELS.get(judge, judge)
        if measure == "distance":
            caption = (f"{name}'s distance between the attacked copy's face and the original face; the dashed line is its "
                       f"same-person threshold ({threshold:g}): above it the judge no longer sees the same person.")
        elif measure == "cosine":
            caption = (f"{name}'s cosine similarity between the attacked copy's face and the original face; the dashed line "
                       f"is its same-person threshold ({threshold:g}): below it the judge no longer sees the same person.")
        else:
            caption = f"{name}'s score of the attacked copy's face against the original face."
        found.append(Quantity(f"identity_{judge}", ("protect", "clean"), f"Identity: {name} judge",
                              f"{measure} to the original face ({name})", caption, threshold,
                              f"same person {'below' if measure == 'distance' else 'at or above'} {threshold:g}"
                              if threshold is not None else ""))
    if "seg_miou" in columns:
        found.append(Quantity("seg_miou", ("protect", "clean"), "Segmentation: mask agreement",
                              "mask IoU with the original's masks",
                              "Mean IoU of the attacked copy's masks against the original photo's; the dashed line (0.5) is "
                              "where a mask counts as broken.", 0.5, "mask broken below 0.5"))
    if "edit_psnr" in columns:
        found.append(Quantity("edit_psnr", ("protect", "clean"), "Editing: edit agreement",
                              "edit PSNR against the original's edit, dB",
                              "PSNR between the edit of the attacked copy and the edit of the original photo (100 = the "
                              "same edit); lower means the edit broke."))
    return found


def _spec_parameters(attack: str) -> tuple[str, dict[str, str]]:
    """(name, parameters) of a one-part attack spec such as ``jpeg:quality=50``."""
    name, _, arguments = attack.partition(":")
    parameters = {}
    for item in filter(None, arguments.split(",")):
        key, _, value = item.partition("=")
        parameters[key.strip()] = value.strip()
    return name.strip(), parameters


def x_axis(family: str, attacks: Sequence[str]) -> tuple[str, str | None, bool]:
    """(axis label, parameter or None for the strength s, whether the attack grows stronger as the value falls)
    for a panel: the family's one strength parameter in its own unit when it has exactly one."""
    from ..attacks import AttackError, attack_class

    if "+" not in family:
        try:
            ranges = attack_class(family).strength_range
        except AttackError:
            ranges = {}
        if len(ranges) == 1:
            (parameter, (low, high)), = ranges.items()
            if all(parameter in _spec_parameters(attack)[1] for attack in attacks):
                label = SIGMA_LABELS.get(family, PARAMETER_LABELS["sigma"]) if parameter == "sigma" else PARAMETER_LABELS.get(parameter, parameter)
                if parameter == "quality":
                    label = f"{FAMILY_LABELS.get(family, family)} {label}"
                return label, parameter, high < low
    return "attack strength s (0-1, the attack's own range)", None, False


@dataclass
class Figure:
    """A rendered figure: its file name, section title, caption and SVG text (ids ``panel-*``, ``data-*``,
    ``threshold-*`` mark the panels, their plotted lines and their reference lines)."""

    name: str
    title: str
    caption: str
    svg: str
    panels: list[str] = field(default_factory=list)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _svg(figure: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "photoshield"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # no XML prolog: the SVG is inlined in HTML


def _grid(count: int, width: float = 3.3, height: float = 2.7):
    plt = _pyplot()
    cols = min(4, count)
    lines = math.ceil(count / cols)
    figure, axes = plt.subplots(lines, cols, figsize=(width * cols, height * lines), squeeze=False, layout="constrained")
    flat = [axis for line in axes for axis in line]
    for axis in flat[count:]:
        axis.remove()
    return figure, flat[:count], cols


def _slug(text: str) -> str:
    """``"protections, SFace judge"`` -> ``"protections-sface-judge"``: for SVG ids."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def plot_quantity(rows: Sequence[dict[str, Any]], quantity: Quantity, colours: dict[str, Any]) -> Figure | None:
    """One panel per attack family: the quantity (mean over images) against the family's own parameter, a line
    per method, the method's unattacked value dotted, the reference line dashed. Families with no value dropped."""
    chosen = [row for row in rows if row.get("kind") in quantity.kinds and _finite(row.get(quantity.column))]
    unattacked: dict[str, list[float]] = defaultdict(list)
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in chosen:
        if row.get("family") == "identity":
            unattacked[row["method"]].append(row[quantity.column])
        else:
            families[row["family"]].append(row)
    if not families:
        return None
    plt = _pyplot()
    figure, axes, cols = _grid(len(families))
    names = sorted(families)
    for index, (axis, family) in enumerate(zip(axes, names)):
        label, parameter, falling = x_axis(family, [row["attack"] for row in families[family]])
        panel = f"{_slug(quantity.column)}-{_slug(family)}"
        axis.set_gid(f"panel-{panel}")
        methods = list(dict.fromkeys(row["method"] for row in families[family]))
        for number, method in enumerate(methods):
            points: dict[float, list[float]] = defaultdict(list)
            for row in families[family]:
                if row["method"] != method:
                    continue
                x = float(_spec_parameters(row["attack"])[1][parameter]) if parameter else row.get("strength")
                if _finite(x):
                    points[float(x)].append(row[quantity.column])
            xs = sorted(points)
            if not xs:
                continue
            (line,) = axis.plot(xs, [_mean(points[x]) for x in xs], marker="o", markersize=3, color=colours[method], label=method)
            line.set_gid(f"data-{panel}-{number}")
            if unattacked.get(method):
                axis.axhline(_mean(unattacked[method]), color=colours[method], linestyle=":", linewidth=1)
        if quantity.line is not None:
            axis.axhline(quantity.line, color="#c0392b", linestyle="--", linewidth=1).set_gid(f"threshold-{panel}")
        if falling:
            axis.invert_xaxis()  # the attack grows stronger to the right in every panel
        axis.set_title(FAMILY_LABELS.get(family, family), fontsize=9)
        axis.set_xlabel(label, fontsize=8)
        if index % cols == 0:  # the y label once per line of panels
            axis.set_ylabel(quantity.axis, fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", markersize=3, label=m) for m in colours
               if any(row["method"] == m for row in chosen if row.get("family") != "identity")]
    handles.append(plt.Line2D([], [], color="grey", linestyle=":", label="unattacked (the method's own output)"))
    if quantity.line is not None:
        handles.append(plt.Line2D([], [], color="#c0392b", linestyle="--", label=quantity.line_label))
    figure.legend(handles=handles, loc="outside upper center", ncol=min(4, len(handles)), fontsize=7)
    svg = _svg(figure)
    plt.close(figure)
    return Figure(f"{quantity.column}.svg", quantity.title,
                  quantity.caption + " Every panel is one attack family; the attack grows stronger to the right.",
                  svg, [f"{_slug(quantity.column)}-{_slug(family)}" for family in names])


def plot_quality(summary: Sequence[dict[str, Any]], columns: Sequence[str], colours: dict[str, Any]) -> Figure | None:
    """Quality against robustness, one panel per robustness measure: the PSNR of each method's output against
    its mean bit accuracy under attack (watermarks), and against the share of attacked copies each judge no longer
    recognises (protections). Panels without a point are dropped."""
    panels = []
    watermarks = [(e["psnr"], e.get("bit_accuracy"), e["method"]) for e in summary
                  if e.get("kind") in ("baseline", "watermark") and _finite(e.get("psnr"))]
    panels.append(("watermarks", "mean bit accuracy under attack", [p for p in watermarks if _finite(p[1])], 0.5))
    for judge in _judges(columns):
        points = [(e["psnr"], e.get(f"protected_{judge}"), e["method"]) for e in summary
                  if e.get("kind") == "protect" and _finite(e.get("psnr"))]
        panels.append((f"protections, {JUDGE_LABELS.get(judge, judge)} judge",
                       f"share protected: attacked copies\n{JUDGE_LABELS.get(judge, judge)} no longer recognises",
                       [p for p in points if _finite(p[1])], None))
    panels = [panel for panel in panels if panel[2]]
    if not panels:
        return None
    plt = _pyplot()
    figure, axes, _ = _grid(len(panels), width=4.2, height=3.2)
    for axis, (title, label, points, line) in zip(axes, panels):
        panel = f"quality-{_slug(title)}"
        axis.set_gid(f"panel-{panel}")
        for number, (x, y, method) in enumerate(points):
            axis.scatter([x], [y], color=colours.get(method), label=method).set_gid(f"data-{panel}-{number}")
        if line is not None:
            axis.axhline(line, color="#c0392b", linestyle="--", linewidth=1).set_gid(f"threshold-{panel}")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("PSNR of the output, dB (higher: less visible)", fontsize=8)
        axis.set_ylabel(label, fontsize=8)
        axis.set_ylim(-0.05, 1.05)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    svg = _svg(figure)
    plt.close(figure)
    return Figure("quality_robustness.svg", "Quality against robustness",
                  "Each point is a method: the PSNR of its output (right: less visible) against how well it holds up "
                  "under the attacks (mean over every attacked row). Watermarks: the dashed line is chance.",
                  svg, [f"quality-{_slug(panel[0])}" for panel in panels])


def figures(rows: Sequence[dict[str, Any]], columns: Sequence[str], summary: Sequence[dict[str, Any]] | None = None) -> list[Figure]:
    """Every figure of a report: one per measured quantity (a panel per attack family), then quality against
    robustness. A figure with nothing to show is left out."""
    import matplotlib

    summary = summarize(rows, columns) if summary is None else summary
    palette = matplotlib.colormaps["tab10"]
    methods = list(dict.fromkeys(row["method"] for row in rows))
    colours = {method: palette(number % 10) for number, method in enumerate(methods)}
    made = [plot_quantity(rows, quantity, colours) for quantity in quantities(columns)]
    made.append(plot_quality(summary, columns, colours))
    return [figure for figure in made if figure is not None]


# ----------------------------------------------------------------------------- the page

#: Column headings of the summary table, in words.
SUMMARY_LABELS = {
    "method": "method", "kind": "kind", "images": "images", "rows": "rows", "errors": "failed rows",
    "psnr": "PSNR of the output (dB)", "ssim": "SSIM of the output", "bit_accuracy": "bit accuracy under attack",
    "detected": "share detected under attack", "seg_miou": "mask IoU under attack",
    "edit_psnr": "edit PSNR, unattacked (dB)", "edit_psnr_attacked": "edit PSNR, under attack (dB)",
}


def _heading(key: str) -> str:
    if key.startswith("protected_"):
        judge = key[len("protected_"):]
        return f"share protected under attack ({JUDGE_LABELS.get(judge, judge)})"
    return SUMMARY_LABELS.get(key, key)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(entries: Sequence[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(key for entry in entries for key in entry))
    head = "".join(f"<th title='{html.escape(key)}'>{html.escape(_heading(key))}</th>" for key in keys)
    body = "".join("<tr>" + "".join(f"<td>{_format(entry.get(key, ''))}</td>" for key in keys) + "</tr>" for entry in entries)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def group_errors(rows: Sequence[dict[str, Any]]) -> list[tuple[str, int, list[str], list[str]]]:
    """Failed rows grouped by their message: (status, count, methods, images), the most frequent first."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if str(row.get("status", "")).startswith("error"):
            groups[str(row["status"])].append(row)
    found = [(status, len(group), list(dict.fromkeys(str(r["method"]) for r in group)),
              list(dict.fromkeys(str(r["image"]) for r in group))) for status, group in groups.items()]
    return sorted(found, key=lambda item: -item[1])


def _listing(values: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(html.escape(value) for value in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _errors_section(rows: Sequence[dict[str, Any]]) -> str:
    groups = group_errors(rows)
    if not groups:
        return ""
    items = "".join(f"<li class='error-group'><strong>{count} x</strong> {html.escape(status)}<br>"
                    f"<small>methods: {_listing(methods)}; images: {_listing(images)}</small></li>"
                    for status, count, methods, images in groups)
    return f"<h2>Errors</h2><ul>{items}</ul>"


def write_report(rows: Sequence[dict[str, Any]], columns: Sequence[str], folder: str | os.PathLike, config: dict[str, Any] | None = None) -> dict[str, str]:
    """Write results.csv, results.json, one SVG per figure and report.html (figures inlined) under ``folder``;
    returns name -> path."""
    folder = Path(folder)
    summary = summarize(rows, columns)
    files = {
        "csv": str(write_csv(rows, columns, folder / "results.csv")),
        "json": str(write_json({"columns": list(columns), "rows": list(rows), "summary": summary, "config": config or {}}, folder / "results.json")),
    }
    sections = []
    for figure in figures(rows, columns, summary):
        _atomic_write(folder / figure.name, figure.svg.encode("utf-8"))
        files[figure.name] = str(folder / figure.name)
        sections.append(f"<section class='figure' id='{html.escape(figure.name[:-4])}'><h2>{html.escape(figure.title)}</h2>"
                        f"<p>{html.escape(figure.caption)}</p>{figure.svg}</section>")
    errors = sum(count for _, count, _, _ in group_errors(rows))
    failed = f"<p><strong>{errors} of {len(rows)} rows failed</strong> (status <code>error: ...</code>; grouped under Errors).</p>" if errors else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>photoshield robustness report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}th{{background:#eee}}svg{{max-width:100%;height:auto}}</style></head>
<body><h1>photoshield robustness report</h1>
<p>{len(rows)} rows: {len({row['image'] for row in rows})} images x {len({row['method'] for row in rows})} methods x
{len({row['attack'] for row in rows})} attacks. Full rows: <a href="results.csv">results.csv</a>, <a href="results.json">results.json</a>.
Identity: dlib-port and dlib give a distance (same person below 0.6), SFace a cosine similarity (same person at or above 0.363);
"share protected" is the share of attacked copies whose face the judge no longer recognises.</p>
{failed}
<h2>Summary</h2>{_table(summary)}
{''.join(sections)}
{_errors_section(rows)}
</body></html>
"""
    _atomic_write(folder / "report.html", page.encode("utf-8"))
    files["html"] = str(folder / "report.html")
    return files
