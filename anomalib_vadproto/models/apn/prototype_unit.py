"""Attention Prototype Unit (APU) of APN (Hu et al., 2021): MPN's dynamic prototype unit, as in the code.

For a sample's unit-norm feature vectors ``x_n`` (``N`` locations):

* ``M`` attention heads, one bias-free linear map ``ψ: R^C → R^M``; normalcy weights
  ``a_{n,m} = softmax_n(ψ_m(x_n))``, a softmax over the **spatial positions** for each head;
* prototypes ``p_m = Σ_n a_{n,m} x_n``, normalised: ``p̄_m = p_m / ‖p_m‖`` (eq. 1), per sample;
* retrieval ``β_{n,m} = softmax_m(x_nᵀ p̄_m)`` and ``x̃_n = norm(Σ_m β_{n,m} p̄_m)`` (eq. 2), the shared
  :func:`~anomalib_vadproto.components.prototypes.prototype_read`;
* output ``y_n = x̃_n + x_n``.

Nothing is detached and nothing persists between inputs: there is no memory and no test-time update.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from anomalib_vadproto.components.prototypes import prototype_read


class PrototypeOutput(NamedTuple):
    """What the APU returns."""

    output: Tensor  # (B, C, H, W) y = norm(x̃) + x
    queries: Tensor  # (B, N, C) the unit-norm inputs x_n
    prototypes: Tensor  # (B, M, C) unit-norm prototypes p̄_m
    scores: Tensor  # (B, N, M) x_nᵀ p̄_m before the retrieval softmax


class AttentionPrototypeUnit(nn.Module):
    """Per-sample prototypes by spatial attention heads, read back at every location.

    Args:
        channels: Feature dimension ``C`` (APN: 128).
        num_prototypes: Number of heads/prototypes ``M`` (APN: 10).

    """

    def __init__(self, channels: int = 128, num_prototypes: int = 10) -> None:
        super().__init__()
        if channels < 1 or num_prototypes < 1:
            msg = f"channels and num_prototypes must be positive, got {channels} and {num_prototypes}."
            raise ValueError(msg)
        self.heads = nn.Linear(channels, num_prototypes, bias=False)

    def prototypes(self, queries: Tensor) -> Tensor:
        """``p̄_m``: ``(B, M, C)`` unit-norm prototypes of ``(B, N, C)`` queries (eq. 1)."""
        weights = torch.softmax(self.heads(queries), dim=1)  # (B, N, M): softmax over positions
        return F.normalize(weights.transpose(1, 2) @ queries, dim=2)

    def forward(self, features: Tensor) -> PrototypeOutput:
        """Compute the sample's prototypes from ``features`` and add their normalised read to them.

        Args:
            features: ``(B, C, H, W)`` feature map; it is L2-normalised per location here.

        Returns:
            :class:`PrototypeOutput`.

        Raises:
            ValueError: If ``features`` is not ``(B, C, H, W)`` with the unit's ``C``.

        """
        channels = self.heads.in_features
        if features.ndim != 4 or features.shape[1] != channels:
            msg = f"expected features of shape (B, {channels}, H, W), got {tuple(features.shape)}"
            raise ValueError(msg)
        b, c, h, w = features.shape
        queries = F.normalize(features, dim=1).flatten(2).transpose(1, 2)  # (B, N, C)
        prototypes = self.prototypes(queries)
        read, scores = prototype_read(queries, prototypes)
        output = F.normalize(read, dim=2) + queries
        return PrototypeOutput(output.transpose(1, 2).reshape(b, c, h, w), queries, prototypes, scores)
