"""Deep k-means of CDDA (paper eqs. 10-11): learnable centres, soft-assigned distance, redundancy.

Every spatial location of an encoder feature map is one sample ``r_i`` (L2-normalised along
channels, as at training time). With ``K`` learnable centres ``c_k``:

* distance per location, paper eq. 10 (``distance="squared"``)::

      D(r_i) = Σ_k softmax_k(−α‖r_i − c_k‖) · ‖r_i − c_k‖²

  or the STD code's form (``distance="euclidean"``): ``mean_k softmax_k(−α‖r_i − c_k‖) · ‖r_i − c_k‖``;
* redundancy, paper eq. 11: ``R = ‖C Cᵀ − I_K‖_F``.

The centres are initialised by scikit-learn's k-means++ (:func:`fit_kmeans`) on features of the
pre-trained autoencoders, then optimised in the centre step of the alternation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from anomalib_vadproto.errors import check_choice

DISTANCES = ("squared", "euclidean")


def pairwise_distances(vectors: Tensor, centres: Tensor) -> Tensor:
    """Euclidean distances ``‖r − c‖`` between ``(..., N, D)`` vectors and ``(K, D)`` centres: ``(..., N, K)``.

    Written with matrix products (no ``cdist``) so that it exports to ONNX; the squared distance is
    floored at ``1e-12`` before the square root, which keeps the gradient finite at a centre.
    """
    squared = vectors.square().sum(-1, keepdim=True) + centres.square().sum(-1) - 2.0 * vectors @ centres.T
    return squared.clamp_min(1e-12).sqrt()


class DeepKMeans(nn.Module):
    """``K`` learnable centres with CDDA's soft-assigned distance (eq. 10) and redundancy (eq. 11).

    Args:
        num_clusters: ``K`` (paper: 32).
        feature_dim: Dimension of the clustered vectors.
        alpha: Sharpness ``α`` of the soft assignment (not in the paper; STD code: 25).
        distance: ``"squared"`` (paper eq. 10: soft-assigned squared distance, summed over clusters) or
            ``"euclidean"`` (STD code: soft-assigned distance, averaged over clusters).

    """

    def __init__(self, num_clusters: int, feature_dim: int, alpha: float = 25.0, distance: str = "squared") -> None:
        super().__init__()
        if num_clusters < 1:
            msg = f"num_clusters must be at least 1, got {num_clusters}"
            raise ValueError(msg)
        check_choice("cluster_distance", distance, DISTANCES)
        if alpha <= 0:
            msg = f"alpha must be positive, got {alpha}"
            raise ValueError(msg)
        self.num_clusters = num_clusters
        self.feature_dim = feature_dim
        self.alpha = float(alpha)
        self.distance = distance
        # STD code: uniform in [0, 1) before k-means overwrites them (CDDA initialises by k-means).
        self.centres = nn.Parameter(torch.rand(num_clusters, feature_dim))

    def distance_map(self, features: Tensor) -> Tensor:
        """Soft-assigned distance of every location of ``(B, D, h, w)`` features: ``(B, h, w)``."""
        b, d, h, w = features.shape
        if d != self.feature_dim:
            msg = f"Expected features with {self.feature_dim} channels, got {d}."
            raise ValueError(msg)
        # In the centres' precision (FP32), also under mixed precision: the codes are unit vectors whose
        # squared distances to near centres are ~1e-2, below what a bf16 product ``2 r·c`` resolves.
        vectors = features.flatten(2).transpose(1, 2).to(self.centres.dtype)  # (B, N, D)
        with torch.autocast(vectors.device.type, enabled=False):
            dist = pairwise_distances(vectors, self.centres)  # (B, N, K)
            assignment = torch.softmax(-self.alpha * dist, dim=-1)
            if self.distance == "squared":
                per_location = (assignment * dist.square()).sum(-1)
            else:
                per_location = (assignment * dist).mean(-1)
        return per_location.reshape(b, h, w)

    def redundancy(self) -> Tensor:
        """``‖C Cᵀ − I_K‖_F`` (eq. 11), a scalar."""
        with torch.autocast(self.centres.device.type, enabled=False):
            gram = self.centres @ self.centres.T
        return (gram - torch.eye(self.num_clusters, device=gram.device, dtype=gram.dtype)).square().sum().sqrt()

    @torch.no_grad()
    def initialise(self, centres: Tensor) -> None:
        """Overwrite the centres (e.g. with the k-means result).

        Raises:
            ValueError: On a wrong shape or non-finite values.

        """
        if tuple(centres.shape) != tuple(self.centres.shape):
            msg = f"Centres of shape {tuple(centres.shape)} given, expected {tuple(self.centres.shape)}."
            raise ValueError(msg)
        if not bool(torch.isfinite(centres).all()):
            msg = "The centres contain NaN or infinite values."
            raise ValueError(msg)
        self.centres.copy_(centres.to(self.centres))


def fit_kmeans(
    samples: Tensor, num_clusters: int, max_iter: int = 100, seed: int = 0, restarts: int = 1
) -> tuple[Tensor, float]:
    """k-means++ (scikit-learn) on ``(N, D)`` samples, the best of ``restarts`` initialisations.

    Args:
        samples: Feature vectors, normalised as at training time.
        num_clusters: ``K``.
        max_iter: Bound on Lloyd iterations (keeps the CPU profile fast).
        seed: ``random_state`` of the k-means++ seeding.
        restarts: Independent k-means++ seedings; the one with the lowest inertia is kept.

    Returns:
        ``(centres (K, D) float32 on the samples' device, inertia)``.

    Raises:
        ValueError: With fewer samples than clusters, or non-finite samples.

    """
    from sklearn.cluster import KMeans

    if samples.ndim != 2 or samples.shape[0] < num_clusters:
        msg = (
            f"k-means with K = {num_clusters} needs at least {num_clusters} feature vectors, got"
            f" {tuple(samples.shape)}; train on more clips or lower num_clusters."
        )
        raise ValueError(msg)
    data = samples.detach().cpu().double().numpy()
    if not np.isfinite(data).all():
        msg = "The features gathered for k-means contain NaN or infinite values (did pre-training diverge?)."
        raise ValueError(msg)
    kmeans = KMeans(n_clusters=num_clusters, init="k-means++", n_init=restarts, max_iter=max_iter, random_state=seed)
    kmeans.fit(data)
    centres = torch.from_numpy(kmeans.cluster_centers_).to(dtype=torch.float32, device=samples.device)
    return centres, float(kmeans.inertia_)
