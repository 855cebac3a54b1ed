"""The ``photoshield`` command line: ``info``, ``models``, ``attack``, ``protect``, ``evaluate``, ``watermark``, ``demo``.

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

from photoshield.errors import PhotoshieldError

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

    import photoshield
    from photoshield.models import checkpoints, default_device, find

    versions = {"photoshield": photoshield.__version__, "python": platform.python_version(), "torch": torch.__version__}
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
    from photoshield.models import checkpoints, find

    rows = [("name", "task", "source", "license", "present")]
    for checkpoint in checkpoints():
        location = find(checkpoint.name)
        rows.append((checkpoint.name, checkpoint.task, checkpoint.source, checkpoint.license, "yes" if location else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


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
    from photoshield.errors import ImageError
    from photoshield.io import list_images

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
    from photoshield.errors import ImageError
    from photoshield.io import SUPPORTED_WRITE_EXTENSIONS

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


def run_batch(pairs: Sequence[tuple[Path, Path]], work: Callable[[Path, Path], None], desc: str, folder: bool) -> BatchOutcome:
    """Run ``work(source, target)`` on every pair. In a folder run a file that fails is recorded and the run
    goes on; a single file's error is raised as it is. Ctrl-C (KeyboardInterrupt) stops the run at once."""
    from tqdm.auto import tqdm

    from photoshield.errors import ChecksumError, ModelNotFoundError

    outcome = BatchOutcome(total=len(pairs))
    for source, target in tqdm(pairs, desc=desc, unit="img", disable=len(pairs) < 2):
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
    """Print a line to stdout (``err``: stderr) without breaking a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr if err else sys.stdout)


# ----------------------------------------------------------------------------- attack


def cmd_attack(args: argparse.Namespace, extra: list[str]) -> int:
    import torch

    from photoshield import attacks
    from photoshield.io import read_photo, write_image

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
    """A protection report as aligned ``key: value`` lines."""
    width = max(len(key) for key in report)
    return "\n".join(f"  {key.ljust(width)}  {value}" for key, value in report.items())


#: The classes and functions whose keyword parameters each protection method accepts (with the
#: registered builder's own): unknown ``--name value`` flags are refused before any work.
_METHOD_SIGNATURES = {
    "facial": ("photoshield.protect.facial:FacialAttack",),
    "encoder": ("photoshield.protect.encoder:EncoderAttack",),
    "attention": ("photoshield.protect.attention:attention_objective", "photoshield.protect.attention:AttentionAttack"),
    "deformation": ("photoshield.protect.deformation:deformation_objective", "photoshield.protect.deformation:DeformationAttack"),
}
#: Engine settings protect() takes besides the method's own (PGDConfig fields are added).
_ENGINE_PARAMETERS = {"shaping", "eot", "step_fraction", "device"}
#: Set by the command line itself (--epsilon, --steps, --seed, ...) or internal.
_OWNED_PARAMETERS = {"self", "images", "method", "epsilon", "steps", "preset", "seed", "progress", "description"}


def protect_parameters(method: str) -> list[str] | None:
    """The ``--name value`` parameters ``protect --method METHOD`` accepts, or None when that cannot be told."""
    import dataclasses
    import importlib
    import inspect

    from photoshield.protect import api
    from photoshield.protect.optim import PGDConfig

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


def cmd_protect(args: argparse.Namespace, extra: list[str]) -> int:
    from photoshield.io import read_photo, write_image
    from photoshield.protect import protect
    from photoshield.protect.api import PRESETS, methods

    if args.method not in methods():
        raise PhotoshieldError(f"unknown protection method {args.method!r}; choose one of {', '.join(methods())}")
    if args.preset not in PRESETS:
        raise PhotoshieldError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    if not 0 < args.epsilon <= 255:
        raise PhotoshieldError(f"--epsilon is an L_inf budget in 0-255 pixel units (e.g. 8); got {args.epsilon:g}")
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
    warn_if_lossy(pairs, "protection")
    unchanged: list[Path] = []

    def work(source: Path, target: Path) -> None:
        photo = read_photo(source)
        result = protect(photo.pixels, method=args.method, epsilon=args.epsilon / 255.0, steps=args.steps,
                         preset=args.preset, seed=args.seed, progress=not args.quiet, **options)
        if result.report.get("interrupted"):  # Ctrl-C stopped the optimisation: the photo is only partly done
            raise KeyboardInterrupt
        write_image(result.image, target, metadata=photo)
        _say(f"{source} -> {target}")
        _say(format_report(result.report))
        if result.report.get("status") == "unchanged":
            unchanged.append(source)
            _say(f"photoshield: warning: {source}: unchanged, not protected: {result.report.get('reason')}", err=True)

    outcome = run_batch(pairs, work, desc=f"protect ({args.method})", folder=folder)
    status = finish_batch(outcome)
    if unchanged and status != EXIT_INTERRUPTED:  # written as they came out, but not protected: say so in the status
        print(f"photoshield: {len(unchanged)} of {len(pairs)} photos came out unchanged (not protected): "
              f"{', '.join(str(path) for path in unchanged[:5])}{' ...' if len(unchanged) > 5 else ''}", file=sys.stderr)
        return EXIT_FAILED
    return status


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run a robustness evaluation from a YAML config and/or flags; print where the report went.

    Exit status 1 when rows failed (their status is ``error: ...``), unless ``--allow-failures``.
    """
    from photoshield.evaluate.runner import EvalConfig, run

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
    from photoshield.watermark import load, verify

    model = load(args.model, verify=not args.no_verify) if args.model else None
    if args.search and not args.message:
        raise PhotoshieldError("--search needs --message: the search ranks crops and rotations by the bits that match it")
    result = verify(args.input, message=args.message, key=args.key, fpr=args.fpr, model=model, search=args.search)
    accuracy = "n/a" if result.bit_accuracy is None else f"{100 * result.bit_accuracy:.2f} %"
    print(f"message:      {result.message!r}" if result.message is not None else "message:      (none decoded)")
    print(f"bit accuracy: {accuracy} of {result.n_bits} bits" + ("" if args.message else " (vs the nearest valid codeword)"))
    print(f"p-value:      {result.p_value:.3g}")
    if result.geometry != "as is":
        print(f"read through: {result.geometry}")
    other = getattr(result, "other_message", None)
    if args.message is not None and other is not None:  # a valid mark, but of someone else's message
        print(f"decision:     marked, with a different message: {other!r}")
        return EXIT_NOT_DETECTED
    print(f"decision:     {'DETECTED' if result.detected else 'not detected'} at false-positive rate {args.fpr:g}")
    return 0 if result.detected else EXIT_NOT_DETECTED


def _watermark_embed(args: argparse.Namespace) -> int:
    from photoshield.io import read_photo, write_image
    from photoshield.watermark import DEFAULT_REFINE_STEPS, embed, load, payload

    model = load(args.model or "watermark-diffmark", verify=not args.no_verify)
    # A message or key the payload cannot carry fails every file alike: refuse it before any work.
    payload.encode(args.message, key=args.key, schema=payload.get_schema(model.n_bits, getattr(model.config, "schema_version", 1)))
    pairs, folder = plan_outputs(Path(args.input), Path(args.output), args.format, _names_a_folder(args.output))
    check_outputs(pairs)
    warn_if_lossy(pairs, "watermark")
    through = []
    if args.refine_for_crops:
        from photoshield.watermark.sync import realigned_crops

        through = realigned_crops(seed=args.seed)

    def work(source: Path, target: Path) -> None:
        photo = read_photo(source)
        marked = embed(photo.pixels, args.message, key=args.key, strength=args.strength, model=model, seed=args.seed,
                       refine_steps=DEFAULT_REFINE_STEPS if args.refine_steps is None else args.refine_steps,
                       refine_through=through)
        write_image(marked, target, quality=args.quality, metadata=photo)
        _say(f"{source} -> {target}")

    return finish_batch(run_batch(pairs, work, desc="watermark embed", folder=folder))


# ----------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on a bundled face photo: protect it, print the report, then attack it."""
    import torch

    from photoshield import attacks, data
    from photoshield.evaluate.metrics import psnr
    from photoshield.io import read_photo, write_image
    from photoshield.protect import protect
    from photoshield.protect.api import PRESETS
    from photoshield.protect.facial import IdentityJudges

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


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    import photoshield

    parser = argparse.ArgumentParser(
        prog="photoshield",
        description="Protect photos before they are shared: adversarial protection, watermarks, attack simulations.",
    )
    parser.add_argument("--version", action="version", version=f"photoshield {photoshield.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("info", help="versions, device and available models")

    models = commands.add_parser("models", help="list the model registry")
    models_commands = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    models_commands.add_parser("list", help="name, task, source, license and whether each checkpoint is present")

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
        description="Add an imperceptible perturbation so AI models cannot use the photo. "
        "Writes PNG by default (IN.protected.png next to the input, or IN_protected/ for a folder) and never "
        "overwrites the input. Method options are passed as --name value flags. Exit status: 0 done, 1 when a "
        "file failed or a photo came out unchanged (the others are still done), 2 on bad arguments, 130 on Ctrl-C "
        "(the photo being protected is not written).",
    )
    protect.add_argument("input", metavar="IN", help="input image or folder")
    protect.add_argument("-o", "--output", metavar="OUT", help="output image or folder (default: IN.protected.png)")
    protect.add_argument(
        "--method",
        default="facial",
        help="facial (default), encoder (with --editor), attention (with --editor PATH --editor-kind KIND), "
        "or deformation (--segmenter NAME|PATH --variant uad|mask|feature)",
    )
    protect.add_argument("--epsilon", type=float, default=8.0, help="L_inf budget in 0-255 units (default 8)")
    protect.add_argument("--steps", type=int, help="optimisation steps (default: from the preset)")
    protect.add_argument("--preset", default="standard", help="light, standard (default) or strong")
    protect.add_argument("--editor", help="diffusers pipeline folder or hub id (encoder/attention methods)")
    protect.add_argument("--editor-kind", help="sd-img2img, sd-inpaint, instruct-pix2pix or flux-kontext")
    protect.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    protect.add_argument("--format", help="output format extension (default png; a lossy one weakens the protection)")
    protect.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="robustness evaluation: inputs x methods x attacks -> CSV, JSON and an HTML report",
        description="Measure protections and watermarks under attacks. Give a YAML config (--config) and/or "
        "flags; flags override the config. Resumes rows already in OUT. Data-parallel under "
        "`accelerate launch -m photoshield.cli evaluate ...`.",
    )
    evaluate.add_argument("--config", metavar="C.yaml", help="YAML config (schema in the README)")
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
    wm_embed.add_argument("--strength", type=float, default=1.0, help="residual strength (default 1.0)")
    wm_embed.add_argument("--quality", type=int, help="quality for lossy outputs (default 95)")
    wm_embed.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    wm_embed.add_argument("--refine-steps", type=int,
                          help="steps adapting the mark to this photo at the same quality (default: the library's, 60; 0: off)")
    wm_embed.add_argument("--refine-for-crops", action="store_true",
                          help="also refine so that a cropped copy still reads (with verify --search; ~1 s more)")
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
                           help="also look through crops and rotations (needs --message; ~5 s; the p-value pays for the search)")
    wm_verify.add_argument("--model", help="checkpoint path or registry name (default watermark-diffmark)")
    wm_verify.add_argument("--no-verify", action="store_true",
                          help="load a --model file of your own without checking it (by default it must be the shipped file or carry its checksum)")

    demo = commands.add_parser("demo", help="run the main job on a bundled photo, with no other input")
    demo.add_argument("--sample", help="bundled sample name (default: the first face photo)")
    demo.add_argument("-o", "--output", default="photoshield-demo", help="output folder (default photoshield-demo)")
    demo.add_argument("--preset", default="standard", help="protection preset: light, standard (default) or strong")
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
