"""The ``photoshield`` command line: ``info``, ``models``, ``attack``, ``protect``, ``evaluate``, ``watermark``, ``demo``.

Every error photoshield raises on purpose prints one line and exits non-zero;
tracebacks are kept for real bugs (set PHOTOSHIELD_DEBUG=1 to see them always).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from photoshield.errors import PhotoshieldError

EXIT_ERROR = 2
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


# ----------------------------------------------------------------------------- attack


def _output_path(source: Path, input_root: Path | None, output: Path, fmt: str | None) -> Path:
    """Where an attacked copy of ``source`` goes: mirror folders, optionally change the extension."""
    target = output / source.relative_to(input_root) if input_root is not None else output
    return target.with_suffix("." + fmt.lstrip(".")) if fmt else target


def run_on_files(inputs: Path, output: Path, fmt: str | None, transform, desc: str) -> list[tuple[Path, Path]]:
    """Apply ``transform(photo) -> tensor`` to a file or every image of a folder, writing atomically."""
    from tqdm.auto import tqdm

    from photoshield.io import list_images, read_photo, write_image

    if inputs.is_dir():
        files = list_images(inputs, recursive=True)
        if not files:
            raise PhotoshieldError(f"{inputs}: no images found in this folder")
        if output.exists() and not output.is_dir():
            raise PhotoshieldError(f"{output}: the input is a folder, so the output must be a folder too")
        pairs = [(f, _output_path(f, inputs, output, fmt)) for f in files]
    else:
        target = output / inputs.name if output.is_dir() else output
        pairs = [(inputs, _output_path(inputs, None, target, fmt))]
    for source, target in tqdm(pairs, desc=desc, unit="img", disable=len(pairs) < 2):
        photo = read_photo(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(transform(photo), target, metadata=photo)
    return pairs


def cmd_attack(args: argparse.Namespace, extra: list[str]) -> int:
    import torch

    from photoshield import attacks

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
    generator = torch.Generator().manual_seed(args.seed)

    def transform(photo):
        with torch.no_grad():
            return attack(photo.pixels, generator=generator)

    pairs = run_on_files(Path(args.input), Path(args.output), args.format, transform, desc=f"attack {args.name}")
    for _, target in pairs[:1] if len(pairs) > 1 else pairs:
        print(f"wrote {target}")
    if len(pairs) > 1:
        print(f"wrote {len(pairs)} images under {args.output}")
    return 0


# ----------------------------------------------------------------------------- protect

LOSSY_EXTENSIONS = {".jpg", ".jpeg", ".webp", ".avif", ".jxl"}


def _default_protect_output(source: Path) -> Path:
    if source.is_dir():
        return source.with_name(source.name + "_protected")
    return source.with_name(f"{source.stem}.protected.png")


def format_report(report: dict[str, Any]) -> str:
    """A protection report as aligned ``key: value`` lines."""
    width = max(len(key) for key in report)
    return "\n".join(f"  {key.ljust(width)}  {value}" for key, value in report.items())


def cmd_protect(args: argparse.Namespace, extra: list[str]) -> int:
    from photoshield.protect import protect

    source = Path(args.input)
    output = Path(args.output) if args.output else _default_protect_output(source)
    fmt = args.format or (None if args.output else "png")
    lossy = (fmt and "." + fmt.lstrip(".").lower() in LOSSY_EXTENSIONS) or (
        not fmt and not output.is_dir() and output.suffix.lower() in LOSSY_EXTENSIONS
    )
    if lossy:
        print("photoshield: warning: lossy output (JPEG/WebP/AVIF/JXL) weakens the protection; PNG keeps it intact", file=sys.stderr)
    options = parse_extra_params(extra)
    if args.editor:
        options["editor"] = args.editor
    if args.editor_kind:
        options["editor_kind"] = args.editor_kind
    reports: list[tuple[str, dict[str, Any]]] = []

    def transform(photo):
        result = protect(
            photo.pixels,
            method=args.method,
            epsilon=args.epsilon / 255.0,
            steps=args.steps,
            preset=args.preset,
            seed=args.seed,
            progress=not args.quiet,
            **options,
        )
        reports.append((str(photo.path), result.report))
        return result.image

    pairs = run_on_files(source, output, fmt, transform, desc=f"protect ({args.method})")
    for (path, report), (_, target) in zip(reports, pairs):
        print(f"{path} -> {target}")
        if report.get("status") == "unchanged":
            print(f"photoshield: notice: {path}: {report.get('reason')}", file=sys.stderr)
        print(format_report(report))
    return 0


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run a robustness evaluation from a YAML config and/or flags; print where the report went."""
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
    summary = run(config)
    if summary.files:  # the main process reports
        print(f"{summary.rows} rows ({summary.computed} computed, {summary.skipped} already done) in {summary.output}")
        for name, path in summary.files.items():
            print(f"  {name:26s} {path}")
    return 0


# ----------------------------------------------------------------------------- watermark

EXIT_NOT_DETECTED = 1


def cmd_watermark(args: argparse.Namespace) -> int:
    """``watermark embed IN -o OUT --message TEXT`` / ``watermark verify IN``: exit 0 detected, 1 not."""
    from photoshield.io import read_photo, write_image
    from photoshield.watermark import DEFAULT_REFINE_STEPS, embed, load, verify

    model = load(args.model) if args.model else None
    if args.watermark_command == "embed":
        photo = read_photo(args.input)
        through = []
        if args.refine_for_crops:
            from photoshield.watermark.sync import realigned_crops

            through = realigned_crops(seed=args.seed)
        marked = embed(photo.pixels, args.message, key=args.key, strength=args.strength, model=model, seed=args.seed,
                       refine_steps=DEFAULT_REFINE_STEPS if args.refine_steps is None else args.refine_steps,
                       refine_through=through)
        target = write_image(marked, args.output, quality=args.quality, metadata=photo)
        print(f"{args.input} -> {target}")
        return 0
    if args.search and not args.message:
        raise PhotoshieldError("--search needs --message: the search ranks crops and rotations by the bits that match it")
    result = verify(args.input, message=args.message, key=args.key, fpr=args.fpr, model=model, search=args.search)
    accuracy = "n/a" if result.bit_accuracy is None else f"{100 * result.bit_accuracy:.2f} %"
    print(f"message:      {result.message!r}" if result.message is not None else "message:      (none decoded)")
    print(f"bit accuracy: {accuracy} of {result.n_bits} bits" + ("" if args.message else " (vs the nearest valid codeword)"))
    print(f"p-value:      {result.p_value:.3g}")
    if result.geometry != "as is":
        print(f"read through: {result.geometry}")
    print(f"decision:     {'DETECTED' if result.detected else 'not detected'} at false-positive rate {args.fpr:g}")
    return 0 if result.detected else EXIT_NOT_DETECTED


# ----------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on a bundled face photo: protect it, print the report, then attack it."""
    import torch

    from photoshield import attacks, data
    from photoshield.evaluate.metrics import psnr
    from photoshield.io import read_photo, write_image
    from photoshield.models import face
    from photoshield.protect import protect

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
        return 0

    clean = face.embed_faces(photo.pixels)
    print("\nidentity after what an upload does to the photo (dlib distance to the original; same person below 0.6):")
    print(f"  {'attack':28s} {'PSNR dB':>8s} {'distance':>9s}  verdict")
    generator = torch.Generator().manual_seed(0)
    for attack in [attacks.get("identity")] + attacks.grid("quick"):
        with torch.no_grad():
            attacked = attack(result.image, generator=generator)
            try:
                distance = float(face.identity_distance(face.embed_faces(attacked), clean)[0])
                verdict = "identity lost" if distance > 0.6 else "still recognised"
            except PhotoshieldError:
                distance, verdict = float("nan"), "no face found"
        print(f"  {attack.describe():28s} {psnr(photo.pixels, attacked).item():8.2f} {distance:9.3f}  {verdict}")
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
    attack.add_argument("input", nargs="?", metavar="IN", help="input image or folder")
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
        "Writes PNG next to the input by default (IN.protected.png) and never overwrites the input. "
        "Method options are passed as --name value flags.",
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
    protect.add_argument("--preset", default="standard", choices=["light", "standard", "strong"], help="default standard")
    protect.add_argument("--editor", help="diffusers pipeline folder or hub id (encoder/attention methods)")
    protect.add_argument("--editor-kind", help="sd-img2img, sd-inpaint, instruct-pix2pix or flux-kontext")
    protect.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    protect.add_argument("--format", help="output format extension (default png)")
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
    evaluate.add_argument("--attacks", nargs="+", help="grid names (quick, standard, waves) or specs (jpeg:quality=50)")
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

    watermark = commands.add_parser("watermark", help="embed or verify an invisible ownership watermark")
    watermark_commands = watermark.add_subparsers(dest="watermark_command", metavar="SUBCOMMAND", required=True)
    wm_embed = watermark_commands.add_parser("embed", help="mark a photo with a message")
    wm_embed.add_argument("input", metavar="IN", help="photo to mark (never overwritten)")
    wm_embed.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the marked photo")
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
    wm_verify = watermark_commands.add_parser(
        "verify", help="decode and test a photo; exit status 0 if detected, 1 if not, 2 on errors"
    )
    wm_verify.add_argument("input", metavar="IN", help="photo to verify")
    wm_verify.add_argument("--message", help="the message to test for (default: any message)")
    wm_verify.add_argument("--key", help="the key it was embedded with (default: the public key)")
    wm_verify.add_argument("--fpr", type=float, default=1e-6, help="false-positive rate of the decision (default 1e-6)")
    wm_verify.add_argument("--search", action="store_true",
                           help="also look through crops and rotations (needs --message; ~5 s; the p-value pays for the search)")
    wm_verify.add_argument("--model", help="checkpoint path or registry name (default watermark-diffmark)")

    demo = commands.add_parser("demo", help="run the main job on a bundled photo, with no other input")
    demo.add_argument("--sample", help="bundled sample name (default: the first face photo)")
    demo.add_argument("-o", "--output", default="photoshield-demo", help="output folder (default photoshield-demo)")
    demo.add_argument("--preset", default="standard", choices=("light", "standard", "strong"), help="protection preset (default standard)")
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
