"""Test-size models and fixtures: tiny random pipelines that run every real code path on CPU in seconds.

For tests, examples and demos; production code (everything else in ``photoshield``) never imports this package.
"""

from .diffusion import tiny_components, tiny_editor
from .watermark import tiny_watermark

__all__ = ["tiny_components", "tiny_editor", "tiny_watermark"]
