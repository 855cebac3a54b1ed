"""The web page: three tabs, one function each (``protect_tab``, ``watermark_tab``, ``check_tab``), built with Gradio.

The work itself is in :mod:`photoshield.app.actions`; these functions lay out the inputs, call it, and show
what comes back. Nothing is fetched from the internet: no analytics, no share link, no remote fonts.
Gradio is imported when a page is built, so this module imports without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import actions, require_gradio
from ..errors import PhotoshieldError

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["build_app", "check_tab", "protect_tab", "serve", "watermark_tab"]

_USER_ERRORS = (PhotoshieldError, OSError, ValueError)
#: What each preset is for, in words (a preset without words here shows its number of steps only).
_PRESET_WORDS = {"light": "quickest", "standard": "also holds through JPEG compression",
                 "strong": "also through resizing and blur",
                 "robust": "also through the noise and smoothing that purification tools use to wash protections out"}


def _preset_help() -> str:
    """One line per preset: its steps and what it is for (``light (30 steps): quickest; ...``)."""
    from ..protect.api import PRESETS

    return "; ".join(f"{name} ({settings['steps']} steps)" + (f": {_PRESET_WORDS[name]}" if name in _PRESET_WORDS else "")
                     for name, settings in PRESETS.items())


def _gradio():
    """The gradio module, imported with its usage analytics off (a one-line error says how to install it)."""
    require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
    import gradio

    return gradio


def _reporter(progress: gr.Progress) -> actions.Progress:
    """The page's progress bar as an ``actions.Progress`` callback."""
    return lambda fraction, text: progress(fraction, desc=text)


def _shown(photo: actions.ProtectedPhoto) -> dict[str, Any]:
    """What the page keeps of a protected photo to show it again (plain values for gr.State)."""
    return {"name": photo.name, "original": str(photo.original), "output": photo.output and str(photo.output),
            "comparison": photo.comparison and str(photo.comparison),
            "difference": photo.difference and str(photo.difference), "gain": photo.gain}


def _images(shown: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """(before/after pair, zoomed face, amplified difference) of one protected photo, for the page."""
    gr = _gradio()
    if not shown or not shown.get("output"):
        return None, None, gr.Image(value=None, label="What changed (amplified)")
    from ..image import to_pil
    from ..io import read_photo

    before = to_pil(read_photo(shown["original"]).pixels)  # upright, as the protection saw it
    label = f"What changed, amplified x{shown['gain']:.0f} (grey: unchanged)"
    return (before, shown["output"]), shown["comparison"], gr.Image(value=shown["difference"], label=label)


def protect_tab(workdir: Path) -> None:
    """Upload photos, choose a preset and the face quality, protect them; before/after, zoomed face, verdicts, download."""
    gr = _gradio()
    from ..protect.api import PRESETS

    with gr.Tab("Protect", id="protect"):
        gr.Markdown("Add an invisible change to the faces in your photos so that face recognition no longer "
                    "matches them. Each photo is checked afterwards by every face model, including ones the "
                    "protection never saw.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="protect-files")
                preset = gr.Radio(list(PRESETS), value="standard", label="Preset", info=_preset_help(),
                                  elem_id="protect-preset")
                quality = gr.Slider(30, 42, value=35, step=1, label="Face quality: PSNR over the faces, in dB",
                                    info="lower protects more and shows more", elem_id="protect-quality")
                with gr.Accordion("Advanced", open=False):
                    steps = gr.Number(value=0, precision=0, minimum=0, label="Steps (0: the preset's)",
                                      elem_id="protect-steps")
                    seed = gr.Number(value=0, precision=0, label="Seed (the same seed gives the same result)",
                                     elem_id="protect-seed")
                run_button = gr.Button("Protect", variant="primary", elem_id="protect-run")
            with gr.Column(scale=2):
                choice = gr.Dropdown(label="Show photo", choices=[], visible=False, elem_id="protect-choice")
                slider = gr.ImageSlider(label="Before / after (drag the bar)", format="png", elem_id="protect-slider")
                with gr.Row():
                    face = gr.Image(label="Face, zoomed 2x: before | after", format="png", interactive=False,
                                    elem_id="protect-face")
                    difference = gr.Image(label="What changed (amplified)", format="png", interactive=False,
                                          elem_id="protect-difference")
                verdicts = gr.Textbox(label="Verdicts", lines=14, interactive=False, elem_id="protect-verdicts")
                download = gr.File(label="Download (PNG, or a zip for several photos)", interactive=False,
                                   elem_id="protect-download")
        kept = gr.State([])

        def run(paths, preset, quality, steps, seed, progress=gr.Progress(track_tqdm=True)):
            try:
                result = actions.protect_photos(paths or [], preset=preset, quality=float(quality),
                                                steps=int(steps or 0) or None, seed=int(seed or 0), workdir=workdir,
                                                progress=_reporter(progress))
            except _USER_ERRORS as error:
                raise gr.Error(str(error)) from None
            shown = [_shown(photo) for photo in result.photos]
            names = [(f"{number}. {photo.name}", number - 1) for number, photo in enumerate(result.photos, start=1)]
            picker = gr.Dropdown(choices=names, value=0, visible=len(names) > 1)
            return (shown, picker, *_images(shown[0]), result.text(), result.download and str(result.download))

        def show(index, shown):
            return _images(shown[int(index)] if index is not None and 0 <= int(index) < len(shown) else None)

        run_button.click(run, [files, preset, quality, steps, seed],
                         [kept, choice, slider, face, difference, verdicts, download])
        choice.input(show, [choice, kept], [slider, face, difference])


def watermark_tab(workdir: Path) -> None:
    """Embed a message under a key (PSNR, where the mark went, download); verify a copy (decision in words)."""
    gr = _gradio()
    with gr.Tab("Watermark", id="watermark"):
        gr.Markdown("An invisible mark that says the photo is yours. Anyone with the key (or everyone, with the "
                    "public key) can later check a copy found elsewhere.")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Add a watermark")
                photo = gr.Image(label="Photo", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 elem_id="wm-photo")
                message = gr.Textbox(label="Message (up to 9 letters or digits, e.g. an ID)", max_length=9,
                                     elem_id="wm-message")
                key = gr.Textbox(label="Secret key (empty: the public key)", type="password", elem_id="wm-key")
                embed_button = gr.Button("Add watermark", variant="primary", elem_id="wm-embed")
                embedded = gr.Textbox(label="Result", lines=4, interactive=False, elem_id="wm-embed-result")
                with gr.Row():
                    marked = gr.Image(label="Marked photo", format="png", interactive=False, elem_id="wm-marked")
                    change = gr.Image(label="Where the mark went (amplified)", format="png", interactive=False,
                                      elem_id="wm-change")
                download = gr.File(label="Download", interactive=False, elem_id="wm-download")
            with gr.Column():
                gr.Markdown("### Verify a copy")
                copy = gr.Image(label="Copy to verify", type="filepath", image_mode=None,
                                sources=["upload", "clipboard"], elem_id="wm-copy")
                expected = gr.Textbox(label="Message to look for (empty: any message)", max_length=9,
                                      elem_id="wm-verify-message")
                verify_key = gr.Textbox(label="Key (empty: the public key)", type="password", elem_id="wm-verify-key")
                search = gr.Checkbox(label="Also look through crops and rotations (needs the message; slower)",
                                     elem_id="wm-search")
                verify_button = gr.Button("Verify", variant="primary", elem_id="wm-verify")
                decision = gr.Textbox(label="Decision", lines=5, interactive=False, elem_id="wm-decision")

        def embed(path, message, key, progress=gr.Progress()):
            try:
                outcome = actions.embed_watermark(path, message, key, workdir=workdir, progress=_reporter(progress))
            except _USER_ERRORS as error:
                raise gr.Error(str(error)) from None
            return outcome.text, str(outcome.output), str(outcome.difference), str(outcome.output)

        def verify(path, message, key, search, progress=gr.Progress()):
            try:
                return actions.verify_watermark(path, message, key, search=bool(search), progress=_reporter(progress))
            except _USER_ERRORS as error:
                raise gr.Error(str(error)) from None

        embed_button.click(embed, [photo, message, key], [embedded, marked, change, download])
        verify_button.click(verify, [copy, expected, verify_key, search], [decision])


def check_tab(workdir: Path) -> None:
    """Faces found, which face models still recognise the person of a reference photo, and a watermark check."""
    gr = _gradio()
    with gr.Tab("Check a photo", id="check"):
        gr.Markdown("Check any photo: which faces it shows, whether face recognition still matches them to a "
                    "reference photo of the person, and whether it carries a watermark.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Photo to check", type="filepath", image_mode=None,
                                 sources=["upload", "clipboard"], elem_id="check-photo")
                reference = gr.Image(label="Reference photo of the person (optional)", type="filepath",
                                     image_mode=None, sources=["upload", "clipboard"], elem_id="check-reference")
                look = gr.Checkbox(label="Also look for a watermark", elem_id="check-watermark")
                key = gr.Textbox(label="Watermark key (empty: the public key)", type="password", elem_id="check-key")
                message = gr.Textbox(label="Watermark message (optional)", max_length=9, elem_id="check-message")
                check_button = gr.Button("Check", variant="primary", elem_id="check-run")
            with gr.Column(scale=2):
                faces = gr.Image(label="Faces found", type="pil", format="png", interactive=False,
                                 elem_id="check-faces")
                verdicts = gr.Textbox(label="Verdicts", lines=14, interactive=False, elem_id="check-verdicts")

        def check(path, reference, look, key, message, progress=gr.Progress()):
            try:
                outcome = actions.check_photo(path, reference, key=key, message=message, watermark=bool(look),
                                              progress=_reporter(progress))
            except _USER_ERRORS as error:
                raise gr.Error(str(error)) from None
            return outcome.faces, outcome.text

        check_button.click(check, [photo, reference, look, key, message], [faces, verdicts])


def build_app(workdir: Path) -> gr.Blocks:
    """The whole page; every file it writes goes under ``workdir``."""
    gr = _gradio()
    workdir = Path(workdir)
    with gr.Blocks(title="photoshield", analytics_enabled=False) as app:
        gr.Markdown("# photoshield\nProtect photos before you share them. Everything runs on this computer: "
                    "no photo leaves it.")
        with gr.Tabs():
            protect_tab(workdir)
            watermark_tab(workdir)
            check_tab(workdir)
    return app


def serve(host: str, port: int, workdir: Path) -> tuple[gr.Blocks, str]:
    """Start the page at http://HOST:PORT in a background thread (never a public share link).

    Returns (the app, its local URL); ``app.block_thread()`` waits until Ctrl-C, ``app.close()`` stops it.
    """
    app = build_app(workdir)
    app.queue(default_concurrency_limit=1)  # one job at a time: the models use every core
    _, url, _ = app.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True,
                           show_error=True, allowed_paths=[str(Path(workdir).resolve())], ssr_mode=False,
                           mcp_server=False, prevent_thread_lock=True)
    return app, url
