"""Attention read of a set of prototypes, shared by the memory of MNAD/LGN-Net and DLAN-AC.

Every method of the MNAD family reads its prototypes the same way (MNAD's memory read, the DLAN-AC
paper's eqs. 7-8): per query location, a softmax over the prototypes of the query-prototype dot
products, and the weighted sum of the prototypes. They differ only in whether the weights carry a
gradient (MNAD: detached) and in whether the prototypes are shared (a memory, ``(M, C)``) or computed
per sample (DLAN-AC, ``(B, M, C)``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def prototype_read(queries: Tensor, prototypes: Tensor, detach_weights: bool = False) -> tuple[Tensor, Tensor]:
    """Read prototypes by attention: ``p̂ = softmax_m(q pᵀ) p``.

    Args:
        queries: ``(N, C)`` queries, or ``(B, N, C)`` with per-sample prototypes.
        prototypes: ``(M, C)`` shared prototypes or ``(B, M, C)`` per-sample prototypes.
        detach_weights: Stop the gradient through the attention weights (MNAD's memory read).

    Returns:
        ``(read, scores)``: the read with the queries' shape, and the dot products ``q pᵀ``
        (``(N, M)`` or ``(B, N, M)``) before the softmax.

    """
    scores = queries @ prototypes.transpose(-1, -2)
    weights = torch.softmax(scores, dim=-1)
    if detach_weights:
        weights = weights.detach()
    return weights @ prototypes, scores


def rank_per_sample(queries: Tensor, prototypes: Tensor, scores: Tensor, k: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Flatten per-sample prototypes so the shared losses can index each query's own sample's prototypes.

    Args:
        queries: ``(B, N, C)`` queries.
        prototypes: ``(B, M, C)`` prototypes of each sample.
        scores: ``(B, N, M)`` query-prototype scores (higher = closer).
        k: How many of the best prototypes to return per query (capped at ``M``).

    Returns:
        ``(queries (B·N, C), prototypes (B·M, C), ranked (B·N, min(k, M)))`` where ``ranked[:, 0]`` is
        the row of each query's best prototype in the flattened prototypes, ``ranked[:, 1]`` the second.

    """
    b, m, c = prototypes.shape
    offset = (torch.arange(b, device=prototypes.device) * m).repeat_interleave(queries.shape[1])
    ranked = scores.reshape(-1, m).topk(min(k, m), dim=1).indices + offset[:, None]
    return queries.reshape(-1, c), prototypes.reshape(b * m, c), ranked
