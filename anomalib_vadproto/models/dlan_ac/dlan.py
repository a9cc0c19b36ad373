"""Dynamic Local Aggregation Network (DLAN) of DLAN-AC: NetVLAD with dropped ("ghost") clusters.

Paper §3.3 (eqs. 5-8). The official repository never published this module; this is our reading of
the paper (the model README's Choices lists the alternatives):

1. soft assignment of every feature vector to all ``L`` clusters (eq. 6), a 1x1 convolution and a
   softmax over the clusters, initialised from the Adaptive Clusterer's centres ``c*`` as
   ``W_l = 2α c*_l`` and ``b_l = −α‖c*_l‖²``, so that it starts as ``softmax_l(−α‖F − c_l‖²)``;
2. residual aggregation ``V(:, l) = Σ_n β_l(F^n) (F^n − c_l)`` (eq. 5);
3. the dynamic redundant clustering strategy (DRCS): only the first ``M`` columns are kept, the
   other ``G = L − M`` clusters take part in the softmax but their residuals are dropped;
4. each kept column is intra-normalised and mapped by one shared linear layer, then normalised
   again: the ``M`` prototypes ``P_m`` of the sample (a full FC over ``M·D`` would be ~44 M
   parameters and is implausible);
5. the read (eqs. 7-8): per location, ``softmax_m(P_mᵀ F^n)`` over the ``M`` prototypes and the
   weighted sum ``P̂^n`` (:func:`~anomalib_vadproto.components.prototypes.prototype_read`).

The prototypes are recomputed from each input, in training and at test time; the learnable state is
the centres, the assignment convolution and the FC. ``M`` is a buffer, saved in checkpoints and
baked into exported graphs as a constant.

:func:`assignment_statistics` (and :meth:`DynamicLocalAggregation.assignment_statistics`) report how saturated
the soft assignment is (its entropy; at α = 100 on unit-norm features it is close to one-hot) and which share of
the assignment mass the kept clusters receive, per cluster too: a kept cluster with no mass gives no gradient
and the same prototype for every input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from anomalib_vadproto.components.prototypes import prototype_read


def assignment_statistics(logits: Tensor, num_kept: int) -> dict[str, float | list[float]]:
    """Entropy of the soft assignment ``β = softmax_l(logits)`` and its mass on the first ``num_kept`` clusters.

    Args:
        logits: ``(B, L, N)`` pre-softmax scores of ``N`` locations against ``L`` clusters (eq. 6's exponent).
        num_kept: ``M``, the kept clusters being the first ``M`` (DRCS).

    Returns:
        Means over the ``B·N`` locations:

        * ``entropy``: of ``β`` in nats (0 for a one-hot assignment, ``log L`` for a uniform one);
        * ``entropy_normalised``: ``entropy / log L`` in [0, 1] (0 when ``L = 1``);
        * ``max_assignment``: the largest ``β_l`` (1 when saturated);
        * ``kept_mass``: ``Σ_{l<M} β_l``, the share of the assignment mass on the kept clusters;
        * ``min_kept_cluster_mass``: the smallest share of mass any one kept cluster gets (0: a dead cluster);
        * ``cluster_mass``: the share of each of the ``L`` clusters (sums to 1);

        and ``num_clusters`` (``L``), ``num_kept`` (``M``), ``num_locations`` (``B·N``).

    Raises:
        ValueError: If ``logits`` is not 3-D or ``num_kept`` is not in ``[1, L]``.

    """
    if logits.ndim != 3:
        msg = f"logits must have shape (B, L, N), got {tuple(logits.shape)}."
        raise ValueError(msg)
    num_clusters = logits.shape[1]
    if not 1 <= num_kept <= num_clusters:
        msg = f"num_kept must be in [1, {num_clusters}], got {num_kept}."
        raise ValueError(msg)
    with torch.no_grad():
        log_p = torch.log_softmax(logits.detach().double(), dim=1)
        p = log_p.exp()
        entropy = -(p * log_p).sum(dim=1).mean()
        cluster_mass = p.mean(dim=(0, 2))
        return {
            "entropy": float(entropy),
            "entropy_normalised": float(entropy / math.log(num_clusters)) if num_clusters > 1 else 0.0,
            "max_assignment": float(p.max(dim=1).values.mean()),
            "kept_mass": float(cluster_mass[:num_kept].sum()),
            "min_kept_cluster_mass": float(cluster_mass[:num_kept].min()),
            "cluster_mass": cluster_mass.tolist(),
            "num_clusters": num_clusters,
            "num_kept": num_kept,
            "num_locations": logits.shape[0] * logits.shape[2],
        }


class DynamicLocalAggregation(nn.Module):
    """NetVLAD over ``L`` clusters that keeps the first ``M`` as per-sample prototypes.

    Args:
        feature_dim: Channels ``D`` of the feature map (paper: 512).
        num_clusters: ``L``, the number of clusters (the SOM's neurons; paper: 25).
        alpha: ``α`` of the initialisation ``W = 2αc``, ``b = −α‖c‖²`` (not given by the paper;
            100 is the usual NetVLAD value for unit-norm features).

    Buffers:
        num_kept: ``M``, the number of kept clusters (0 until :meth:`initialise` is called).

    """

    def __init__(self, feature_dim: int = 512, num_clusters: int = 25, alpha: float = 100.0) -> None:
        super().__init__()
        if feature_dim < 1 or num_clusters < 1:
            msg = f"feature_dim and num_clusters must be positive, got {feature_dim} and {num_clusters}."
            raise ValueError(msg)
        if not alpha > 0:
            msg = f"alpha must be positive, got {alpha}."
            raise ValueError(msg)
        self.feature_dim = feature_dim
        self.num_clusters = num_clusters
        self.alpha = float(alpha)
        self.centres = nn.Parameter(F.normalize(torch.rand(num_clusters, feature_dim), dim=1))
        self.assign = nn.Conv2d(feature_dim, num_clusters, kernel_size=1, bias=True)
        self.fc = nn.Linear(feature_dim, feature_dim)
        self.register_buffer("num_kept", torch.zeros((), dtype=torch.long))
        self._m = 0
        self._init_assignment(self.centres.detach())

    num_kept: Tensor

    @property
    def m(self) -> int:
        """``M``, the number of kept clusters (prototypes per sample).

        A Python mirror of the ``num_kept`` buffer (refreshed on load), so that exported graphs bake
        ``M`` in as a constant instead of reading a tensor.
        """
        return self._m

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._m = int(self.num_kept)

    @torch.no_grad()
    def initialise(self, centres: Tensor, num_kept: int) -> None:
        """Set the centres to ``centres`` and the assignment to ``softmax_l(−α‖F − c_l‖²)``.

        Args:
            centres: ``(L, D)`` initial centres (the SOM's ``c*``, kept clusters first).
            num_kept: ``M``, with ``1 ≤ M ≤ L``.

        Raises:
            ValueError: On a wrong centre shape, non-finite centres or ``M`` out of range.

        """
        if centres.shape != (self.num_clusters, self.feature_dim):
            msg = f"centres must have shape ({self.num_clusters}, {self.feature_dim}), got {tuple(centres.shape)}."
            raise ValueError(msg)
        if not torch.isfinite(centres).all():
            msg = "centres contain NaN or infinite values."
            raise ValueError(msg)
        if not 1 <= num_kept <= self.num_clusters:
            msg = f"M must be in [1, {self.num_clusters}], got {num_kept}."
            raise ValueError(msg)
        self.centres.copy_(centres.to(self.centres))
        self._init_assignment(self.centres)
        self.num_kept.fill_(num_kept)
        self._m = int(num_kept)

    @torch.no_grad()
    def _init_assignment(self, centres: Tensor) -> None:
        self.assign.weight.copy_((2.0 * self.alpha * centres)[:, :, None, None])
        self.assign.bias.copy_(-self.alpha * centres.square().sum(dim=1))

    def soft_assignment(self, features: Tensor) -> Tensor:
        """``β_l(F^n)``, the softmax over the ``L`` clusters per location (eq. 6), ``(B, L, N)``."""
        return torch.softmax(self.assign(features).flatten(2), dim=1)

    def assignment_statistics(self, features: Tensor) -> dict[str, float | list[float]]:
        """Entropy of the soft assignment of ``features`` and its mass on the ``M`` kept clusters.

        Args:
            features: ``(B, D, H, W)`` feature map, as :meth:`forward` receives it.

        Returns:
            See :func:`assignment_statistics`.

        Raises:
            RuntimeError: If ``M`` has not been set (:meth:`initialise`).

        """
        if self.m < 1:
            msg = "DLAN has no kept clusters (M = 0): initialise it from the Adaptive Clusterer first."
            raise RuntimeError(msg)
        with torch.no_grad():
            return assignment_statistics(self.assign(features).flatten(2), self.m)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Aggregate the feature map into ``M`` prototypes per sample.

        Args:
            features: ``(B, D, H, W)`` feature map (unit-norm vectors in the recommended reading).

        Returns:
            ``(prototypes (B, M, D), assignment (B, L, N))``; the prototypes have unit norm.

        Raises:
            RuntimeError: If ``M`` has not been set (:meth:`initialise` after the Adaptive Clusterer).

        """
        m = self.m
        if m < 1:
            msg = "DLAN has no kept clusters (M = 0): initialise it from the Adaptive Clusterer first."
            raise RuntimeError(msg)
        assignment = self.soft_assignment(features)  # (B, L, N)
        vectors = features.flatten(2).transpose(1, 2)  # (B, N, D)
        kept = assignment[:, :m]  # DRCS: ghost clusters only shape the softmax
        residuals = kept @ vectors - kept.sum(dim=2, keepdim=True) * self.centres[:m]  # (B, M, D), eq. 5
        prototypes = F.normalize(self.fc(F.normalize(residuals, dim=2)), dim=2)
        return prototypes, assignment

    @staticmethod
    def read(queries: Tensor, prototypes: Tensor) -> tuple[Tensor, Tensor]:
        """Prototype read of eqs. 7-8 with gradients through the weights.

        Args:
            queries: ``(B, N, D)`` feature vectors.
            prototypes: ``(B, M, D)`` prototypes of each sample.

        Returns:
            ``(read (B, N, D), scores (B, N, M))``.

        """
        return prototype_read(queries, prototypes)
