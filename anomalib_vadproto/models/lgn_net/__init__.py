"""LGN-Net: Local-Global Normality Network (Zhao et al., 2022)."""

from .lightning_model import LgnNet
from .st_lstm import ConvLSTMCell, SpatioTemporalStack, STLSTMCell
from .torch_model import LgnNetModel

__all__ = ["ConvLSTMCell", "LgnNet", "LgnNetModel", "STLSTMCell", "SpatioTemporalStack"]
