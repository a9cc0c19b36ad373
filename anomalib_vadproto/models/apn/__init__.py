"""APN: Attention Prototype Network (Hu et al., 2021). Groundwork: the model itself is not available yet."""

from .criss_cross import CrissCrossAttention, RecurrentCrissCross
from .prototype_unit import AttentionPrototypeUnit

__all__ = ["AttentionPrototypeUnit", "CrissCrossAttention", "RecurrentCrissCross"]
