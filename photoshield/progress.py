"""The progress bar every long loop uses: ``tqdm.auto``, loaded once without its "IProgress not found" warning.

In a Jupyter kernel without ipywidgets, the first import of ``tqdm.auto`` (by photoshield, or by diffusers
and transformers, which import it too) warns "IProgress not found" and falls back to tqdm's text bar. Importing
it here first, with that one warning silenced, gives the same text bar without the warning for everyone after;
with ipywidgets installed the bars are widgets as usual. ``photoshield/__init__.py`` imports this module::

    from photoshield.progress import tqdm
    for item in tqdm(items, desc="photos", unit="photo"):
        ...
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found")
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
