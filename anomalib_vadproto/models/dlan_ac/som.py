"""Adaptive Clusterer (AC) of DLAN-AC (Yang et al., ECCV 2022): a Kohonen self-organising map.

``spec/methods.md`` §3.3(a), paper §3.2 (eqs. 1-4). Stage 1 only: the SOM is trained on the
*detached* encoder feature vectors and does not change the network's forward output. What it
hands to stage 2 is the neuron weights ``c*_l`` (initial NetVLAD centres) and the number of
clusters ``M`` (the number of kept, non-ghost NetVLAD clusters, §3.3(b) DRCS).

Algorithm (one call of :meth:`AdaptiveClusterer.fit_feature_map`, i.e. one feature map ``F_t``
of ``N`` vectors; ``t`` restarts at 0 for every map, the weights carry over between maps):

for ``t = 0 … k−1`` with the input ``x = F^{n_t}``:

1. winner ``w = argmin_l ‖x − c_l‖₂`` (eq. 1);
2. neighbourhood ``h_l = exp(−‖r_l − r_w‖² / (2 δ(t)²))`` on the ``rows × cols`` grid (eq. 2),
   with ``r_l`` the grid coordinates of neuron ``l``;
3. ``c_l ← c_l + η(t) · h_l · (x − c_l)`` for all ``L`` neurons at once (eq. 3);

with the asymptotic decay ``δ(t) = δ / (1 + t/(k/2))`` and ``η(t) = η / (1 + t/(k/2))``
(paper; identical to MiniSom's ``asymptotic_decay``). After the ``k`` iterations,
``z(F_t)`` = the number of *distinct* neurons that win for at least one of the map's ``N`` vectors,
and (eq. 4) ``M = mean over the maps of z``, truncated to an integer as the code does (§3.3(a)).
Statistics are accumulated per epoch (:meth:`AdaptiveClusterer.reset_statistics` starts a new one);
``M`` is refreshed after every map, so after the last AC epoch it holds that epoch's average, as
the spec prescribes.

Paper-vs-code choices (each exposed as a constructor option, default = spec recommendation):

* ``neighbourhood="truncated"`` (paper eq. 2, default): ``h_l = 0`` when ``‖r_l − r_w‖ > δ(t)``.
  Grid neighbours are at distance ≥ 1, so with ``δ = 0.5`` (and any ``δ < 1``) only the winner
  is updated: the AC is then online competitive k-means. This case takes an exactly equivalent
  fast path that updates the winner row only.
  ``neighbourhood="gaussian"`` (MiniSom's default, used by the official script): untruncated,
  grid neighbours get ``exp(−1/(2·0.25)) ≈ 0.14`` at ``t = 0`` with ``δ = 0.5``.
  The spec (§3.8 item 8) expects a minor difference, since only ``M`` and the centres are used.
* ``decay="asymptotic"`` (paper and spec, default) or ``decay="linear"`` (``x · (1 − t/k)``,
  decays to zero; an option for experiments, used by neither the paper nor the spec).
* ``sample_order="cycle"`` (default; the spec's "cycling through its vectors", MiniSom
  ``train(..., random_order=False)``: ``n_t = t mod N``) or ``"shuffle"`` (the same multiset of
  indices in a seeded random order, MiniSom ``random_order=True``).
* Paper hyper-parameters are the defaults: ``δ = η = 0.5``, ``k = 5000``, ``L = 25`` on a 5×5 grid
  (code defaults: σ = 0.3, lr = 0.5, Gaussian neighbourhood).
* Initialisation follows MiniSom: uniform in [−1, 1], then L2-normalised per neuron (§3.3(a)).
* Centre order (§3.3(b) DRCS): the spec takes "the first M" literally as the first ``M`` indices in
  the SOM's *flattened* (row-major grid) order, which is ``centre_order="flat"`` (default).
  ``centre_order="wins"`` instead sorts neurons by descending win count (stable, ties by index),
  which puts the neurons that actually won first; it is our alternative reading, not the spec's.
* ``M`` is truncated (``int()`` of the epoch mean, as the code does) by default;
  ``m_rounding="round"`` rounds to the nearest integer instead.

Implementation: the ``k`` iterations are inherently sequential (each winner depends on the weights
updated by the previous step), so they stay a single Python loop; they are *not* processed in
chunks, because batching steps would change the algorithm. Everything inside one step is a tensor
op over all ``L`` neurons (no loop over neurons or features), and the loop is kept lean: the
sample indices are precomputed and the samples gathered once, the per-step decay factors are
precomputed as Python floats, the squared grid distances are precomputed, the winner stays a
0-d tensor (no host synchronisation on GPU), and the difference ``x − c`` is computed once per step
and reused for both the distance and the update. On CPU the winner-only loop runs on NumPy views of
the same memory (identical steps with less per-call overhead; ``benchmarks/cpu_step_costs.py`` measures both loops).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

NEIGHBOURHOODS = ("truncated", "gaussian")
DECAYS = ("asymptotic", "linear")
SAMPLE_ORDERS = ("cycle", "shuffle")
CENTRE_ORDERS = ("flat", "wins")
M_ROUNDINGS = ("truncate", "round")


def decay_factor(t: int | Tensor, num_iterations: int, schedule: str = "asymptotic") -> float | Tensor:
    """Multiplicative decay of δ and η at iteration ``t`` of ``num_iterations``.

    Args:
        t: Iteration index (0-based), an ``int`` or a tensor of indices.
        num_iterations: ``k``, the number of iterations per feature map.
        schedule: ``"asymptotic"`` gives ``1 / (1 + t/(k/2))`` (paper eqs. 2-3, MiniSom's
            ``asymptotic_decay``); ``"linear"`` gives ``1 − t/k``.

    Returns:
        The factor ``δ(t)/δ = η(t)/η``.

    Raises:
        ValueError: If ``schedule`` is unknown.

    """
    if schedule == "asymptotic":
        return 1.0 / (1.0 + t / (num_iterations / 2.0))
    if schedule == "linear":
        return 1.0 - t / num_iterations
    msg = f"Unknown decay schedule {schedule!r}; expected one of {DECAYS}."
    raise ValueError(msg)


class AdaptiveClusterer(nn.Module):
    """Kohonen SOM that pre-clusters encoder features and derives the cluster number ``M`` (eq. 4).

    Args:
        feature_dim: Dimension ``C`` of the feature vectors (paper: 512).
        num_neurons: Number of neurons ``L`` (paper: 25).
        grid_rows: Rows of the neuron grid. ``None`` takes ``√L`` (``L`` must then be a perfect
            square; the paper's 25 gives 5×5). ``L`` must be divisible by ``grid_rows``.
        sigma: Initial neighbourhood radius ``δ`` (paper: 0.5; code default 0.3).
        learning_rate: Initial learning rate ``η`` (paper: 0.5).
        num_iterations: Iterations ``k`` per feature map (paper: 5000).
        neighbourhood: ``"truncated"`` (paper eq. 2, default) or ``"gaussian"`` (MiniSom).
        decay: ``"asymptotic"`` (paper, default) or ``"linear"``; applied to both δ and η.
        sample_order: ``"cycle"`` (``n_t = t mod N``, default) or ``"shuffle"`` (seeded permutation
            of the same indices).
        centre_order: Order of :meth:`cluster_centres`: ``"flat"`` (row-major grid order, spec
            §3.3(b), default) or ``"wins"`` (descending win count).
        m_rounding: ``"truncate"`` (code, default) or ``"round"`` for ``M`` from the mean of ``z``.
        seed: Seed of the weight initialisation and of the ``"shuffle"`` order.

    Buffers (all saved in ``state_dict``):
        weights: ``(L, C)`` neuron weights ``c_l`` in row-major grid order.
        z_sum: Sum of ``z(F_t)`` over the maps of the current statistics epoch (float64).
        num_maps: Number of maps in the current statistics epoch.
        win_counts: ``(L,)`` number of vectors each neuron won in the current epoch (post-fit).
        last_z: ``z`` of the most recent map.
        m: The cluster number ``M`` (0 until a map has been fitted).

    """

    def __init__(
        self,
        feature_dim: int = 512,
        num_neurons: int = 25,
        grid_rows: int | None = None,
        sigma: float = 0.5,
        learning_rate: float = 0.5,
        num_iterations: int = 5000,
        neighbourhood: str = "truncated",
        decay: str = "asymptotic",
        sample_order: str = "cycle",
        centre_order: str = "flat",
        m_rounding: str = "truncate",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if feature_dim < 1 or num_neurons < 1 or num_iterations < 1:
            msg = (
                "feature_dim, num_neurons and num_iterations must be positive, got "
                f"{feature_dim}, {num_neurons}, {num_iterations}."
            )
            raise ValueError(msg)
        if grid_rows is None:
            grid_rows = math.isqrt(num_neurons)
            if grid_rows * grid_rows != num_neurons:
                msg = f"num_neurons={num_neurons} is not a perfect square; pass grid_rows."
                raise ValueError(msg)
        if grid_rows < 1 or num_neurons % grid_rows:
            msg = f"num_neurons={num_neurons} is not divisible by grid_rows={grid_rows}."
            raise ValueError(msg)
        if not (sigma > 0 and learning_rate > 0):
            msg = f"sigma and learning_rate must be positive, got {sigma}, {learning_rate}."
            raise ValueError(msg)
        for name, value, choices in (
            ("neighbourhood", neighbourhood, NEIGHBOURHOODS),
            ("decay", decay, DECAYS),
            ("sample_order", sample_order, SAMPLE_ORDERS),
            ("centre_order", centre_order, CENTRE_ORDERS),
            ("m_rounding", m_rounding, M_ROUNDINGS),
        ):
            if value not in choices:
                msg = f"Unknown {name} {value!r}; expected one of {choices}."
                raise ValueError(msg)

        self.feature_dim = feature_dim
        self.num_neurons = num_neurons
        self.grid_rows = grid_rows
        self.grid_cols = num_neurons // grid_rows
        self.sigma = float(sigma)
        self.learning_rate = float(learning_rate)
        self.num_iterations = num_iterations
        self.neighbourhood = neighbourhood
        self.decay = decay
        self.sample_order = sample_order
        self.centre_order = centre_order
        self.m_rounding = m_rounding
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

        # MiniSom initialisation: uniform in [-1, 1], then unit L2 norm per neuron.
        weights = torch.rand(num_neurons, feature_dim, generator=self._generator) * 2 - 1
        weights = weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.register_buffer("weights", weights)
        self.register_buffer("z_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("num_maps", torch.zeros((), dtype=torch.long))
        self.register_buffer("win_counts", torch.zeros(num_neurons, dtype=torch.long))
        self.register_buffer("last_z", torch.zeros((), dtype=torch.long))
        self.register_buffer("m", torch.zeros((), dtype=torch.long))

        rows = torch.arange(num_neurons) // self.grid_cols
        cols = torch.arange(num_neurons) % self.grid_cols
        coords = torch.stack([rows, cols], dim=1).float()
        # Squared grid distances ‖r_l − r_w‖², (L, L); not state, so not saved.
        self.register_buffer("grid_sq_dist", torch.cdist(coords, coords).square(), persistent=False)

    #: Run the winner-only loop in NumPy on the host, for weights on a GPU too (``False``: the torch loop, on the
    #: weights' device). Each iteration is a few tiny operations over ``(L, C)``, so the cost is per-operation
    #: overhead: at the paper size NumPy took 78-93 ms per 5000-iteration map on a 2-core CPU
    #: (``speed_cpu_step_costs_20261123T*.json``), the torch loop about 300 ms per map on an H200 (2.4 s of
    #: SOM per AC-stage step of 8 maps, ``speed_gpu_paper_20261204T063546.json``). A GPU pays one copy of the
    #: map to the host and of the weights back, per map.
    numpy_loop = True

    weights: Tensor
    z_sum: Tensor
    num_maps: Tensor
    win_counts: Tensor
    last_z: Tensor
    m: Tensor
    grid_sq_dist: Tensor

    def extra_repr(self) -> str:
        """Summarise the configuration."""
        return (
            f"feature_dim={self.feature_dim}, grid={self.grid_rows}x{self.grid_cols}, sigma={self.sigma}, "
            f"learning_rate={self.learning_rate}, num_iterations={self.num_iterations}, "
            f"neighbourhood={self.neighbourhood!r}, decay={self.decay!r}, sample_order={self.sample_order!r}, "
            f"centre_order={self.centre_order!r}"
        )

    # ------------------------------------------------------------------ schedules
    def decay_factors(self) -> list[float]:
        """Per-iteration decay factors ``δ(t)/δ = η(t)/η`` for ``t = 0 … k−1``."""
        k = self.num_iterations
        return [float(decay_factor(t, k, self.decay)) for t in range(k)]

    def sigma_at(self, t: int) -> float:
        """Neighbourhood radius ``δ(t)`` at iteration ``t``."""
        return self.sigma * float(decay_factor(t, self.num_iterations, self.decay))

    def learning_rate_at(self, t: int) -> float:
        """Learning rate ``η(t)`` at iteration ``t``."""
        return self.learning_rate * float(decay_factor(t, self.num_iterations, self.decay))

    def neighbourhood_weights(self, winner: int | Tensor, t: int) -> Tensor:
        """Neighbourhood ``h_l`` of all ``L`` neurons around ``winner`` at iteration ``t`` (eq. 2).

        Args:
            winner: Flat index of the winning neuron.
            t: Iteration index within the current feature map.

        Returns:
            ``(L,)`` weights in [0, 1]; the winner's is 1.

        """
        return self._neighbourhood(self.grid_sq_dist[winner], self.sigma_at(t))

    def _neighbourhood(self, sq_dist: Tensor, sigma_t: float) -> Tensor:
        h = torch.exp(sq_dist * (-0.5 / (sigma_t * sigma_t)))
        if self.neighbourhood == "truncated":
            h = h * (sq_dist <= sigma_t * sigma_t)
        return h

    # ------------------------------------------------------------------ validation
    def _check(self, features: Tensor, name: str = "features") -> Tensor:
        if not isinstance(features, Tensor):
            msg = f"{name} must be a torch.Tensor, got {type(features).__name__}."
            raise ValueError(msg)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            msg = f"{name} must have shape (N, {self.feature_dim}), got {tuple(features.shape)}."
            raise ValueError(msg)
        if features.shape[0] == 0:
            msg = f"{name} is empty (N = 0); need at least one feature vector."
            raise ValueError(msg)
        if not features.is_floating_point():
            msg = f"{name} must be a floating-point tensor, got {features.dtype}."
            raise ValueError(msg)
        if not torch.isfinite(features).all():
            msg = f"{name} contains NaN or infinite values."
            raise ValueError(msg)
        return features.detach().to(device=self.weights.device, dtype=self.weights.dtype)

    # ------------------------------------------------------------------ training
    def _sample_indices(self, num_vectors: int) -> Tensor:
        idx = torch.arange(self.num_iterations) % num_vectors
        if self.sample_order == "shuffle":
            idx = idx[torch.randperm(self.num_iterations, generator=self._generator)]
        return idx

    @torch.no_grad()
    def fit_feature_map(self, features: Tensor) -> int:
        """Run ``k`` SOM iterations on one feature map, then count its winners ``z`` (eq. 4).

        Args:
            features: ``(N, C)`` vectors of one feature map ``F_t`` (e.g. 1024×512). Detached and
                moved to the weights' device and dtype.

        Returns:
            ``z(F_t)``, the number of distinct neurons that win for at least one of the ``N`` vectors
            with the weights after training.

        Raises:
            ValueError: On a wrong shape or feature dim, an empty map, a non-float dtype or
                non-finite values.

        """
        x_all = self._check(features)
        factors = self.decay_factors()
        weights = self.weights
        winner_only = self.neighbourhood == "truncated" and self.sigma < 1.0
        if winner_only and self.numpy_loop:
            # On CPU ``host`` is the weights' own memory; from a GPU it is a copy, written back below.
            host = weights.cpu()
            w_np = host.numpy()
            s_np = x_all.cpu().numpy()[self._sample_indices(x_all.shape[0]).numpy()]  # (k, C)
            rates = [self.learning_rate * f for f in factors]
            for t in range(self.num_iterations):
                diff = s_np[t] - w_np
                w = np.einsum("lc,lc->l", diff, diff).argmin()
                w_np[w] += rates[t] * diff[w]
            if host is not weights:
                weights.copy_(host)
            return self._record(x_all)
        samples = x_all[self._sample_indices(x_all.shape[0]).to(x_all.device)]  # (k, C)
        if winner_only:
            # δ(t) ≤ δ < 1 ≤ distance to any other grid node: h = 1 at the winner, 0 elsewhere.
            # Exactly equivalent to the general update, on the winner row only.
            for t, f in enumerate(factors):
                diff = samples[t] - weights  # (L, C)
                # vector_norm, not einsum: einsum("lc,lc->l") is pathologically slow on CPU at C=512.
                w = torch.linalg.vector_norm(diff, dim=1).argmin().view(1)
                weights.index_add_(0, w, diff[w], alpha=self.learning_rate * f)
        else:
            eta, sigma = self.learning_rate, self.sigma
            for t, f in enumerate(factors):
                diff = samples[t] - weights  # (L, C)
                w = torch.linalg.vector_norm(diff, dim=1).argmin()
                h = self._neighbourhood(self.grid_sq_dist[w], sigma * f)  # (L,)
                weights.addcmul_(h.unsqueeze(1), diff, value=eta * f)
        return self._record(x_all)

    def fit_batch(self, feature_maps: Tensor) -> list[int]:
        """Fit a batch of feature maps one after another (``k`` iterations each).

        Args:
            feature_maps: ``(B, C, H, W)`` encoder features; each map gives ``N = H·W`` vectors.

        Returns:
            ``z`` of each map.

        Raises:
            ValueError: If the input is not 4-D with ``C`` channels (other checks as in
                :meth:`fit_feature_map`).

        """
        if not isinstance(feature_maps, Tensor) or feature_maps.ndim != 4 or feature_maps.shape[1] != self.feature_dim:
            shape = tuple(feature_maps.shape) if isinstance(feature_maps, Tensor) else type(feature_maps).__name__
            msg = f"feature_maps must have shape (B, {self.feature_dim}, H, W), got {shape}."
            raise ValueError(msg)
        vectors = feature_maps.detach().flatten(2).transpose(1, 2)  # (B, N, C)
        return [self.fit_feature_map(v) for v in vectors]

    def _record(self, x_all: Tensor) -> int:
        winners = self._nearest(x_all)
        counts = torch.bincount(winners, minlength=self.num_neurons)
        z = int((counts > 0).sum())
        self.win_counts += counts.to(self.win_counts)
        self.last_z.fill_(z)
        self.z_sum += z
        self.num_maps += 1
        self.m.fill_(self._m_from_mean(float(self.z_sum) / int(self.num_maps)))
        return z

    def _m_from_mean(self, mean_z: float) -> int:
        if self.m_rounding == "round":
            return int(math.floor(mean_z + 0.5))
        return int(mean_z)

    def reset_statistics(self) -> None:
        """Start a new statistics epoch: clear ``z_sum``, ``num_maps`` and ``win_counts``.

        The weights and ``M`` are kept; ``M`` is recomputed from the new epoch as soon as a map is
        fitted, so after the last AC epoch it is that epoch's (truncated) mean of ``z``.
        """
        self.z_sum.zero_()
        self.num_maps.zero_()
        self.win_counts.zero_()

    # ------------------------------------------------------------------ read-out
    def _nearest(self, x: Tensor) -> Tensor:
        # Exact (non-matmul) Euclidean distances, so ties/argmin match the training step.
        dist = torch.cdist(x, self.weights, compute_mode="donot_use_mm_for_euclid_dist")
        return dist.argmin(dim=1)

    @torch.no_grad()
    def nearest(self, features: Tensor) -> Tensor:
        """Flat index of the nearest neuron (the winner, eq. 1) for each vector.

        Args:
            features: ``(N, C)`` vectors.

        Returns:
            ``(N,)`` long tensor of neuron indices in row-major grid order.

        Raises:
            ValueError: On a wrong shape or feature dim, an empty input or non-finite values.

        """
        return self._nearest(self._check(features))

    @property
    def num_clusters(self) -> int:
        """``M`` (eq. 4), the (truncated) mean of ``z`` over the current statistics epoch; 0 before fitting."""
        return int(self.m)

    @property
    def mean_z(self) -> float:
        """Untruncated mean of ``z`` over the current statistics epoch (NaN before fitting)."""
        n = int(self.num_maps)
        return float(self.z_sum) / n if n else float("nan")

    def centre_permutation(self) -> Tensor:
        """Neuron indices in the order used by :meth:`cluster_centres` (see ``centre_order``)."""
        if self.centre_order == "wins":
            return torch.sort(self.win_counts, descending=True, stable=True).indices
        return torch.arange(self.num_neurons, device=self.weights.device)

    def cluster_centres(self) -> Tensor:
        """All ``L`` neuron weights, ordered for NetVLAD initialisation (§3.3(b)).

        The first ``M`` rows are the kept clusters, the remaining ``G = L − M`` the ghost clusters
        (which still take part in NetVLAD's softmax). With ``centre_order="flat"`` (spec) this is
        :attr:`weights` itself in row-major grid order.

        Returns:
            ``(L, C)`` tensor (a detached copy).

        """
        return self.weights[self.centre_permutation()].detach().clone()

    def kept_centres(self) -> Tensor:
        """Return the first ``M`` rows of :meth:`cluster_centres` (the kept, non-ghost clusters).

        Raises:
            RuntimeError: If no feature map has been fitted yet (``M = 0``).

        """
        if self.num_clusters < 1:
            msg = "M is not available: fit at least one feature map first."
            raise RuntimeError(msg)
        return self.cluster_centres()[: self.num_clusters]

    def init_for_netvlad(self) -> tuple[Tensor, int]:
        """Return what stage 2 needs: ``(centres (L, C), M)``, centres ordered as :meth:`cluster_centres`.

        Raises:
            RuntimeError: If no feature map has been fitted yet (``M = 0``).

        """
        if self.num_clusters < 1:
            msg = "M is not available: fit at least one feature map first."
            raise RuntimeError(msg)
        return self.cluster_centres(), self.num_clusters

    def forward(self, features: Tensor) -> Tensor:
        """Alias of :meth:`nearest` (the AC does not change the network's output)."""
        return self.nearest(features)
