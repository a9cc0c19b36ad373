"""DLAN-AC: Dynamic Local Aggregation Network with Adaptive Clusterer (Yang et al., ECCV 2022)."""

from .dlan import DynamicLocalAggregation
from .lightning_model import DlanAc
from .som import AdaptiveClusterer
from .torch_model import DlanAcModel

__all__ = ["AdaptiveClusterer", "DlanAc", "DlanAcModel", "DynamicLocalAggregation"]
