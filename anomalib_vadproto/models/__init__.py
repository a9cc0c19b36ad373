"""The plugin's video models, one folder per method."""

from .dlan_ac import DlanAc
from .mnad import Mnad

__all__ = ["DlanAc", "Mnad"]
