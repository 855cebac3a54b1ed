"""The ``photoshield`` command line: ``info``, ``models``, ``attack``, ``protect``, ``evaluate``, ``watermark``, ``demo``, ``app``.

Every error photoshield raises on purpose prints one line and exits non-zero;
tracebacks are kept for real bugs (set PHOTOSHIELD_DEBUG=1 to see them always).
Exit status: 0 done; 1 some files (or evaluation rows) failed, or a photo came out unchanged,
the rest being done (a folder run goes on past a bad file and lists the failures at the end);
2 bad arguments or input, checked before any work; 130 Ctrl-C (the photo being worked on is
not written; the files done so far are listed).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import PhotoshieldError

EXIT_FAILED = 1  # some files or rows failed, or a photo came out unchanged; the rest was done
EXIT_ERROR = 2  # nothing was done: bad arguments or input
EXIT_INTERRUPTED = 130


def _parse_value(text: str) -> Any:
    """Turn a command-line value into an int, float, bool or string."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_extra_params(tokens: Sequence[str]) -> dict[str, Any]:
    """Parse ``--key value`` / ``--key=value`` / ``--flag`` tokens into keyword parameters."""
    params: dict[str, Any] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or len(token) <= 2:
            raise PhotoshieldError(f"unexpected argument {token!r}; parameters are given as --name value")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            params[key.replace("-", "_")] = _parse_value(value)
            index += 1
            continue
        if index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
            params[key.replace("-", "_")] = _parse_value(tokens[index + 1])
            index += 2
        else:
            params[key.replace("-", "_")] = True
            index += 1
    return params


# ----------------------------------------------------------------------------- info / models


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from . import __version__
    from .models import checkpoints, default_device, find

    versions = {"photoshield": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for module in ("diffusers", "transformers", "accelerate", "kornia", "imagecodecs", "PIL", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # a missing optional module is reported, not fatal
            versions[module] = "not installed"
    for name, version in versions.items():
        print(f"{name:13s} {version}")
    print(f"{'device':13s} {default_device()}")
    models = checkpoints()
    present = [c.name for c in models if find(c.name) is not None]
    print(f"{'models':13s} {len(present)} of {len(models)} present: {', '.join(present) or 'none'}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    """The model registry as a table: name, present, task and license in 100 columns (``--long``: every
    field in full, with the source)."""
    from .models import checkpoints, find

    rows = [("name", "present", "task", "license", "source")]
    for checkpoint in checkpoints():
        location = find(checkpoint.name)
        rows.append((checkpoint.name, "yes" if location else "no", checkpoint.task, checkpoint.license, checkpoint.source))
    if not getattr(args, "long", False):
        rows = [(name, present, task, license.split(" (")[0]) for name, present, task, license, _ in rows]  # licence, no note
        fixed = max(len(row[0]) for row in rows) + len("present") + max(len(row[3]) for row in rows) + 3 * 2
        task_width = max(16, MODELS_LIST_WIDTH - fixed)
        rows = [(name, present, _clip(task, task_width), license) for name, present, task, license in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


MODELS_LIST_WIDTH = 100


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in "..." when cut."""
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


# ----------------------------------------------------------------------------- files and folders

LOSSY_EXTENSIONS = {".jpg", ".jpeg", ".webp", ".avif", ".jxl"}


def _output_path(source: Path, input_root: Path | None, output: Path, fmt: str | None) -> Path:
    """Where the output for ``source`` goes: mirror folders, optionally change the extension."""
    target = output / source.relative_to(input_root) if input_root is not None else output
    return target.with_suffix("." + fmt.lstrip(".")) if fmt else target


def plan_outputs(inputs: Path, output: Path, fmt: str | None, output_is_folder: bool = False) -> tuple[list[tuple[Path, Path]], bool]:
    """(source, target) pairs for a file or every image of a folder (mirrored), and whether IN is a folder.

    A single file goes to ``output`` itself, or into it when it is a folder (``output_is_folder``: the
    user wrote a trailing slash). ``fmt`` replaces the extension of every target.
    """
    from .errors import ImageError
    from .io import list_images

    if inputs.is_dir():
        files = list_images(inputs, recursive=True)
        if not files:
            raise PhotoshieldError(f"{inputs}: no images found in this folder")
        if output.exists() and not output.is_dir():
            raise PhotoshieldError(f"{output}: the input is a folder, so the output must be a folder too")
        return [(f, _output_path(f, inputs, output, fmt)) for f in files], True
    if not inputs.exists():
        raise ImageError(inputs, "file not found")
    target = output / inputs.name if output_is_folder or output.is_dir() else output
    return [(inputs, _output_path(inputs, None, target, fmt))], False


def check_outputs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Refuse, before any work, outputs that cannot be written: unknown extension, an input file, a folder,
    two inputs onto one output, or a place that is not a writable folder."""
    from .errors import ImageError
    from .io import SUPPORTED_WRITE_EXTENSIONS

    def identity(path: Path) -> tuple[int, int] | None:
        try:
            status = path.stat()
        except OSError:
            return None
        return status.st_dev, status.st_ino

    inputs = {identity(source) for source, _ in pairs} - {None}
    resolved_inputs = {source.resolve() for source, _ in pairs}
    claimed: dict[Path, Path] = {}
    folders: dict[Path, None] = {}
    for source, target in pairs:
        if target.suffix.lower() not in SUPPORTED_WRITE_EXTENSIONS:
            known = ", ".join(sorted(SUPPORTED_WRITE_EXTENSIONS))
            raise ImageError(target, f"unknown output extension {target.suffix!r}; use one of {known} (or --format EXT)")
        if target.is_dir():
            raise ImageError(target, "is a directory; give a file name for the output")
        if identity(target) in inputs or target.resolve() in resolved_inputs:
            raise ImageError(target, "refusing to overwrite an input file; write to another path")
        resolved = target.resolve()
        if resolved in claimed:
            raise ImageError(target, f"both {claimed[resolved]} and {source} would be written here; choose another output or --format")
        claimed[resolved] = source
        folders.setdefault(target.parent, None)
    for folder in folders:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ImageError(existing, "is not a folder, so the output cannot be written under it")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ImageError(existing, "cannot write in this folder (permission denied)")


def warn_if_lossy(pairs: Sequence[tuple[Path, Path]], what: str) -> None:
    """One warning when any output is in a lossy format."""
    if any(target.suffix.lower() in LOSSY_EXTENSIONS for _, target in pairs):
        print(f"photoshield: warning: lossy output (JPEG/WebP/AVIF/JXL) weakens the {what}; PNG keeps it intact", file=sys.stderr)


#: Errors that fail one file of a folder run (recorded, the run goes on). Missing or corrupt weights
#: fail every file alike: they stop the run.
_FILE_ERRORS = (PhotoshieldError, OSError, ValueError, KeyError, MemoryError)


@dataclass
class BatchOutcome:
    """What a file or folder run did: files written, files that failed (with the reason), where Ctrl-C stopped it."""

    total: int
    done: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: Path | None = None


def _naming(source: Path, error: BaseException) -> str:
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error) or type(error).__name__
    return message if str(source) in message else f"{source}: {message}"


def run_batch(pairs: Sequence[tuple[Path, Path]], work: Callable[[Path, Path], None], desc: str, folder: bool,
              progress: bool = True) -> BatchOutcome:
    """Run ``work(source, target)`` on every pair. In a folder run a file that fails is recorded and the run
    goes on; a single file's error is raised as it is. Ctrl-C (KeyboardInterrupt) stops the run at once.
    Two or more files show a bar labelled ``desc`` counting photos (``progress=False``: none)."""
    from .progress import tqdm

    from .errors import ChecksumError, ModelNotFoundError

    outcome = BatchOutcome(total=len(pairs))
    for source, target in tqdm(pairs, desc=desc, unit="photo", disable=len(pairs) < 2 or not progress):
        try:
            work(source, target)
        except KeyboardInterrupt:
            outcome.interrupted = source
            break
        except (ModelNotFoundError, ChecksumError):
            raise
        except _FILE_ERRORS as error:
            if not folder:
                raise
            outcome.failed.append((source, _naming(source, error)))
        else:
            outcome.done.append((source, target))
    return outcome


def finish_batch(outcome: BatchOutcome) -> int:
    """Print the failures or the interruption of a run; its exit status (0, 1 failures, 130 interrupted)."""
    for _, reason in outcome.failed:
        print(f"photoshield: error: {reason}", file=sys.stderr)
    if outcome.interrupted is not None:
        left = outcome.total - len(outcome.done) - len(outcome.failed) - 1
        print(f"photoshield: interrupted while processing {outcome.interrupted} (not written); "
              f"{len(outcome.done)} of {outcome.total} files done, {len(outcome.failed)} failed, {left} not started", file=sys.stderr)
        for source, target in outcome.done:
            print(f"  done: {source} -> {target}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.failed:
        print(f"photoshield: {len(outcome.failed)} of {outcome.total} files failed (listed above); "
              f"{len(outcome.done)} written", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _say(text: str, err: bool = False) -> None:
    """Print a line to stdout (``err``: stderr) without breaking a progress bar, and flush it: a report reaches
    a pipe (``| tee log``) as the photo finishes, not when the run ends."""
    from .progress import tqdm

    stream = sys.stderr if err else sys.stdout
    tqdm.write(text, file=stream)
    stream.flush()


# ----------------------------------------------------------------------------- attack


def cmd_attack(args: argparse.Namespace, extra: list[str]) -> int:
    import torch

    from . import attacks
    from .io import read_photo, write_image

    if args.list:
        for name in attacks.names():
            print(name)
        return 0
    if args.input is None or args.output is None or args.name is None:
        raise PhotoshieldError("attack needs IN, -o OUT and --name NAME (see `photoshield attack --list`)")
    params = parse_extra_params(extra)
    if args.strength is not None:
        params["strength"] = args.strength
    attack = attacks.get(args.name, **params)
    pairs, folder = plan_outputs(Path(args.input), Path(args.output), args.format, _names_a_folder(args.output))
    check_outputs(pairs)
    generator = torch.Generator().manual_seed(args.seed)

    def work(source: Path, target: Path) -> None:
        photo = read_photo(source)
        with torch.no_grad():
            attacked = attack(photo.pixels, generator=generator)
        write_image(attacked, target, metadata=photo)

    outcome = run_batch(pairs, work, desc=f"attack {args.name}", folder=folder)
    if folder:
        print(f"wrote {len(outcome.done)} images under {args.output}")
    else:
        for _, target in outcome.done:
            print(f"wrote {target}")
    return finish_batch(outcome)


def _names_a_folder(output: str | None) -> bool:
    """``-o out/``: a trailing separator says the output is a folder, even before it exists."""
    return bool(output) and output.endswith(("/", os.sep))


# ----------------------------------------------------------------------------- protect


def _default_protect_output(source: Path) -> Path:
    if source.is_dir():
        return source.with_name(source.name + "_protected")
    return source.with_name(f"{source.stem}.protected.png")


def format_report(report: dict[str, Any]) -> str:
    """A protection report in plain language, indented under the photo's name (``--json`` gives the raw one)."""
    from .reporting import protection_text

    return "\n".join(f"  {line}" for line in protection_text(report).splitlines())


def check_report_path(report: str | None, overwrite: bool, pairs: Sequence[tuple[Path, Path]]) -> Path | None:
    """Refuse, before any work, a ``--report`` path that is not .json/.csv, exists (without ``--overwrite``),
    or is one of the photos read or written."""
    if report is None:
        return None
    path = Path(report)
    if path.suffix.lower() not in (".json", ".csv"):
        raise PhotoshieldError(f"--report {report}: give a .json or .csv file name")
    if path.is_dir():
        raise PhotoshieldError(f"--report {report}: is a folder; give a .json or .csv file name")
    if path.resolve() in {p.resolve() for pair in pairs for p in pair}:
        raise PhotoshieldError(f"--report {report}: is one of the photos read or written")
    if path.exists() and not overwrite:
        raise PhotoshieldError(f"--report {report}: already exists; pass --overwrite to replace it")
    return path


#: The classes and functions whose keyword parameters each protection method accepts (with the
#: registered builder's own): unknown ``--name value`` flags are refused before any work.
_METHOD_SIGNATURES = {
    "facial": ("photoshield.protect.facial:FacialProtection",),
    "encoder": ("photoshield.protect.encoder:EncoderProtection",),
    "attention": ("photoshield.protect.attention:attention_objective", "photoshield.protect.attention:AttentionProtection"),
    "deformation": ("photoshield.protect.deformation:deformation_objective", "photoshield.protect.deformation:DeformationProtection"),
}
#: Engine settings protect() takes besides the method's own (PGDConfig fields are added).
_ENGINE_PARAMETERS = {"shaping", "eot", "step_fraction", "device"}
#: Set by the command line itself (--epsilon, --steps, --seed, ...) or internal.
_OWNED_PARAMETERS = {"self", "images", "method", "epsilon", "psnr", "steps", "preset", "seed", "progress", "description"}


def protect_parameters(method: str) -> list[str] | None:
    """The ``--name value`` parameters ``protect --method METHOD`` accepts, or None when that cannot be told."""
    import dataclasses
    import importlib
    import inspect

    from .protect import api
    from .protect.optim import PGDConfig

    callables = [api._METHODS[method]]
    for reference in _METHOD_SIGNATURES.get(method, ()):
        module, _, name = reference.partition(":")
        target = getattr(importlib.import_module(module), name)
        callables.append(target.__init__ if inspect.isclass(target) else target)
    names = set(_ENGINE_PARAMETERS) | {f.name for f in dataclasses.fields(PGDConfig)}
    open_ended = False
    for function in callables:  # each passes its **options on to the next; the last one's are the end of the line
        parameters = inspect.signature(function).parameters.values()
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        names |= {p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return None if open_ended else sorted(names - _OWNED_PARAMETERS)


def check_protect_options(method: str, options: dict[str, Any]) -> None:
    """Refuse parameters the method does not have, naming the valid ones."""
    valid = protect_parameters(method)
    if valid is None:
        return
    unknown = [key for key in options if key not in valid]
    if unknown:
        flags = ", ".join("--" + key.replace("_", "-") for key in unknown)
        raise PhotoshieldError(
            f"protect --method {method}: unknown parameter{'s' if len(unknown) > 1 else ''} {flags}; "
            f"valid: {', '.join('--' + key.replace('_', '-') for key in valid)}"
        )


PROTECT_DESCRIPTION = """\
Add an imperceptible change to a photo so that AI models cannot use it: face recognition and
face swaps lose the face (the default, --method facial), diffusion editors produce broken
edits, segmentation cannot cut it out. Writes PNG (IN.protected.png next to the photo, or
IN_protected/ for a folder), never overwrites the input, and prints what the protection
achieved for each photo as it finishes; a folder ends with one table. Method options are
passed as --name value flags."""

def _describe_presets_in_help(parser: argparse.ArgumentParser) -> None:
    """Add :func:`preset_help` to ``parser``'s help when the help is shown (it reads the presets, which imports
    torch: not on every command line)."""
    plain = parser.format_help

    def format_help() -> str:
        from .reporting import preset_help

        parser.epilog = preset_help() + "\n\n" + PROTECT_EPILOG
        return plain()

    parser.format_help = format_help  # type: ignore[method-assign]


PROTECT_EPILOG = """\
exit status: 0 done; 1 a file failed or a photo came out unchanged (the others are still
done); 2 bad arguments; 130 Ctrl-C (the photo being protected is not written)."""


def cmd_protect(args: argparse.Namespace, extra: list[str]) -> int:
    import json
    import time

    from .io import read_photo, write_image
    from .protect import protect
    from .protect.api import PRESETS, methods
    from .reporting import PhotoEntry, batch_table, json_document, write_batch_report

    if args.method not in methods():
        raise PhotoshieldError(f"unknown protection method {args.method!r}; choose one of {', '.join(methods())}")
    if args.preset not in PRESETS:
        raise PhotoshieldError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    if args.epsilon is not None and not 0 < args.epsilon <= 255:
        raise PhotoshieldError(f"--epsilon is how much each pixel may change, out of 255 (e.g. 8); got {args.epsilon:g}")
    if args.psnr is not None and not 20 <= args.psnr <= 60:
        raise PhotoshieldError(f"--psnr is the quality floor in dB over the protected region, 20 to 60 (e.g. 35); got {args.psnr:g}")
    if args.steps is not None and args.steps < 0:
        raise PhotoshieldError(f"--steps must be 0 or more, got {args.steps}")
    options = parse_extra_params(extra)
    if args.editor:
        options["editor"] = args.editor
    if args.editor_kind:
        options["editor_kind"] = args.editor_kind
    check_protect_options(args.method, options)

    source = Path(args.input)
    output = Path(args.output) if args.output else _default_protect_output(source)
    into_folder = _names_a_folder(args.output) or (args.output is not None and output.is_dir())
    # PNG unless asked otherwise (--format, or a single output file named with another extension).
    fmt = args.format or ("png" if source.is_dir() or into_folder or not args.output else None)
    pairs, folder = plan_outputs(source, output, fmt, into_folder)
    check_outputs(pairs)
    report_path = check_report_path(args.report, args.overwrite, pairs)
    warn_if_lossy(pairs, "protection")
    entries: dict[Path, PhotoEntry] = {}

    def work(source: Path, target: Path) -> None:
        started = time.perf_counter()
        photo = read_photo(source)
        epsilon = None if args.epsilon is None else args.epsilon / 255.0
        result = protect(photo.pixels, method=args.method, epsilon=epsilon, psnr=args.psnr, steps=args.steps,
                         preset=args.preset, seed=args.seed, progress=not args.quiet, **options)
        if result.report.get("interrupted"):  # Ctrl-C stopped the optimisation: the photo is only partly done
            raise KeyboardInterrupt
        write_image(result.image, target, metadata=photo)
        unchanged = result.report.get("status") == "unchanged"
        entries[source] = PhotoEntry(str(source), str(target), "unchanged" if unchanged else "written",
                                     time.perf_counter() - started, report=result.report)
        if args.json:  # the raw report, one JSON document per line, as each photo finishes
            _say(json.dumps(json_document({"file": str(source), "output": str(target), "report": result.report})))
        else:
            _say(f"{source} -> {target}")
            _say(format_report(result.report))
        if unchanged:
            _say(f"photoshield: warning: {source}: unchanged, not protected: {result.report.get('reason')}", err=True)

    outcome = run_batch(pairs, work, desc="photos", folder=folder, progress=not args.quiet)
    for failed, reason in outcome.failed:
        entries[failed] = PhotoEntry(str(failed), status="failed", reason=reason)
    if outcome.interrupted is not None:
        entries[outcome.interrupted] = PhotoEntry(str(outcome.interrupted), status="interrupted", reason="not written")
    ordered = [entries[source] for source, _ in pairs if source in entries]
    if len(pairs) > 1 and not args.json:
        print("\n" + batch_table(ordered, root=source if folder else None))
    if report_path is not None:
        settings = {"method": args.method, "preset": args.preset, "epsilon_255": args.epsilon, "psnr": args.psnr, "steps": args.steps,
                    "seed": args.seed, "options": options}
        write_batch_report(ordered, report_path, settings)
        print(f"report: {report_path}", file=sys.stderr if args.json else sys.stdout)
    status = finish_batch(outcome)
    unchanged = [entry.file for entry in ordered if entry.status == "unchanged"]
    if unchanged and status != EXIT_INTERRUPTED:  # written as they came out, but not protected: say so in the status
        print(f"photoshield: {len(unchanged)} of {len(pairs)} photos came out unchanged (not protected): "
              f"{', '.join(unchanged[:5])}{' ...' if len(unchanged) > 5 else ''}", file=sys.stderr)
        return EXIT_FAILED
    return status


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run a robustness evaluation from a YAML config and/or flags; print where the report went.

    Exit status 1 when rows failed (their status is ``error: ...``), unless ``--allow-failures``.
    """
    from .evaluate.runner import EvalConfig, run

    config = EvalConfig.from_yaml(args.config) if args.config else EvalConfig()
    overrides = {
        "inputs": args.inputs, "methods": args.methods, "attacks": args.attacks, "output": args.output,
        "seed": args.seed, "max_inputs": args.max_inputs, "max_side": args.max_side, "judges": args.judges,
        "segmenter": args.segmenter, "device": args.device,
    }
    values = {**vars(config), **{key: value for key, value in overrides.items() if value is not None}}
    if args.quiet:
        values["progress"] = False
    if args.editor:
        editing = {"editor": args.editor, "kind": args.editor_kind, "prompt": args.edit_prompt}
        values["editing"] = {key: value for key, value in editing.items() if value is not None}
    config = EvalConfig.from_dict(values)
    summary = run(config, overwrite=args.overwrite)
    if not summary.files:  # not the main process: it reports
        return 0
    failed = getattr(summary, "failed", 0)
    print(f"{summary.rows} rows ({summary.computed} computed, {summary.skipped} already done"
          f"{f', {failed} failed' if failed else ''}) in {summary.output}")
    for name, path in summary.files.items():
        print(f"  {name:26s} {path}")
    if not failed:
        return 0
    level = "warning" if args.allow_failures else "error"
    hint = "" if args.allow_failures else "; --allow-failures accepts a report with failed rows"
    print(f"photoshield: {level}: {failed} of {summary.rows} rows failed (status 'error: ...' in results.csv and "
          f"report.html){hint}; most common reasons:", file=sys.stderr)
    reasons = list(getattr(summary, "failures", []))
    for reason, count in reasons[:3]:
        print(f"  {count} x {reason}", file=sys.stderr)
    if len(reasons) > 3:
        print(f"  ... and {len(reasons) - 3} other reasons", file=sys.stderr)
    return 0 if args.allow_failures else EXIT_FAILED


# ----------------------------------------------------------------------------- watermark

EXIT_NOT_DETECTED = 1


def cmd_watermark(args: argparse.Namespace) -> int:
    """``watermark embed IN -o OUT --message TEXT`` (a file or a folder) / ``watermark verify IN``: exit 0 detected, 1 not."""
    if args.watermark_command == "embed":
        return _watermark_embed(args)
    from .watermark import load, verify

    model = load(args.model, verify=not args.no_verify) if args.model else None
    if args.search and not args.message:
        raise PhotoshieldError("--search needs --message: the search ranks crops and rotations by the bits that match it")
    result = verify(args.input, message=args.message, key=args.key, fpr=args.fpr, model=model, search=args.search)
    from .reporting import verify_lines

    for label, text in verify_lines(result, args.message, args.key, searched=args.search):
        print(f"{label + ':':13s} {text}")
    return 0 if result.detected else EXIT_NOT_DETECTED


def _watermark_embed(args: argparse.Namespace) -> int:
    from .io import read_photo, write_image
    from .watermark import DEFAULT_REFINE_STEPS, embed, load, payload

    model = load(args.model or "watermark-diffmark", verify=not args.no_verify)
    # A message or key the payload cannot carry fails every file alike: refuse it before any work.
    payload.encode(args.message, key=args.key, schema=payload.get_schema(model.n_bits, getattr(model.config, "schema_version", 1)))
    pairs, folder = plan_outputs(Path(args.input), Path(args.output), args.format, _names_a_folder(args.output))
    check_outputs(pairs)
    warn_if_lossy(pairs, "watermark")
    through = []
    if args.refine_for_crops:
        from .watermark.sync import realigned_crops

        through = realigned_crops(seed=args.seed)

    from .metrics import psnr
    from .reporting import key_fingerprint

    _say(f"message {args.message!r}, key {key_fingerprint(args.key)}" + ("" if args.key is None else
         " (first 8 hex digits of its sha256: compare them to check you used the same key; the key itself stays secret)"))

    def work(source: Path, target: Path) -> None:
        photo = read_photo(source)
        marked = embed(photo.pixels, args.message, key=args.key, strength=args.strength, psnr=args.psnr, model=model,
                       seed=args.seed,
                       refine_steps=DEFAULT_REFINE_STEPS if args.refine_steps is None else args.refine_steps,
                       refine_through=through)
        write_image(marked, target, quality=args.quality, metadata=photo)
        quality = psnr(photo.pixels, marked).item()
        _say(f"{source} -> {target}  (marked with {args.message!r}, PSNR {quality:.1f} dB; 40 dB and up is hard to see)")

    return finish_batch(run_batch(pairs, work, desc="photos", folder=folder))


# ----------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on a bundled face photo: protect it, print the report, then attack it."""
    import torch

    from . import attacks, data
    from .evaluate.metrics import psnr
    from .io import read_photo, write_image
    from .protect import protect
    from .protect.api import PRESETS
    from .protect.facial import IdentityJudges

    if args.preset not in PRESETS:
        raise PhotoshieldError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    name = args.sample or data.samples("faces")[0]
    source = data.sample_path(name)
    photo = read_photo(source)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    print(f"sample {name}: {source.name} {tuple(photo.pixels.shape[-2:])}, protecting with method=facial preset={args.preset}")
    result = protect(photo.pixels, method="facial", preset=args.preset, seed=0)
    target = output / f"{name}.protected.png"
    write_image(result.image, target, metadata=photo)
    print(f"wrote {target}")
    print(format_report(result.report))
    if result.report.get("status") == "unchanged":
        print(f"photoshield: warning: {name}: unchanged, not protected: {result.report.get('reason')}", file=sys.stderr)
        return EXIT_FAILED

    judges = IdentityJudges()
    reference = judges.reference(photo.pixels)
    attacked_by = set(result.report.get("ensemble", ()))
    names = [name for name in judges.names if reference.get(name) is not None]
    print(f"\nidentity after what an upload does to the photo: each judge detects the face anew and compares it with "
          f"the original (cosine, dlib: distance; * = still recognised as the same person).\n"
          f"attacked: {', '.join(n for n in names if n in attacked_by)}; never seen by the protection: "
          f"{', '.join(n for n in names if n not in attacked_by)}")
    print(f"  {'attack':28s} {'PSNR dB':>8s} " + " ".join(f"{name:>13s}" for name in names) + "  verdict")
    generator = torch.Generator().manual_seed(0)
    for attack in [attacks.get("identity")] + attacks.grid("quick"):
        with torch.no_grad():
            attacked = attack(result.image, generator=generator)
        scores = judges.score(reference, attacked)
        cells = " ".join(f"{scores[name][0]:12.3f}{'*' if scores[name][1] else ' '}" for name in names)
        unseen = [name for name in names if name not in attacked_by]
        fooled = sum(not scores[name][1] for name in unseen)
        verdict = f"{fooled} of {len(unseen)} unseen judges fooled"
        print(f"  {attack.describe():28s} {psnr(photo.pixels, attacked).item():8.2f} {cells}  {verdict}")
    return 0


# ----------------------------------------------------------------------------- app


def cmd_app(args: argparse.Namespace) -> int:
    """Start the local web app (the ``app`` extra) and serve it until Ctrl-C."""
    from .app import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"photoshield: warning: listening on {args.host}: anyone who can reach this computer on port "
              f"{args.port} can use the app and read the photos it writes", file=sys.stderr)
    app, url = serve(args.host, args.port, args.output)
    print(f"photoshield app: open {url} in a browser (Ctrl-C stops it)")
    try:
        app.block_thread()
    finally:
        app.close()
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="photoshield",
        description="Protect photos before they are shared: adversarial protection, watermarks, attack simulations.",
    )
    parser.add_argument("--version", action="version", version=f"photoshield {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("info", help="versions, device and available models")

    models = commands.add_parser("models", help="list the model registry")
    models_commands = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    models_list = models_commands.add_parser("list", help="each checkpoint: name, whether it is present, task, license")
    models_list.add_argument("--long", action="store_true", help="every field in full, with where each comes from (wide)")

    attack = commands.add_parser(
        "attack",
        help="apply a simulated attack (codec, distortion, ...) to a file or folder",
        description="Apply an attack to IN (a file or a folder) and write the result to OUT. "
        "Attack parameters are passed as --name value flags, e.g. `--name jpeg --quality 50`.",
    )
    attack.add_argument("input", nargs="?", metavar="IN", help="input image or folder (a folder: every image, the run "
                        "goes on past a bad file and lists the failures; exit status 1 when any failed)")
    attack.add_argument("-o", "--output", metavar="OUT", help="output image or folder")
    attack.add_argument("--name", help="attack name (see --list)")
    attack.add_argument("--strength", type=float, help="strength knob in [0, 1] mapped onto the attack's range")
    attack.add_argument("--seed", type=int, default=0, help="seed for randomised attacks (default 0)")
    attack.add_argument("--format", help="output format extension for every file (default: keep the input's)")
    attack.add_argument("--list", action="store_true", help="list the attack names and exit")

    protect = commands.add_parser(
        "protect",
        help="protect a photo (or a folder) before upload",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=PROTECT_DESCRIPTION,
    )
    _describe_presets_in_help(protect)
    protect.add_argument("input", metavar="IN", help="input image or folder")
    protect.add_argument("-o", "--output", metavar="OUT", help="output image or folder (default: IN.protected.png, "
                         "or IN_protected/ for a folder)")
    protect.add_argument(
        "--method",
        default="facial",
        help="what to protect against: facial (default: face recognition and face swaps), encoder or attention "
        "(diffusion editors; need --editor), deformation (cut-outs by SAM; --segmenter NAME|PATH)",
    )
    protect.add_argument("--epsilon", type=float, metavar="N",
                         help="how much each pixel may change, out of 255 (default 8, facial 12 with --psnr 35; "
                         "alone, an even budget: 4 less visible, less protection; 12 more, may show as fine grain)")
    protect.add_argument("--psnr", type=float, metavar="DB",
                         help="quality floor in dB over the faces (facial) or the photo: the change goes where it "
                         "moves the models most (facial default 35; 38 subtler, 32 stronger); --epsilon caps single pixels")
    protect.add_argument("--steps", type=int, help="optimisation steps (default: the preset's; more is slower and stronger)")
    protect.add_argument("--preset", default="standard", help="standard (default), light, strong or robust: see below")
    protect.add_argument("--editor", help="diffusers pipeline folder or hub id (encoder/attention methods)")
    protect.add_argument("--editor-kind", help="sd-img2img, sd-inpaint, instruct-pix2pix or flux-kontext")
    protect.add_argument("--seed", type=int, default=0, help="seed: the same seed gives the same result (default 0)")
    protect.add_argument("--format", help="output format extension (default png; a lossy one weakens the protection)")
    protect.add_argument("--report", metavar="FILE", help="also write every photo's result to FILE.json or FILE.csv")
    protect.add_argument("--overwrite", action="store_true", help="replace an existing --report file")
    protect.add_argument("--json", action="store_true",
                         help="print each photo's raw report as one line of JSON instead of the readable one")
    protect.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = commands.add_parser(
        "evaluate",
        help="robustness evaluation: inputs x methods x attacks -> CSV, JSON and an HTML report",
        description="Measure protections and watermarks under attacks. Give a YAML config (--config) and/or "
        "flags; flags override the config. Resumes rows already in OUT. Data-parallel under "
        "`accelerate launch -m photoshield.cli evaluate ...`.",
    )
    evaluate.add_argument("--config", metavar="C.yaml", help="YAML config (schema: docs/design/evaluation.md)")
    evaluate.add_argument("--inputs", nargs="+", help="faces, scenes, samples, sample names, folders or files")
    evaluate.add_argument("--methods", nargs="+", help="e.g. clean facial:eps=8,preset=light dwtDctSvd rivaGan")
    evaluate.add_argument("--attacks", nargs="+", help="grid names (quick, standard, waves, deepfake, purify) or specs (jpeg:quality=50)")
    evaluate.add_argument("-o", "--output", metavar="OUT", help="output folder (default photoshield-eval)")
    evaluate.add_argument("--seed", type=int, help="seed (default 0)")
    evaluate.add_argument("--max-inputs", type=int, help="use only the first N inputs")
    evaluate.add_argument("--max-side", type=int, help="resize inputs to this long side first (faster)")
    evaluate.add_argument("--judges", nargs="*", help="face judges: dlib-port sface dlib (default dlib-port sface)")
    evaluate.add_argument("--segmenter", help="segmentation IoU with this segmenter (e.g. sam-litemedsam)")
    evaluate.add_argument("--editor", metavar="PATH", help="also measure how broken an edit is, with this diffusers editor")
    evaluate.add_argument("--editor-kind", help="sd-img2img, sd-inpaint, instruct-pix2pix or flux-kontext (default: from the folder)")
    evaluate.add_argument("--edit-prompt", help="the edit instruction (default: the runner's)")
    evaluate.add_argument("--device", help="device (default: one per process, CUDA if present)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--allow-failures", action="store_true",
                          help="exit 0 even when rows failed (their status is 'error: ...'); by default that exits 1")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace the results of a different run in OUT; a run with the same settings, or one that only "
                          "adds inputs, methods or attacks, resumes either way")

    watermark = commands.add_parser("watermark", help="embed or verify an invisible ownership watermark")
    watermark_commands = watermark.add_subparsers(dest="watermark_command", metavar="SUBCOMMAND", required=True)
    wm_embed = watermark_commands.add_parser("embed", help="mark a photo with a message")
    wm_embed.add_argument("input", metavar="IN", help="photo or folder to mark (never overwritten)")
    wm_embed.add_argument("-o", "--output", required=True, metavar="OUT",
                          help="where to write the marked photo (a folder for a folder: mirrored, the run goes on past a bad file)")
    wm_embed.add_argument("--format", help="output format extension for every file (default: keep the input's)")
    wm_embed.add_argument("--message", required=True, help="text (up to 9 ASCII characters), e.g. an ID")
    wm_embed.add_argument("--key", help="secret key (default: the public key, anyone can verify)")
    wm_embed.add_argument("--psnr", type=float, default=40.0,
                          help="image quality to keep, in dB (default 40: invisible at 2x); the mark is as strong as that allows")
    wm_embed.add_argument("--strength", type=float,
                          help="fixed residual strength instead of --psnr (1.0 gives about 35 dB and survives harsher edits)")
    wm_embed.add_argument("--quality", type=int, help="quality for lossy outputs (default 95)")
    wm_embed.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    wm_embed.add_argument("--refine-steps", type=int,
                          help="steps adapting the mark to this photo at the same quality (default: the library's, 60; 0: off)")
    wm_embed.add_argument("--refine-for-crops", action="store_true",
                          help="also refine so that a cropped copy still reads (with verify --search; about 4x the embedding time)")
    wm_embed.add_argument("--model", help="checkpoint path or registry name (default watermark-diffmark)")
    wm_embed.add_argument("--no-verify", action="store_true",
                          help="load a --model file of your own without checking it (by default it must be the shipped file or carry its checksum)")
    wm_verify = watermark_commands.add_parser(
        "verify", help="decode and test a photo; exit status 0 if detected, 1 if not (or marked with another message), 2 on errors"
    )
    wm_verify.add_argument("input", metavar="IN", help="photo to verify")
    wm_verify.add_argument("--message", help="the message to test for (default: any message)")
    wm_verify.add_argument("--key", help="the key it was embedded with (default: the public key)")
    wm_verify.add_argument("--fpr", type=float, default=1e-6, help="false-positive rate of the decision (default 1e-6)")
    wm_verify.add_argument("--search", action="store_true",
                           help="also look through crops and rotations (needs --message; a fraction of a second; the p-value pays for the search)")
    wm_verify.add_argument("--model", help="checkpoint path or registry name (default watermark-diffmark)")
    wm_verify.add_argument("--no-verify", action="store_true",
                          help="load a --model file of your own without checking it (by default it must be the shipped file or carry its checksum)")

    demo = commands.add_parser("demo", help="run the main job on a bundled photo, with no other input")
    demo.add_argument("--sample", help="bundled sample name (default: the first face photo)")
    demo.add_argument("-o", "--output", default="photoshield-demo", help="output folder (default photoshield-demo)")
    demo.add_argument("--preset", default="standard", help="protection preset: light, standard (default) or strong")

    app = commands.add_parser("app", help="the local web app: protect, watermark and check photos in a browser",
                              description="Serve the web app on this computer (needs the app extra: "
                              "pip install 'photoshield[app]'). It runs offline; no public link is made.")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    app.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    app.add_argument("-o", "--output", metavar="DIR",
                     help="folder for the files it writes (default: photoshield-app in the temporary folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``photoshield`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("attack", "protect"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "info":
            return cmd_info(args)
        if args.command == "models":
            if args.models_command in (None, "list"):
                return cmd_models_list(args)
        if args.command == "attack":
            return cmd_attack(args, extra)
        if args.command == "protect":
            return cmd_protect(args, extra)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "app":
            return cmd_app(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "watermark":
            return cmd_watermark(args)
        parser.print_help()
        return 0 if args.command is None else EXIT_ERROR
    except KeyboardInterrupt:
        print("photoshield: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PhotoshieldError, FileNotFoundError, PermissionError, IsADirectoryError, KeyError, ValueError) as error:
        if os.environ.get("PHOTOSHIELD_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"photoshield: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
