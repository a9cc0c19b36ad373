"""Unit tests of DLAN-AC's Adaptive Clusterer (its self-organising map)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer
from anomalib_vadproto.models.dlan_ac import som as som_module
from anomalib_vadproto.models.dlan_ac.som import DeadClusterWarning, decay_factor


def blobs(num_blobs: int, seed: int, per_blob: int = 40, std: float = 0.05, dim: int = 8):
    """Well-separated Gaussian blobs around orthonormal (unit-norm) centres, shuffled."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:num_blobs]
    labels = torch.arange(num_blobs).repeat_interleave(per_blob)
    x = centres[labels] + std * torch.randn(len(labels), dim, generator=g)
    return x[torch.randperm(len(labels), generator=g)], centres


def fitted(num_blobs: int = 5, maps: int = 3, seed: int = 0, **kwargs) -> tuple[AdaptiveClusterer, torch.Tensor]:
    """A clusterer fitted on blob maps; the truncated (winner-only) SOM unless ``neighbourhood`` is given."""
    kwargs.setdefault("neighbourhood", "truncated")
    som = AdaptiveClusterer(feature_dim=8, num_iterations=600, seed=seed, **kwargs)
    for m in range(maps):
        x, centres = blobs(num_blobs, seed=100 * seed + m)
        som.fit_feature_map(x)
    return som, centres


def test_defaults_are_the_paper_values_with_the_released_scripts_neighbourhood():
    som = AdaptiveClusterer()
    assert (som.num_neurons, som.grid_rows, som.grid_cols, som.feature_dim) == (25, 5, 5, 512)
    assert (som.sigma, som.learning_rate, som.num_iterations) == (0.5, 0.5, 5000)
    assert (som.neighbourhood, som.decay, som.sample_order, som.centre_order, som.backend) == (
        "gaussian",  # MiniSom's untruncated form, as the released script runs it
        "asymptotic",
        "cycle",
        "wins",  # kept clusters are live neurons
        "auto",
    )
    assert not som.winner_only and not som.uses_triton()  # CPU weights: the host loop
    # MiniSom initialisation: unit-norm rows.
    torch.testing.assert_close(som.weights.norm(dim=1), torch.ones(25))
    assert som.num_clusters == 0
    assert set(som.state_dict()) == {"weights", "z_sum", "num_maps", "win_counts", "last_counts", "last_z", "m"}


@pytest.mark.parametrize("num_blobs", [3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_truncated_som_finds_blobs_and_counts_m(num_blobs, seed):
    som, centres = fitted(num_blobs, seed=seed)
    assert torch.isfinite(som.weights).all()
    # Each true centre has a neuron close to it, and that neuron is a winner.
    dist = torch.cdist(centres, som.weights)
    assert dist.min(dim=1).values.max() < 0.15
    x, _ = blobs(num_blobs, seed=999)
    winners = som.nearest(x)
    assert set(winners.tolist()) == set(dist.argmin(dim=1).tolist())
    # eq. 4: every map's z equals the number of blobs, so M does too.
    assert som.last_z.item() == num_blobs
    assert som.num_clusters == num_blobs
    assert som.mean_z == num_blobs
    assert som.num_maps.item() == 3
    assert som.win_counts.sum().item() == 3 * 40 * num_blobs


def test_gaussian_som_covers_blobs():
    som, centres = fitted(5, neighbourhood="gaussian")
    assert torch.isfinite(som.weights).all()
    assert torch.cdist(centres, som.weights).min(dim=1).values.max() < 0.15
    # Untruncated neighbours get pulled into the blobs and may split them: M >= number of blobs.
    assert 5 <= som.num_clusters <= 25


def test_m_is_truncated_mean_over_maps_and_reset():
    som = AdaptiveClusterer(feature_dim=8, num_iterations=600, seed=0, neighbourhood="truncated")
    x3, _ = blobs(3, seed=1)
    x2 = x3[x3[:, 2] < 0.5]  # the same data without the third blob
    assert som.fit_feature_map(x3) == 3
    assert som.fit_feature_map(x2) == 2
    assert som.mean_z == 2.5
    assert som.num_clusters == 2  # int(2.5), as the code does
    som.reset_statistics()
    assert som.num_clusters == 2  # M survives until the new epoch has a map
    assert som.num_maps.item() == 0 and som.win_counts.sum().item() == 0
    assert som.fit_feature_map(x3) == 3
    assert som.num_clusters == 3

    rounding = AdaptiveClusterer(
        feature_dim=8, num_iterations=600, seed=0, m_rounding="round", neighbourhood="truncated"
    )
    rounding.fit_feature_map(x3)
    rounding.fit_feature_map(x2)
    assert rounding.num_clusters == 3


def test_determinism_with_seed():
    a, _ = fitted(5, seed=3, sample_order="shuffle")
    b, _ = fitted(5, seed=3, sample_order="shuffle")
    torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
    c = AdaptiveClusterer(feature_dim=8, seed=4)
    assert not torch.equal(AdaptiveClusterer(feature_dim=8, seed=3).weights, c.weights)


def one_step(som: AdaptiveClusterer, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    som.weights.copy_(weights)
    som.fit_feature_map(x.unsqueeze(0))
    return som.weights.clone()


def test_truncated_updates_only_winner_at_half_sigma():
    som = AdaptiveClusterer(feature_dim=4, num_iterations=1, sigma=0.5, learning_rate=0.5, neighbourhood="truncated")
    w0 = torch.randn(25, 4, generator=torch.Generator().manual_seed(0))
    x = w0[12] + 0.01  # the centre neuron of the 5x5 grid wins
    new = one_step(som, w0, x)
    expected = w0.clone()
    expected[12] = w0[12] + 0.5 * 1.0 * (x - w0[12])  # eta(0) = 0.5, h_w = exp(0) = 1
    torch.testing.assert_close(new, expected)
    assert torch.equal(som.neighbourhood_weights(12, 0), torch.eye(25)[12])


def test_truncated_general_path_and_gaussian_one_step():
    w0 = torch.randn(25, 4, generator=torch.Generator().manual_seed(1))
    x = w0[12] + 0.01
    # Truncated with sigma = 1: the 4 direct grid neighbours (distance 1 <= 1) get exp(-1/2);
    # diagonal ones (distance sqrt 2 > 1) get 0.
    som = AdaptiveClusterer(feature_dim=4, num_iterations=1, sigma=1.0, learning_rate=0.5, neighbourhood="truncated")
    h = torch.zeros(25)
    h[12] = 1.0
    h[[7, 11, 13, 17]] = math.exp(-0.5)
    torch.testing.assert_close(one_step(som, w0, x), w0 + 0.5 * h[:, None] * (x - w0))
    # Gaussian (MiniSom) with sigma = 0.5: untruncated, neighbours at distance 1 get exp(-2) ~ 0.14.
    som = AdaptiveClusterer(feature_dim=4, num_iterations=1, sigma=0.5, neighbourhood="gaussian")
    rows, cols = torch.arange(25) // 5, torch.arange(25) % 5
    d2 = ((rows - 2) ** 2 + (cols - 2) ** 2).float()
    h = torch.exp(-d2 / (2 * 0.25))
    torch.testing.assert_close(one_step(som, w0, x), w0 + 0.5 * h[:, None] * (x - w0))


def test_decay_schedule_values():
    som = AdaptiveClusterer(feature_dim=4, sigma=0.5, learning_rate=0.5, num_iterations=5000)
    for t, expected in [(0, 1.0), (2500, 0.5), (5000, 1 / 3), (4999, 1 / (1 + 4999 / 2500))]:
        assert decay_factor(t, 5000) == pytest.approx(expected)
        assert som.sigma_at(t) == pytest.approx(0.5 * expected)
        assert som.learning_rate_at(t) == pytest.approx(0.5 * expected)
    factors = som.decay_factors()
    assert len(factors) == 5000 and factors[0] == 1.0 and factors[2500] == pytest.approx(0.5)
    assert decay_factor(250, 1000, "linear") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="decay"):
        decay_factor(1, 10, "cosine")


def test_state_dict_round_trip():
    som, _ = fitted(5, seed=0)
    buffer = io.BytesIO()
    torch.save(som.state_dict(), buffer)
    buffer.seek(0)
    fresh = AdaptiveClusterer(feature_dim=8, num_iterations=600, seed=123, neighbourhood="truncated")
    assert fresh.num_clusters == 0
    fresh.load_state_dict(torch.load(buffer))
    assert fresh.num_clusters == som.num_clusters == 5
    assert fresh.mean_z == som.mean_z
    torch.testing.assert_close(fresh.weights, som.weights, rtol=0, atol=0)
    torch.testing.assert_close(fresh.win_counts, som.win_counts)
    torch.testing.assert_close(fresh.last_counts, som.last_counts)
    centres, m = fresh.init_for_netvlad()
    assert m == 5 and centres.shape == (25, 8)
    torch.testing.assert_close(fresh.kept_centres(), centres[:5])


def test_centre_order_flat_and_by_wins():
    som, _ = fitted(3, seed=0, centre_order="flat")
    torch.testing.assert_close(som.cluster_centres(), som.weights)  # flattened grid order
    by_wins, _ = fitted(3, seed=0, centre_order="wins")
    perm = by_wins.centre_permutation()
    counts = by_wins.win_counts[perm]
    assert (counts[:-1] >= counts[1:]).all() and (counts[:3] > 0).all() and (counts[3:] == 0).all()
    torch.testing.assert_close(by_wins.kept_centres(), by_wins.weights[perm[:3]])


def test_fit_batch_and_nearest_shapes():
    som = AdaptiveClusterer(feature_dim=8, num_iterations=50)
    zs = som.fit_batch(torch.randn(2, 8, 4, 4))
    assert len(zs) == 2 and som.num_maps.item() == 2
    idx = som.nearest(torch.randn(10, 8))
    assert idx.shape == (10,) and idx.dtype == torch.long and idx.max() < 25
    x = torch.randn(30, 8)
    torch.testing.assert_close(som.nearest(x), torch.cdist(x, som.weights).argmin(1))


def test_unfitted_centres_raise():
    with pytest.raises(RuntimeError, match="fit at least one"):
        AdaptiveClusterer(feature_dim=8).kept_centres()


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (torch.randn(10, 7), r"shape \(N, 8\)"),
        (torch.randn(2, 10, 8), r"shape \(N, 8\)"),
        (torch.empty(0, 8), "empty"),
        (torch.full((4, 8), float("nan")), "NaN"),
        (torch.ones(4, 8, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_input_raises(features, match):
    som = AdaptiveClusterer(feature_dim=8, num_iterations=10)
    with pytest.raises(ValueError, match=match):
        som.fit_feature_map(features)
    with pytest.raises(ValueError, match=match):
        som.nearest(features)
    assert som.num_maps.item() == 0


def test_bad_config_and_batch_raise():
    with pytest.raises(ValueError, match="perfect square"):
        AdaptiveClusterer(num_neurons=24)
    assert AdaptiveClusterer(num_neurons=24, grid_rows=4).grid_cols == 6
    with pytest.raises(ValueError, match="neighbourhood"):
        AdaptiveClusterer(neighbourhood="bubble")
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        AdaptiveClusterer(feature_dim=8).fit_batch(torch.randn(3, 8))


def test_winner_only_fast_path_matches_reference_loop():
    """The CPU (NumPy) winner-only loop equals a plain reading of eqs. 1-3 with the asymptotic decay."""
    x, _ = blobs(4, seed=3)
    som = AdaptiveClusterer(feature_dim=8, num_iterations=300, seed=5, neighbourhood="truncated")
    weights = som.weights.clone().double()
    for t in range(300):
        sample = x[t % len(x)].double()
        winner = torch.linalg.vector_norm(sample - weights, dim=1).argmin()
        weights[winner] += 0.5 / (1 + t / 150) * (sample - weights[winner])
    som.fit_feature_map(x)
    torch.testing.assert_close(som.weights.double(), weights, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("neighbourhood", "z"), [("truncated", 4), ("gaussian", None)])
def test_torch_loop_matches_numpy_loop(monkeypatch, neighbourhood, z):
    """``numpy_loop = False`` (the torch loop on the weights' device) gives the NumPy loop's weights and z."""
    x, _ = blobs(4, seed=7)
    results = []
    for numpy_loop in (True, False):
        monkeypatch.setattr(AdaptiveClusterer, "numpy_loop", numpy_loop)
        som = AdaptiveClusterer(feature_dim=8, num_iterations=300, seed=2, neighbourhood=neighbourhood)
        results.append((som.weights.clone(), som.fit_feature_map(x), som.last_counts.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    assert results[0][1] == results[1][1] == (z or results[0][1]) and results[0][1] >= 4
    assert torch.equal(results[0][2], results[1][2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_numpy_loop_from_gpu_weights_writes_back():
    """On a GPU the loop runs on a host copy and writes the weights back: same weights as on CPU."""
    x, _ = blobs(4, seed=9)
    cpu = AdaptiveClusterer(feature_dim=8, num_iterations=300, seed=4, backend="host")
    gpu = AdaptiveClusterer(feature_dim=8, num_iterations=300, seed=4, backend="host").cuda()
    assert cpu.fit_feature_map(x) == gpu.fit_feature_map(x.cuda())
    assert gpu.weights.is_cuda
    torch.testing.assert_close(gpu.weights.cpu(), cpu.weights)


def reference_loop(som: AdaptiveClusterer, weights: torch.Tensor, x: torch.Tensor, indices: torch.Tensor):
    """Eqs. 1-3 read plainly, in float64, one neuron at a time: the neighbourhood of every neuron from its grid
    coordinates, MiniSom's Gaussian (truncated beyond δ(t) for the paper's form) and the decay schedules."""
    weights = weights.double().clone()
    k = som.num_iterations
    for t in range(k):
        f = 1 / (1 + t / (k / 2)) if som.decay == "asymptotic" else 1 - t / k
        sigma, eta = som.sigma * f, som.learning_rate * f
        sample = x[indices[t]].double()
        winner = int(torch.linalg.vector_norm(sample - weights, dim=1).argmin())
        wr, wc = divmod(winner, som.grid_cols)
        for neuron in range(som.num_neurons):
            r, c = divmod(neuron, som.grid_cols)
            d2 = (r - wr) ** 2 + (c - wc) ** 2
            h = math.exp(-d2 / (2 * sigma * sigma))
            if som.neighbourhood == "truncated" and d2 > sigma * sigma:
                h = 0.0
            weights[neuron] += eta * h * (sample - weights[neuron])
    return weights


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the default: Gaussian, asymptotic, cycle
        {"decay": "linear"},
        {"sample_order": "shuffle"},
        {"sigma": 1.2, "learning_rate": 0.3},
        {"neighbourhood": "truncated", "sigma": 1.5},  # truncated with δ ≥ 1: the general (table) path
        {"num_neurons": 12, "grid_rows": 3},  # a 3x4 grid
    ],
)
def test_host_loop_with_a_neighbourhood_matches_a_reference_loop(kwargs):
    """The vectorised NumPy loop (all L neurons per step, neighbourhood from the distance table) equals a
    straightforward per-neuron loop of eqs. 1-3, for the Gaussian and the truncated general path."""
    x, _ = blobs(4, seed=11)
    som = AdaptiveClusterer(feature_dim=8, num_iterations=250, seed=6, **kwargs)
    assert not som.winner_only
    twin = AdaptiveClusterer(feature_dim=8, num_iterations=250, seed=6, **kwargs)  # same generator state
    expected = reference_loop(som, som.weights, x, twin._sample_indices(len(x)))
    som.fit_feature_map(x)
    torch.testing.assert_close(som.weights.double(), expected, atol=2e-5, rtol=1e-5)
    # Neurons that won nothing moved too (the winner-only form leaves them where they started).
    moved = int(((som.weights - twin.weights).norm(dim=1) > 1e-3).sum())
    assert moved > len(set(som.nearest(x).tolist()))


def test_neighbourhood_table_covers_every_pair():
    som = AdaptiveClusterer(feature_dim=4, num_iterations=10, sigma=1.1, neighbourhood="truncated")
    table, code = som.neighbourhood_table()
    assert table.shape == (10, 15) and code.shape == (25, 25)  # 15 distinct squared distances on a 5x5 grid
    for t in (0, 3, 9):
        for winner in (0, 12, 24):
            expected = som.learning_rate_at(t) * som.neighbourhood_weights(winner, t).double()
            torch.testing.assert_close(torch.from_numpy(table[t][code[winner]]), expected)


def hand_som(neighbourhood: str, **kwargs) -> AdaptiveClusterer:
    """2x2 grid (neurons 0 1 / 2 3) with weights on the unit axes, one step per map, δ = η = 0.5."""
    som = AdaptiveClusterer(feature_dim=2, num_neurons=4, num_iterations=1, neighbourhood=neighbourhood, **kwargs)
    som.weights.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    return som


MAP_A = torch.tensor([[1.0, 0.0], [0.5, 0.45]])  # the step uses (1, 0), which neuron 0 already sits on
MAP_B = torch.tensor([[-1.0, 0.0], [0.0, -1.0]])


def test_m_counted_by_hand_truncated():
    # Winner-only: every step's winner already sits on its sample, so nothing moves.
    # Map A: (1,0) -> 0, (0.5,0.45) -> 0 (0.4525 against 0.5525 to neuron 1): z = 1.
    # Map B: (-1,0) -> 2, (0,-1) -> 3: z = 2.  M = int(1.5) = 1 (rounded: 2).
    som = hand_som("truncated")
    assert som.fit_feature_map(MAP_A) == 1
    assert som.fit_feature_map(MAP_B) == 2
    assert som.mean_z == 1.5 and som.num_clusters == 1
    assert som.win_counts.tolist() == [2, 0, 1, 1] and som.last_counts.tolist() == [0, 0, 1, 1]
    rounded = hand_som("truncated", m_rounding="round")
    rounded.fit_batch(torch.stack([MAP_A, MAP_B]).transpose(1, 2).unsqueeze(-1))  # (2, C, N, 1)
    assert rounded.num_clusters == 2


def test_m_counted_by_hand_gaussian():
    # Map A, winner 0 at grid (0,0): h = exp(-2 d²) = 1, e^-2, e^-2, e^-4 for neurons 0..3, η = 0.5:
    # c1 = (0,1) + 0.5 e^-2 ((1,0) - (0,1)) = (0.0677, 0.9323): now nearer to (0.5,0.45) (0.4195 < 0.4525),
    # so map A has z = 2. Map B: winners 2 and 3 again, z = 2. M = int(2.0) = 2.
    som = hand_som("gaussian")
    g = 0.5 * math.exp(-2)
    assert som.fit_feature_map(MAP_A) == 2
    expected = torch.tensor([[1.0, 0.0], [g, 1 - g], [-1 + 2 * g, 0.0], [0.0, -1.0]])
    expected[3] += 0.5 * math.exp(-4) * (torch.tensor([1.0, 0.0]) - expected[3])
    torch.testing.assert_close(som.weights, expected)
    assert som.fit_feature_map(MAP_B) == 2
    assert som.mean_z == 2.0 and som.num_clusters == 2
    assert som.last_counts.tolist() == [0, 0, 1, 1] and som.win_counts.tolist() == [1, 1, 1, 1]


def dead_neuron_som(centre_order: str) -> AdaptiveClusterer:
    """Truncated SOM whose neurons 0 and 1 start far from two clusters at (1,0) and (0,1): they never win."""
    som = AdaptiveClusterer(
        feature_dim=2, num_neurons=4, num_iterations=50, neighbourhood="truncated", centre_order=centre_order
    )
    som.weights.copy_(torch.tensor([[-1.0, 0.0], [0.0, -1.0], [0.9, 0.1], [0.1, 0.9]]))
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        x = torch.eye(2).repeat(10, 1) + 0.05 * torch.randn(20, 2, generator=g)
        assert som.fit_feature_map(x) == 2
    return som


def test_flat_order_warns_when_a_kept_neuron_never_won():
    flat = dead_neuron_som("flat")
    assert flat.num_clusters == 2 and flat.dead_kept_neurons().tolist() == [0, 1]
    torch.testing.assert_close(flat.weights[:2], torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))  # never moved
    with pytest.warns(DeadClusterWarning, match=r"2 of the M = 2 kept SOM neurons \(\[0, 1\]\) won no"):
        centres, m = flat.init_for_netvlad()
    assert m == 2 and torch.equal(centres, flat.weights)


def test_wins_order_keeps_live_neurons_without_warning(recwarn):
    wins = dead_neuron_som("wins")
    assert wins.dead_kept_neurons().numel() == 0
    centres, m = wins.init_for_netvlad()
    assert not [w for w in recwarn if issubclass(w.category, DeadClusterWarning)]
    assert sorted(wins.centre_permutation()[:m].tolist()) == [2, 3]
    torch.testing.assert_close(centres[:m], wins.weights[wins.centre_permutation()[:m]])


def test_wins_order_puts_neurons_nearest_with_the_final_weights_first():
    som = AdaptiveClusterer(feature_dim=4, num_neurons=6, grid_rows=2)
    som.win_counts.copy_(torch.tensor([50, 0, 900, 10, 10, 400]))
    som.last_counts.copy_(torch.tensor([3, 0, 0, 7, 5, 0]))  # 2 and 5 won earlier, not on the latest map
    assert som.centre_permutation().tolist() == [0, 3, 4, 2, 5, 1]
    som.m.fill_(3)
    assert som.dead_kept_neurons().numel() == 0


def test_checkpoint_without_last_counts_still_loads():
    som, _ = fitted(3, seed=0, centre_order="wins")
    state = som.state_dict()
    del state["last_counts"]  # saved before the buffer existed
    fresh = AdaptiveClusterer(feature_dim=8, num_iterations=600, neighbourhood="truncated")
    fresh.load_state_dict(state)
    assert fresh.last_counts.sum() == 0 and fresh.num_clusters == 3
    counts = fresh.win_counts[fresh.centre_permutation()]
    assert (counts[:-1] >= counts[1:]).all()  # the epoch's counts alone


@pytest.mark.parametrize("neighbourhood", ["gaussian", "truncated"])
def test_fit_batch_equals_fit_feature_map_in_turn(neighbourhood):
    maps = torch.stack([blobs(3, seed=s)[0][:64] for s in (1, 2, 3)])  # (3, N, C)
    one = AdaptiveClusterer(feature_dim=8, num_iterations=200, seed=1, neighbourhood=neighbourhood)
    batch = AdaptiveClusterer(feature_dim=8, num_iterations=200, seed=1, neighbourhood=neighbourhood)
    zs = [one.fit_feature_map(x) for x in maps]
    assert batch.fit_batch(maps.transpose(1, 2).reshape(3, 8, 8, 8)) == zs
    torch.testing.assert_close(batch.weights, one.weights, rtol=0, atol=0)
    for name in ("win_counts", "last_counts", "last_z", "num_maps", "z_sum", "m"):
        assert torch.equal(getattr(batch, name), getattr(one, name)), name


def test_backend_choice(monkeypatch):
    assert not AdaptiveClusterer(feature_dim=4, backend="host").uses_triton()
    assert not AdaptiveClusterer(feature_dim=4).uses_triton()  # auto on CPU weights
    monkeypatch.setattr(som_module, "triton_kernels", lambda: None)
    with pytest.raises(RuntimeError, match="needs the triton package"):
        AdaptiveClusterer(feature_dim=4, backend="triton").uses_triton()
    with pytest.raises(ValueError, match="backend"):
        AdaptiveClusterer(feature_dim=4, backend="cuda")
