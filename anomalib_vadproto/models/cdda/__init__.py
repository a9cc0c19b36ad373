"""CDDA: Clustering Driven Deep Autoencoder for Video Anomaly Detection (Chang et al., ECCV 2020)."""

from .clustering import DeepKMeans, fit_kmeans
from .layers import VarianceAttention
from .lightning_model import Cdda
from .torch_model import CddaModel

__all__ = ["Cdda", "CddaModel", "DeepKMeans", "VarianceAttention", "fit_kmeans"]
