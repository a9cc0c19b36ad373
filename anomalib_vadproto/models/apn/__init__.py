"""APN: Attention Prototype Network (Hu et al., 2021), as the released code runs it."""

from .criss_cross import CrissCrossAttention, RecurrentCrissCross
from .lightning_model import Apn
from .prototype_unit import AttentionPrototypeUnit
from .torch_model import ApnModel

__all__ = ["Apn", "ApnModel", "AttentionPrototypeUnit", "CrissCrossAttention", "RecurrentCrissCross"]
