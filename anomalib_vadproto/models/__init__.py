"""The plugin's video models, one folder per method."""

from .mnad import Mnad

__all__ = ["Mnad"]
