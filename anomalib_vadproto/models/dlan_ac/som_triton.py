"""Fused Triton kernel of the Adaptive Clusterer: a batch of feature maps' whole SOM loops in one launch.

One program (one CTA) holds the ``L × C`` neuron weights in registers (padded to powers of two:
``32 × 512`` at the paper size, ``32 × 128`` lite) and runs, for each of the batch's maps in turn, all
``k`` iterations of :class:`~anomalib_vadproto.models.dlan_ac.som.AdaptiveClusterer`'s loop:

1. gather the step's sample ``x = F^{n_t}`` (the sample of step ``t + 1`` is prefetched during step ``t``);
2. squared distances to the ``L`` neurons and the winner ``w`` by argmin (ties: the lowest index, as
   ``numpy.argmin`` / ``torch.argmin``);
3. the neighbourhood ``h_l = exp(−‖r_l − r_w‖² / (2 δ(t)²))`` from the grid coordinates, set to 0 beyond
   ``δ(t)`` for ``TRUNCATED`` (paper eq. 2) and kept whole otherwise (MiniSom's Gaussian);
4. ``c_l ← c_l + η(t) · h_l · (x − c_l)`` for all ``L × C`` weights.

The maps are sequential (the weights carry over), so a single program is the whole grid. After each
map the weights are stored to that map's row of ``snapshots``; the caller reads the last row back as
the new weights and computes the winners of each map's ``N`` vectors (``z``, eq. 4) from its row with
one batched exact-distance call, the same read-out as the host loop. The per-step schedules ``η(t)``,
``−1/(2δ(t)²)``, ``δ(t)²`` and the sample indices are computed on the host (one source of truth with the
host loop) and loaded per step.

``triton`` is imported here only, so the package does not need it; set ``TRITON_INTERPRET=1`` before
this module is first imported to run the kernel on CPU tensors with Triton's interpreter (tests).
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

#: Elements of the padded ``L × C`` weight tile per thread that :func:`num_warps_for` aims at: the tile,
#: the step's difference and the update stay in registers. Compiled for sm_90 at the paper size (32 × 512):
#: 16 warps use 128 registers per thread, 8 warps 221, both without spills; 4 warps spill. Which is faster is
#: not measured (no GPU has run this kernel yet): ``python -m benchmarks.som_speed --num-warps 8,16`` compares them.
_ELEMENTS_PER_THREAD = 32


@triton.jit
def _som_maps_kernel(
    weights_ptr,  # (L, C) float32: the weights before the first map (read only)
    features_ptr,  # (B, N, C) float32, contiguous
    index_ptr,  # (B, K) int32: the sample n_t of each step of each map
    rate_ptr,  # (K,) float32: η(t)
    coef_ptr,  # (K,) float32: −1 / (2 δ(t)²)
    radius2_ptr,  # (K,) float32: δ(t)², the truncation radius squared
    snapshots_ptr,  # (B, L, C) float32 out: the weights after each map
    num_maps,
    num_vectors,
    num_iterations,
    L: tl.constexpr,
    C: tl.constexpr,
    COLS: tl.constexpr,
    TRUNCATED: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    offs_l = tl.arange(0, BLOCK_L)
    offs_c = tl.arange(0, BLOCK_C)
    mask_l = offs_l < L
    mask_c = offs_c < C
    tile = offs_l[:, None] * C + offs_c[None, :]
    mask = mask_l[:, None] & mask_c[None, :]
    w = tl.load(weights_ptr + tile, mask=mask, other=0.0)
    row = (offs_l // COLS).to(tl.float32)
    col = (offs_l % COLS).to(tl.float32)
    for b in range(num_maps):
        feats = features_ptr + b * num_vectors * C
        steps = index_ptr + b * num_iterations
        x = tl.load(feats + tl.load(steps) * C + offs_c, mask=mask_c, other=0.0)
        for t in range(num_iterations):
            # Prefetch the next step's sample: it does not depend on this step's update.
            t_next = tl.minimum(t + 1, num_iterations - 1)
            x_next = tl.load(feats + tl.load(steps + t_next) * C + offs_c, mask=mask_c, other=0.0)
            diff = x[None, :] - w  # (BLOCK_L, BLOCK_C); padded columns are 0 - 0
            dist = tl.where(mask_l, tl.sum(diff * diff, axis=1), float("inf"))
            winner = tl.argmin(dist, axis=0)
            d_row = row - (winner // COLS).to(tl.float32)
            d_col = col - (winner % COLS).to(tl.float32)
            sq = d_row * d_row + d_col * d_col  # ‖r_l − r_w‖², exact small integers
            h = tl.exp(sq * tl.load(coef_ptr + t))
            if TRUNCATED:
                h = tl.where(sq <= tl.load(radius2_ptr + t), h, 0.0)
            h = tl.where(mask_l, h, 0.0)
            w = w + (tl.load(rate_ptr + t) * h)[:, None] * diff
            x = x_next
        tl.store(snapshots_ptr + b * L * C + tile, w, mask=mask)


def num_warps_for(num_neurons: int, feature_dim: int) -> int:
    """Warps of the single program: ``BLOCK_L · BLOCK_C / 32`` elements per thread, between 1 and 16."""
    tile = triton.next_power_of_2(num_neurons) * triton.next_power_of_2(feature_dim)
    return max(1, min(16, tile // (32 * _ELEMENTS_PER_THREAD)))


def fit_maps(
    weights: Tensor,
    maps: Tensor,
    indices: Tensor,
    rates: Tensor,
    coefs: Tensor,
    radius2: Tensor,
    grid_cols: int,
    truncated: bool,
    snapshots: Tensor,
    num_warps: int | None = None,
) -> Tensor:
    """Run the SOM loops of ``B`` feature maps one after another in a single kernel launch.

    Args:
        weights: ``(L, C)`` float32 weights before the first map (not modified).
        maps: ``(B, N, C)`` float32 contiguous feature vectors, on the weights' device.
        indices: ``(B, K)`` int32 sample index of every step of every map (values in ``[0, N)``).
        rates: ``(K,)`` float32 ``η(t)``.
        coefs: ``(K,)`` float32 ``−1 / (2 δ(t)²)``.
        radius2: ``(K,)`` float32 ``δ(t)²`` (only read when ``truncated``).
        grid_cols: Columns of the neuron grid (flat index ``l = row · cols + col``).
        truncated: Zero the neighbourhood beyond ``δ(t)`` (paper eq. 2) instead of MiniSom's full Gaussian.
        snapshots: ``(B, L, C)`` float32 output, the weights after each map.
        num_warps: Warps of the single program; ``None`` takes :func:`num_warps_for`.

    Returns:
        ``snapshots``.

    """
    num_maps, num_vectors, feature_dim = maps.shape
    num_neurons = weights.shape[0]
    _som_maps_kernel[(1,)](
        weights,
        maps,
        indices,
        rates,
        coefs,
        radius2,
        snapshots,
        num_maps,
        num_vectors,
        indices.shape[1],
        L=num_neurons,
        C=feature_dim,
        COLS=grid_cols,
        TRUNCATED=truncated,
        BLOCK_L=triton.next_power_of_2(num_neurons),
        BLOCK_C=triton.next_power_of_2(feature_dim),
        num_warps=num_warps or num_warps_for(num_neurons, feature_dim),
        num_stages=1,
    )
    return snapshots
