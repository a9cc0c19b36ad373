"""Adaptive Clusterer (AC) of DLAN-AC (Yang et al., ECCV 2022): a Kohonen self-organising map.

Paper §3.2 (eqs. 1-4). Stage 1 only: the SOM is trained on the
*detached* encoder feature vectors and does not change the network's forward output. What it
hands to stage 2 is the neuron weights ``c*_l`` (initial NetVLAD centres) and the number of
clusters ``M`` (the number of kept, non-ghost NetVLAD clusters of DLAN, paper §3.3).

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
and (eq. 4) ``M = mean over the maps of z``, truncated to an integer as the code does.
Statistics are accumulated per epoch (:meth:`AdaptiveClusterer.reset_statistics` starts a new one);
``M`` is refreshed after every map, so after the last AC epoch it holds that epoch's
average.

Paper-vs-code choices (each exposed as a constructor option; the defaults make every kept cluster live):

* ``neighbourhood="gaussian"`` (default; MiniSom's, used by the released script): untruncated, so every
  neuron is pulled towards every sample with ``h_l > 0`` (the winner's grid neighbours with
  ``exp(−1/(2·0.25)) ≈ 0.14`` at ``t = 0`` and ``δ = 0.5``, much less further away on the grid), and the
  grid follows the data instead of leaving neurons at their random initialisation.
  ``neighbourhood="truncated"`` (paper eq. 2 read literally): ``h_l = 0`` when ``‖r_l − r_w‖ > δ(t)``.
  Grid neighbours are at distance ≥ 1, so with ``δ < 1`` (the paper's 0.5) only the winner moves: the AC
  is then online competitive k-means, and neurons that start far from the data never win (on synthetic
  clusters one neuron can win everything, ``M = 1``). This case takes an exactly equivalent fast path that
  updates the winner row only.
* ``centre_order="wins"`` (default): "the first M" clusters of paper §3.3 are the neurons that win vectors of the
  latest map with the weights handed to DLAN (``last_counts``), then the others, each group by descending win
  count over the last statistics epoch (stable, ties by index). Every kept neuron then won at least one vector
  of that epoch (``M ≤ max z ≤`` the number of neurons that won anything), and when the latest map has
  ``z ≥ M`` every kept neuron is also nearest to some of its vectors with the final weights, so it starts
  stage 2 with assignment mass. (Epoch counts alone are not enough: the weights move on after a neuron's
  wins, and at α = 100 a centre that is nobody's nearest gets ~0 mass.)
  ``centre_order="flat"`` takes the first ``M`` indices of the row-major grid literally (a literal reading
  of the paper); under the truncated neighbourhood those can be neurons that never won (dead clusters: no
  assignment mass at α = 100, zero gradient, the same prototype for every input), so
  :meth:`AdaptiveClusterer.init_for_netvlad` warns (:class:`DeadClusterWarning`) whenever a kept neuron
  won nothing in the last epoch.
* ``decay="asymptotic"`` (paper, default) or ``decay="linear"`` (``x · (1 − t/k)``,
  decays to zero; an option for experiments, not used by the paper).
* ``sample_order="cycle"`` (default; "cycling through its vectors", MiniSom
  ``train(..., random_order=False)``: ``n_t = t mod N``) or ``"shuffle"`` (the same multiset of
  indices in a seeded random order, MiniSom ``random_order=True``).
* Paper hyper-parameters are the defaults: ``δ = η = 0.5``, ``k = 5000``, ``L = 25`` on a 5×5 grid
  (the released script's defaults: σ = 0.3, lr = 0.5).
* Initialisation follows MiniSom: uniform in [−1, 1], then L2-normalised per neuron.
* ``M`` is truncated (``int()`` of the epoch mean, as the code does) by default;
  ``m_rounding="round"`` rounds to the nearest integer instead.

Implementation and cost. The ``k`` iterations are inherently sequential (each winner depends on the weights
updated by the previous step), and so are the maps (the weights carry over); steps are never batched, since
that would change the algorithm. Everything inside one step is vectorised over the ``L`` neurons (no loop over
neurons or features). Three loops compute the same steps (``backend``):

* **Triton kernel** (``backend="auto"`` with the weights on a CUDA device and ``triton`` importable, or
  ``backend="triton"``): :mod:`.som_triton` runs a whole batch of maps, all ``k`` steps each, in one launch of
  one program that keeps the ``L × C`` weights in registers; the winners of each map's ``N`` vectors (for
  ``z``) are then read out in one batched distance call. Expected cost: a step is a ``32 × 512`` tile
  operation with block reductions (distances, argmin) across the program's 16 warps, 1-5 µs, so roughly
  5-25 ms per paper-size map (2-10 minutes for Ped2's ~25,000 maps of 10 AC epochs, against 40-50 minutes on
  the host). **The GPU time is not yet measured** (no GPU was available): the kernel has only run in Triton's
  interpreter on CPU, where the tests check it against the host loop, and been compiled (not run) for sm_80
  and sm_90 (128 registers per thread at 16 warps, no spills); ``python -m benchmarks.som_speed`` times it when CUDA
  is present.
* **Host NumPy loop** (``backend="host"``, or ``"auto"`` on CPU; ``numpy_loop = True``): on NumPy views of the
  weights (a copy from a GPU, written back after each map), with precomputed sample indices and per-step
  factors. The winner-only case updates one row; the general case (Gaussian, or truncated with ``δ ≥ 1``)
  takes the per-step neighbourhood from a ``(k, U)`` table over the ``U`` distinct squared grid distances and
  updates all ``L × C`` weights in place. On this project's 2-core CPU a paper-size map (512 × 32×32,
  ``k = 5000``, read-out included) took 97 ms of CPU (122 ms wall, on a busy machine) with the Gaussian and
  82 ms (85 ms) winner-only; lite maps (128 × 16×16) 56 and 48 ms (``python -m benchmarks.som_speed``).
  About 40-50 minutes of SOM for Ped2's ~25,000 maps.
* **torch loop** (``numpy_loop = False`` with the host backend): the same steps as tensor ops on the weights'
  device, the original implementation (≈ 300 ms per map on an H200: many tiny kernels). Tests check the NumPy
  loop against it and against plain per-neuron loops, and the kernel against the NumPy loop.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from anomalib_vadproto.errors import check_choice

from .dlan import assignment_statistics

NEIGHBOURHOODS = ("gaussian", "truncated")
DECAYS = ("asymptotic", "linear")
SAMPLE_ORDERS = ("cycle", "shuffle")
CENTRE_ORDERS = ("wins", "flat")
M_ROUNDINGS = ("truncate", "round")
BACKENDS = ("auto", "host", "triton")


class DeadClusterWarning(UserWarning):
    """A kept ("first M") cluster handed to DLAN is a SOM neuron that won no feature vector."""


_TRITON: list[ModuleType | None] = []


def triton_kernels() -> ModuleType | None:
    """Return the :mod:`.som_triton` module, or ``None`` when ``triton`` cannot be imported (cached)."""
    if not _TRITON:
        try:
            from . import som_triton
        except ImportError:
            som_triton = None
        _TRITON.append(som_triton)
    return _TRITON[0]


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
    if check_choice("decay", schedule, DECAYS) == "asymptotic":
        return 1.0 / (1.0 + t / (num_iterations / 2.0))
    return 1.0 - t / num_iterations  # linear


class AdaptiveClusterer(nn.Module):
    """Kohonen SOM that pre-clusters encoder features and derives the cluster number ``M`` (eq. 4).

    Args:
        feature_dim: Dimension ``C`` of the feature vectors (paper: 512).
        num_neurons: Number of neurons ``L`` (paper: 25).
        grid_rows: Rows of the neuron grid. ``None`` takes ``√L`` (``L`` must then be a perfect
            square; the paper's 25 gives 5×5). ``L`` must be divisible by ``grid_rows``.
        sigma: Initial neighbourhood radius ``δ`` (paper: 0.5; the released script's default 0.3).
        learning_rate: Initial learning rate ``η`` (paper: 0.5).
        num_iterations: Iterations ``k`` per feature map (paper: 5000).
        neighbourhood: ``"gaussian"`` (MiniSom's untruncated Gaussian, the released script; default) or
            ``"truncated"`` (paper eq. 2 literally: winner-only at ``δ < 1``).
        decay: ``"asymptotic"`` (paper, default) or ``"linear"``; applied to both δ and η.
        sample_order: ``"cycle"`` (``n_t = t mod N``, default) or ``"shuffle"`` (seeded permutation
            of the same indices).
        centre_order: Order of :meth:`cluster_centres`: ``"wins"`` (descending win count, default) or
            ``"flat"`` (row-major grid order; warns at :meth:`init_for_netvlad` if a kept neuron never won).
        m_rounding: ``"truncate"`` (code, default) or ``"round"`` for ``M`` from the mean of ``z``.
        backend: ``"auto"`` (default): the fused Triton kernel when the weights are on a CUDA device in
            float32 and ``triton`` is importable, the host loop otherwise; ``"host"`` forces the host loop
            (NumPy, or torch with ``numpy_loop = False``); ``"triton"`` forces the kernel (on CPU tensors
            only under ``TRITON_INTERPRET=1``).
        seed: Seed of the weight initialisation and of the ``"shuffle"`` order.

    Buffers (all saved in ``state_dict``):
        weights: ``(L, C)`` neuron weights ``c_l`` in row-major grid order.
        z_sum: Sum of ``z(F_t)`` over the maps of the current statistics epoch (float64).
        num_maps: Number of maps in the current statistics epoch.
        win_counts: ``(L,)`` number of vectors each neuron won in the current epoch (each map counted with
            the weights after that map).
        last_counts: ``(L,)`` number of vectors of the most recent map each neuron won with the weights after
            it, i.e. the current weights (used by ``centre_order="wins"``).
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
        neighbourhood: str = "gaussian",
        decay: str = "asymptotic",
        sample_order: str = "cycle",
        centre_order: str = "wins",
        m_rounding: str = "truncate",
        backend: str = "auto",
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
            ("backend", backend, BACKENDS),
        ):
            check_choice(name, value, choices)

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
        self.backend = backend
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._cache: dict[tuple, object] = {}  # per-setting schedules and neighbourhood tables (not state)

        # MiniSom initialisation: uniform in [-1, 1], then unit L2 norm per neuron.
        weights = torch.rand(num_neurons, feature_dim, generator=self._generator) * 2 - 1
        weights = weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.register_buffer("weights", weights)
        self.register_buffer("z_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("num_maps", torch.zeros((), dtype=torch.long))
        self.register_buffer("win_counts", torch.zeros(num_neurons, dtype=torch.long))
        self.register_buffer("last_counts", torch.zeros(num_neurons, dtype=torch.long))
        self.register_buffer("last_z", torch.zeros((), dtype=torch.long))
        self.register_buffer("m", torch.zeros((), dtype=torch.long))

        rows = torch.arange(num_neurons) // self.grid_cols
        cols = torch.arange(num_neurons) % self.grid_cols
        coords = torch.stack([rows, cols], dim=1).float()
        # Squared grid distances ‖r_l − r_w‖², (L, L); not state, so not saved.
        self.register_buffer("grid_sq_dist", torch.cdist(coords, coords).square(), persistent=False)

    #: Host backend: run the loop in NumPy on the host, for weights on a GPU too (``False``: the torch loop,
    #: on the weights' device). Each iteration is a few small operations over ``(L, C)``, so the cost is
    #: per-operation overhead: NumPy is about 3x faster than torch on CPU, and the torch loop took about
    #: 300 ms per paper-size map on an H200 (the model README's *Speed of the Adaptive Clusterer*). A GPU
    #: pays one copy of the map to the host and of the weights back, per map.
    numpy_loop = True

    #: Warps of the Triton kernel's single program; ``None`` takes ``som_triton.num_warps_for`` (16 at the paper
    #: size, 4 lite). Not tuned on a GPU yet.
    triton_num_warps: int | None = None

    weights: Tensor
    z_sum: Tensor
    num_maps: Tensor
    win_counts: Tensor
    last_counts: Tensor
    last_z: Tensor
    m: Tensor
    grid_sq_dist: Tensor

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        key = prefix + "last_counts"
        if key not in state_dict and prefix + "win_counts" in state_dict:
            # A checkpoint from before ``last_counts``: "wins" then orders by the epoch's counts alone.
            state_dict[key] = torch.zeros_like(self.last_counts)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        """Summarise the configuration."""
        return (
            f"feature_dim={self.feature_dim}, grid={self.grid_rows}x{self.grid_cols}, sigma={self.sigma}, "
            f"learning_rate={self.learning_rate}, num_iterations={self.num_iterations}, "
            f"neighbourhood={self.neighbourhood!r}, decay={self.decay!r}, sample_order={self.sample_order!r}, "
            f"centre_order={self.centre_order!r}, backend={self.backend!r}"
        )

    # ------------------------------------------------------------------ schedules
    def decay_factors(self) -> list[float]:
        """Per-iteration decay factors ``δ(t)/δ = η(t)/η`` for ``t = 0 … k−1``."""
        k = self.num_iterations
        return [float(decay_factor(t, k, self.decay)) for t in range(k)]

    def schedules(self) -> dict[str, np.ndarray]:
        """Per-iteration schedules (float64, length ``k``) shared by all loops.

        Returns:
            ``{"rate": η(t), "coef": −1/(2δ(t)²), "radius2": δ(t)²}`` (cached per setting; do not modify).

        """
        key = ("schedules", self.num_iterations, self.decay, self.sigma, self.learning_rate)
        if key not in self._cache:
            factors = np.asarray(self.decay_factors(), dtype=np.float64)
            sigma = self.sigma * factors
            # A linear decay reaches δ(t) = 0 only at t = k, never inside the loop; guard the division anyway.
            radius2 = np.maximum(sigma * sigma, np.finfo(np.float64).tiny)
            self._cache[key] = {"rate": self.learning_rate * factors, "coef": -0.5 / radius2, "radius2": radius2}
        return self._cache[key]

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

    @property
    def winner_only(self) -> bool:
        """Whether a step moves the winner only: the truncated neighbourhood with ``δ < 1``."""
        return self.neighbourhood == "truncated" and self.sigma < 1.0

    def neighbourhood_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``η(t) · h`` for every step and every distinct squared grid distance, for the host loop.

        Returns:
            ``(table (k, U) float64, code (L, L) int)`` with ``U`` the number of distinct values of
            ``‖r_l − r_w‖²``: the update factor of neuron ``l`` at step ``t`` with winner ``w`` is
            ``table[t, code[w, l]]``. ``U ≤ L`` (25 neurons on a 5×5 grid have 15), so the table stays
            small for any grid, unlike a ``(k, L, L)`` one. Cached per setting; do not modify.

        """
        key = ("table", self.num_iterations, self.decay, self.sigma, self.learning_rate, self.neighbourhood)
        if key not in self._cache:
            values, code = np.unique(self.grid_sq_dist.cpu().double().numpy(), return_inverse=True)
            sched = self.schedules()
            h = np.exp(values[None, :] * sched["coef"][:, None])  # (k, U)
            if self.neighbourhood == "truncated":
                h = h * (values[None, :] <= sched["radius2"][:, None])
            self._cache[key] = (sched["rate"][:, None] * h, code.reshape(self.num_neurons, self.num_neurons))
        return self._cache[key]

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

    def _maps_from_batch(self, feature_maps: Tensor) -> Tensor:
        if not isinstance(feature_maps, Tensor) or feature_maps.ndim != 4 or feature_maps.shape[1] != self.feature_dim:
            shape = tuple(feature_maps.shape) if isinstance(feature_maps, Tensor) else type(feature_maps).__name__
            msg = f"feature_maps must have shape (B, {self.feature_dim}, H, W), got {shape}."
            raise ValueError(msg)
        vectors = feature_maps.detach().flatten(2).transpose(1, 2)  # (B, N, C)
        checked = self._check(vectors.reshape(-1, self.feature_dim))
        return checked.reshape(vectors.shape)

    # ------------------------------------------------------------------ training
    def _sample_indices(self, num_vectors: int) -> Tensor:
        idx = torch.arange(self.num_iterations) % num_vectors
        if self.sample_order == "shuffle":
            idx = idx[torch.randperm(self.num_iterations, generator=self._generator)]
        return idx

    def uses_triton(self) -> bool:
        """Whether the next fit runs the fused Triton kernel (see ``backend``).

        Raises:
            RuntimeError: If ``backend="triton"`` and ``triton`` cannot be imported.

        """
        if self.backend == "host":
            return False
        if self.backend == "triton":
            if triton_kernels() is None:
                msg = "backend='triton' needs the triton package (pip install triton); use backend='host'."
                raise RuntimeError(msg)
            return True
        return self.weights.is_cuda and self.weights.dtype == torch.float32 and triton_kernels() is not None

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
        return self._fit_maps(self._check(features).unsqueeze(0))[0]

    @torch.no_grad()
    def fit_batch(self, feature_maps: Tensor) -> list[int]:
        """Fit a batch of feature maps one after another (``k`` iterations each).

        With the Triton backend the whole batch is one kernel launch; the host loops go map by map. The
        result is the same as :meth:`fit_feature_map` on each map in turn.

        Args:
            feature_maps: ``(B, C, H, W)`` encoder features; each map gives ``N = H·W`` vectors.

        Returns:
            ``z`` of each map.

        Raises:
            ValueError: If the input is not 4-D with ``C`` channels (other checks as in
                :meth:`fit_feature_map`).

        """
        return self._fit_maps(self._maps_from_batch(feature_maps))

    def _fit_maps(self, maps: Tensor) -> list[int]:
        if self.uses_triton():
            snapshots = self._triton_loop(maps)
            self.weights.copy_(snapshots[-1])
            return self._record(maps, snapshots)
        zs = []
        for x in maps:
            self._host_loop(x)
            zs += self._record(x.unsqueeze(0), self.weights.unsqueeze(0))
        return zs

    def _triton_loop(self, maps: Tensor) -> Tensor:
        kernels = triton_kernels()
        device = self.weights.device
        num_maps, num_vectors, _ = maps.shape
        if maps.numel() >= 2**31:
            msg = f"{num_maps} maps of {num_vectors} vectors are too many for one launch; pass fewer maps."
            raise ValueError(msg)
        indices = torch.stack([self._sample_indices(num_vectors) for _ in range(num_maps)])
        sched = {key: torch.as_tensor(v, dtype=torch.float32, device=device) for key, v in self.schedules().items()}
        snapshots = torch.empty(num_maps, self.num_neurons, self.feature_dim, device=device, dtype=torch.float32)
        return kernels.fit_maps(
            self.weights.float().contiguous(),
            maps.float().contiguous(),
            indices.to(device=device, dtype=torch.int32),
            sched["rate"],
            sched["coef"],
            sched["radius2"],
            self.grid_cols,
            self.neighbourhood == "truncated",
            snapshots,
            self.triton_num_warps,
        )

    def _host_loop(self, x_all: Tensor) -> None:
        weights = self.weights
        idx = self._sample_indices(x_all.shape[0])
        if self.numpy_loop:
            # On CPU ``host`` is the weights' own memory; from a GPU it is a copy, written back below.
            host = weights.cpu()
            w_np = host.numpy()
            s_np = x_all.cpu().numpy()[idx.numpy()]  # (k, C)
            if self.winner_only:
                rates = self.schedules()["rate"].tolist()
                for t in range(self.num_iterations):
                    diff = s_np[t] - w_np
                    w = np.einsum("lc,lc->l", diff, diff).argmin()
                    w_np[w] += rates[t] * diff[w]
            else:
                table, code = self.neighbourhood_table()
                table = table.astype(w_np.dtype)
                diff = np.empty_like(w_np)
                for t in range(self.num_iterations):
                    np.subtract(s_np[t], w_np, out=diff)
                    w = np.einsum("lc,lc->l", diff, diff).argmin()
                    diff *= table[t].take(code[w])[:, None]  # η(t) h_l (x − c_l), all L rows at once
                    w_np += diff
            if host is not weights:
                weights.copy_(host)
            return
        samples = x_all[idx.to(x_all.device)]  # (k, C)
        factors = self.decay_factors()
        if self.winner_only:
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

    def _record(self, maps: Tensor, snapshots: Tensor) -> list[int]:
        """Count each map's winners with the weights after that map; update the epoch statistics and ``M``."""
        num_maps = maps.shape[0]
        winners = self._nearest(maps, snapshots.to(maps.dtype))  # (B, N)
        # One-hot sums, not bincount: bincount has no deterministic CUDA implementation.
        counts = torch.nn.functional.one_hot(winners, self.num_neurons).sum(dim=1)  # (B, L)
        zs = (counts > 0).sum(dim=1)
        self.win_counts += counts.sum(dim=0).to(self.win_counts)
        self.last_counts.copy_(counts[-1])
        self.last_z.copy_(zs[-1])
        self.z_sum += zs.sum().to(self.z_sum)
        self.num_maps += num_maps
        self.m.fill_(self._m_from_mean(float(self.z_sum) / int(self.num_maps)))
        return zs.tolist()

    def _m_from_mean(self, mean_z: float) -> int:
        if self.m_rounding == "round":
            return int(math.floor(mean_z + 0.5))
        return int(mean_z)

    def reset_statistics(self) -> None:
        """Start a new statistics epoch: clear ``z_sum``, ``num_maps``, ``win_counts`` and ``last_counts``.

        The weights and ``M`` are kept; ``M`` is recomputed from the new epoch as soon as a map is
        fitted, so after the last AC epoch it is that epoch's (truncated) mean of ``z``.
        """
        self.z_sum.zero_()
        self.num_maps.zero_()
        self.win_counts.zero_()
        self.last_counts.zero_()

    # ------------------------------------------------------------------ read-out
    def _nearest(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        # Exact (non-matmul) Euclidean distances, so ties/argmin match the training step. Batched:
        # x (B, N, C) against weights (B, L, C) gives (B, N).
        weights = self.weights if weights is None else weights
        dist = torch.cdist(x, weights, compute_mode="donot_use_mm_for_euclid_dist")
        return dist.argmin(dim=-1)

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
            # The neurons that win vectors of the latest map with the current weights first, each group by
            # descending win count over the epoch (stable: ties by index).
            key = (self.last_counts > 0).long() * (int(self.win_counts.max()) + 1) + self.win_counts
            return torch.sort(key, descending=True, stable=True).indices
        return torch.arange(self.num_neurons, device=self.weights.device)

    def cluster_centres(self) -> Tensor:
        """All ``L`` neuron weights, ordered for NetVLAD initialisation (paper §3.3).

        The first ``M`` rows are the kept clusters, the remaining ``G = L − M`` the ghost clusters
        (which still take part in NetVLAD's softmax). With ``centre_order="flat"`` this is
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
        self._require_m()
        return self.cluster_centres()[: self.num_clusters]

    def dead_kept_neurons(self) -> Tensor:
        """Flat indices of the kept neurons (the first ``M`` of :meth:`cluster_centres`) that won no vector.

        Counted over the current statistics epoch (``win_counts``). Empty with ``centre_order="wins"`` after
        any fitted map; with ``"flat"`` and the truncated neighbourhood it often is not (neurons that never won
        stay at their random initialisation).
        """
        kept = self.centre_permutation()[: self.num_clusters]
        return kept[self.win_counts[kept] == 0]

    def _require_m(self) -> None:
        if self.num_clusters < 1:
            msg = "M is not available: fit at least one feature map first."
            raise RuntimeError(msg)

    def init_for_netvlad(self) -> tuple[Tensor, int]:
        """Return what stage 2 needs: ``(centres (L, C), M)``, centres ordered as :meth:`cluster_centres`.

        Warns with :class:`DeadClusterWarning` if a kept neuron won no vector in the current statistics
        epoch (possible with ``centre_order="flat"``): such a cluster gets no assignment mass at α = 100,
        no gradient, and a prototype that is the same for every input.

        Raises:
            RuntimeError: If no feature map has been fitted yet (``M = 0``).

        """
        self._require_m()
        dead = self.dead_kept_neurons()
        if dead.numel():
            msg = (
                f"{dead.numel()} of the M = {self.num_clusters} kept SOM neurons ({dead.tolist()}) won no feature "
                f"vector in the last statistics epoch (centre_order={self.centre_order!r}, "
                f"neighbourhood={self.neighbourhood!r}): their DLAN clusters will get no assignment mass and no "
                "gradient, and give the same prototype for every input. Use centre_order='wins' (the default) "
                "and/or neighbourhood='gaussian'."
            )
            warnings.warn(msg, DeadClusterWarning, stacklevel=2)
        return self.cluster_centres(), self.num_clusters

    @torch.no_grad()
    def assignment_statistics(self, features: Tensor, alpha: float = 100.0) -> dict[str, float | list[float]]:
        """How DLAN's soft assignment would start from these centres: entropy and mass on the kept clusters.

        The assignment at DLAN's initialisation is ``softmax_l(−α‖F^n − c_l‖²)`` over :meth:`cluster_centres`,
        the first ``M`` kept; see :func:`~anomalib_vadproto.models.dlan_ac.dlan.assignment_statistics` for the
        keys. One distance matrix, so cheap enough for a batch of maps.

        Args:
            features: ``(B, C, H, W)`` feature maps or ``(N, C)`` vectors (unit-norm in the recommended
                reading).
            alpha: NetVLAD's ``α`` (the model's ``alpha``; 100 by default).

        Raises:
            RuntimeError: If no feature map has been fitted yet (``M = 0``).

        """
        self._require_m()
        if isinstance(features, Tensor) and features.ndim == 4:
            x = self._maps_from_batch(features).reshape(-1, self.feature_dim)
        else:
            x = self._check(features)
        dist = torch.cdist(x, self.cluster_centres(), compute_mode="donot_use_mm_for_euclid_dist")
        logits = (-alpha * dist.square()).T.unsqueeze(0)  # (1, L, N)
        return assignment_statistics(logits, self.num_clusters)

    def forward(self, features: Tensor) -> Tensor:
        """Alias of :meth:`nearest` (the AC does not change the network's output)."""
        return self.nearest(features)
