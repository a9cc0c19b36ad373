"""MNAD: Learning Memory-guided Normality for Anomaly Detection (Park et al., CVPR 2020)."""

from .lightning_model import Mnad
from .torch_model import MnadModel

__all__ = ["Mnad", "MnadModel"]
