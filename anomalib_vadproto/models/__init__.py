"""The plugin's video models, one folder per method."""

from .apn import Apn
from .cdda import Cdda
from .dlan_ac import DlanAc
from .lgn_net import LgnNet
from .mnad import Mnad

__all__ = ["Apn", "Cdda", "DlanAc", "LgnNet", "Mnad"]
