"""The local web app for people who do not program: protect, watermark and check photos in a browser.

An optional extra (``pip install 'photoshield[app]'``) built with Gradio; it runs offline and listens on
127.0.0.1 only, unless told otherwise. Three tabs: *Protect*, *Watermark* and *Check a photo*
(see docs/app.md). From the command line: ``photoshield app``; from Python::

    from photoshield.app import serve
    app, url = serve(port=7860)       # a background server; app.close() stops it

Gradio is imported only when the page is built (:mod:`photoshield.app.ui`); the work the tabs do is in
:mod:`photoshield.app.actions`, which needs no Gradio.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from ..errors import PhotoshieldError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "INSTALL_HINT", "default_workdir", "require_gradio", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
INSTALL_HINT = "the web app needs gradio: install with pip install 'photoshield[app]'"


def require_gradio() -> None:
    """Raise a one-line ``PhotoshieldError`` saying how to install the extra when gradio is missing."""
    if importlib.util.find_spec("gradio") is None:
        raise PhotoshieldError(INSTALL_HINT)


def default_workdir() -> Path:
    """Where the app writes its files unless told otherwise: ``photoshield-app`` in the system's temporary folder."""
    return Path(tempfile.gettempdir()) / "photoshield-app"


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workdir: str | Path | None = None) -> tuple[Any, str]:
    """Start the app at http://HOST:PORT in a background thread; (the Gradio app, its URL).

    Files go under ``workdir`` (default :func:`default_workdir`), one folder per run. ``app.block_thread()``
    waits for Ctrl-C; ``app.close()`` stops the server.
    """
    require_gradio()
    workdir = Path(workdir) if workdir is not None else default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    from .ui import serve as _serve

    try:
        return _serve(host, port, workdir)
    except OSError as error:
        raise PhotoshieldError(f"cannot listen on {host}:{port} ({error}); choose another --port") from None
