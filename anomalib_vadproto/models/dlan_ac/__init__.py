"""DLAN-AC: Dynamic Local Aggregation Network with Adaptive Clusterer (Yang et al., ECCV 2022)."""

from .som import AdaptiveClusterer

__all__ = ["AdaptiveClusterer"]
