"""Unit tests of DLAN-AC: NetVLAD at initialisation, DRCS, the prototype read, stages and losses."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import yaml

from anomalib_vadproto import DlanAc
from anomalib_vadproto.components.clip import ClipShapeError
from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer, DlanAcModel, DynamicLocalAggregation
from anomalib_vadproto.models.dlan_ac.dlan import assignment_statistics
from anomalib_vadproto.models.dlan_ac.lightning_model import prototype_losses
from anomalib_vadproto.models.dlan_ac.som import DeadClusterWarning

REPO = Path(__file__).resolve().parents[2]


def unit_features(b: int = 2, d: int = 8, h: int = 3, w: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, h, w, generator=g), dim=1)


def initialised(
    clusters: int = 6, m: int = 3, d: int = 8, alpha: float = 5.0, seed: int = 1
) -> DynamicLocalAggregation:
    dlan = DynamicLocalAggregation(feature_dim=d, num_clusters=clusters, alpha=alpha)
    centres = F.normalize(torch.randn(clusters, d, generator=torch.Generator().manual_seed(seed)), dim=1)
    dlan.initialise(centres, m)
    return dlan


def test_paper_network_has_the_estimated_parameter_counts():
    model = DlanAcModel()
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.encoder) == 4_693_376  # MNAD's prediction encoder: 4.69 M
    assert count(model.decoder) == 10_957_187  # 10.96 M, with the BN-free ohead
    assert count(model.dlan) == 12_825 + 12_800 + 262_656  # 1x1 conv, centres, FC
    assert count(model.clusterer) == 0  # the SOM is buffers, never given to the optimiser
    assert count(model.decoder.head) == 112_451  # MPN's ohead


@pytest.mark.parametrize("alpha", [1.0, 5.0, 100.0])
def test_assignment_at_initialisation_is_softmax_of_negative_scaled_distance(alpha):
    dlan = initialised(alpha=alpha)
    features = unit_features()
    vectors = features.flatten(2).transpose(1, 2)  # (B, N, D)
    expected = torch.softmax(-alpha * torch.cdist(vectors, dlan.centres.detach()).square(), dim=2).transpose(1, 2)
    torch.testing.assert_close(dlan.soft_assignment(features), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dlan.assign.weight[:, :, 0, 0], 2 * alpha * dlan.centres.detach())


def test_residual_aggregation_keeps_the_first_m_columns():
    dlan = initialised(clusters=6, m=3)
    with torch.no_grad():  # identity FC: the prototypes are the normalised residuals
        dlan.fc.weight.copy_(torch.eye(8))
        dlan.fc.bias.zero_()
    features = unit_features()
    prototypes, assignment = dlan(features)
    assert prototypes.shape == (2, 3, 8) and assignment.shape == (2, 6, 12)
    vectors = features.flatten(2).transpose(1, 2)
    for b in range(2):
        for m in range(3):
            residual = sum(assignment[b, m, n] * (vectors[b, n] - dlan.centres[m]) for n in range(12))
            torch.testing.assert_close(prototypes[b, m], F.normalize(residual, dim=0), atol=1e-5, rtol=1e-4)


def test_only_the_kept_clusters_reach_the_prototypes():
    dlan = initialised(clusters=6, m=3)
    prototypes, _ = dlan(unit_features())
    prototypes.square().sum().backward()
    grad = dlan.centres.grad
    assert grad[:3].abs().sum() > 0
    assert torch.equal(grad[3:], torch.zeros_like(grad[3:]))  # ghost residuals are dropped
    assert dlan.assign.weight.grad[3:].abs().sum() > 0  # ... but ghosts still shape the softmax
    with torch.no_grad():
        before, _ = dlan(unit_features())
        dlan.centres[3:] += 1.0
        after, _ = dlan(unit_features())
    torch.testing.assert_close(before, after)


def test_read_is_a_softmax_over_the_prototypes():
    queries = F.normalize(torch.randn(2, 5, 4), dim=2)
    prototypes = F.normalize(torch.randn(2, 3, 4), dim=2)
    read, scores = DynamicLocalAggregation.read(queries, prototypes)
    for b in range(2):
        for n in range(5):
            w = torch.softmax(prototypes[b] @ queries[b, n], dim=0)
            torch.testing.assert_close(scores[b, n], prototypes[b] @ queries[b, n])
            torch.testing.assert_close(read[b, n], w @ prototypes[b])


def test_dlan_refuses_bad_initialisation():
    dlan = DynamicLocalAggregation(feature_dim=8, num_clusters=6)
    with pytest.raises(RuntimeError, match="M = 0"):
        dlan(unit_features())
    with pytest.raises(ValueError, match="M must be in"):
        dlan.initialise(torch.zeros(6, 8), 7)
    with pytest.raises(ValueError, match="shape"):
        dlan.initialise(torch.zeros(5, 8), 3)
    with pytest.raises(ValueError, match="NaN"):
        dlan.initialise(torch.full((6, 8), float("nan")), 3)


def tiny_model(**kwargs) -> DlanAcModel:
    torch.manual_seed(0)
    return DlanAcModel(in_channels=1, width=4, som_iterations=200, **kwargs)


def clip(b: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(b, 5, 1, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_stage_switch_initialises_dlan_from_the_som_and_keeps_the_prediction():
    model = tiny_model()
    out = model(clip())
    assert out.prototypes is None and not model.in_dlan_stage
    with pytest.raises(RuntimeError, match="has not seen any feature map"):
        model.start_dlan_stage()
    model.clusterer.fit_batch(out.features.detach())
    m = model.clusterer.num_clusters
    model.eval()
    before = model.score(clip())[0].anomaly_map
    assert model.start_dlan_stage() == m == model.num_prototypes
    assert model.in_dlan_stage and int(model.stage) == 1
    # c*_l in the clusterer's centre order (default "wins": the neurons that won most first).
    torch.testing.assert_close(model.dlan.centres.detach(), model.clusterer.cluster_centres())
    kept = model.clusterer.centre_permutation()[:m]
    assert (model.clusterer.win_counts[kept] > 0).all()
    torch.testing.assert_close(model.score(clip())[0].anomaly_map, before)  # stage 2 starts from stage 1
    model.train()
    out = model(clip())
    assert out.prototypes.shape == (2, m, 32) and out.scores.shape == (2, 16, m)


def test_fresh_stage_two_reinitialises_the_autoencoder():
    model = tiny_model()
    model.clusterer.fit_batch(model(clip()).features.detach())
    encoder = [p.clone() for p in model.encoder.parameters()]
    model.start_dlan_stage(reinitialise_autoencoder=True)
    assert any(not torch.equal(a, b) for a, b in zip(encoder, model.encoder.parameters(), strict=True))


def test_stage_and_m_survive_a_state_dict_round_trip():
    model = tiny_model()
    model.clusterer.fit_batch(model(clip()).features.detach())
    model.start_dlan_stage()
    model.eval()
    restored = tiny_model()
    restored.load_state_dict(model.state_dict())
    restored.eval()
    assert restored.in_dlan_stage and restored.num_prototypes == model.num_prototypes
    torch.testing.assert_close(restored.score(clip())[1]["psnr"], model.score(clip())[1]["psnr"])


def test_prototype_losses_use_each_samples_own_prototypes_and_keep_gradients():
    model = tiny_model()
    model.clusterer.fit_batch(model(clip()).features.detach())
    model.start_dlan_stage()
    out = model(clip())
    compact, separate = prototype_losses(out, margin=1.0)
    b, m, d = out.prototypes.shape
    queries = out.features.flatten(2).transpose(1, 2)
    nearest = out.scores.argmax(dim=2)
    expected = torch.stack([(queries[i] - out.prototypes[i][nearest[i]]).square().mean() for i in range(b)]).mean()
    torch.testing.assert_close(compact, expected)
    (compact + separate).backward()
    assert model.dlan.fc.weight.grad is not None and model.dlan.fc.weight.grad.abs().sum() > 0  # not detached


def test_single_prototype_has_no_separateness():
    model = tiny_model()
    model.clusterer.fit_batch(model(clip()).features.detach())
    model.start_dlan_stage()
    model.dlan.initialise(model.clusterer.cluster_centres(), 1)
    compact, separate = prototype_losses(model(clip()), margin=1.0)
    assert separate.item() == 0.0 and compact.item() > 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (torch.rand(2, 1, 32, 32), ClipShapeError),  # a 4-D image batch, not a clip
        (torch.rand(2, 4, 1, 32, 32), ClipShapeError),  # 4 frames, the model needs 5
        (torch.rand(2, 5, 3, 32, 32), ClipShapeError),  # RGB into a grey model
        (torch.full((2, 5, 1, 32, 32), float("nan")), ValueError),
    ],
)
def test_bad_clips_fail_clearly(bad, error):
    with pytest.raises(error):
        tiny_model()(bad)


def test_lightning_model_stages_parameters_and_schedule():
    model = DlanAc(image_size=32, grayscale=True, width=4, ac_epochs=3, som_iterations=50)
    stage1 = {id(p) for p in model.trainable_parameters()}
    assert {id(p) for p in model.model.dlan.parameters()}.isdisjoint(stage1)
    assert {id(p) for p in model.model.encoder.parameters()} <= stage1
    assert model.schedule_epochs() == 3
    model.model.clusterer.fit_batch(model.model(clip()).features.detach())
    model.model.start_dlan_stage()
    assert {id(p) for p in model.model.dlan.parameters()} <= {id(p) for p in model.trainable_parameters()}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ac_epochs": 0}, "ac_epochs"),
        ({"som_maps_per_batch": 0}, "som_maps_per_batch"),
        ({"stage2_init": "reuse"}, "stage2_init"),
        ({"gradient_border": "wrap"}, "gradient_border"),
        ({"som_neighbourhood": "bubble"}, "neighbourhood"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DlanAc(image_size=32, grayscale=True, width=4, **kwargs)


def test_defaults_and_configs_use_the_released_scripts_som_and_live_clusters():
    model = DlanAc(image_size=32, grayscale=True, width=4)
    clusterer = model.model.clusterer
    assert (clusterer.neighbourhood, clusterer.centre_order, clusterer.backend) == ("gaussian", "wins", "auto")
    assert (clusterer.sigma, clusterer.learning_rate, clusterer.num_iterations) == (0.5, 0.5, 5000)
    for name in ("dlan_ac", "dlan_ac_lite"):
        args = yaml.safe_load((REPO / "configs" / "model" / f"{name}.yaml").read_text())["model"]["init_args"]
        assert (args["som_neighbourhood"], args["centre_order"], args["som_backend"]) == ("gaussian", "wins", "auto")
        assert (args["som_sigma"], args["som_learning_rate"], args["som_iterations"]) == (0.5, 0.5, 5000)


def known_cluster_maps(num_maps: int, seed: int, dim: int = 16, per_map: int = 64) -> torch.Tensor:
    """``(B, D, 8, 8)`` unit-norm features around 6 fixed unit centres (the same centres for every seed)."""
    centres = F.normalize(torch.randn(6, dim, generator=torch.Generator().manual_seed(123)), dim=1)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (num_maps, per_map), generator=g)
    vectors = F.normalize(centres[labels] + 0.1 * torch.randn(num_maps, per_map, dim, generator=g), dim=2)
    return vectors.transpose(1, 2).reshape(num_maps, dim, 8, 8)


def dlan_from(som: AdaptiveClusterer, alpha: float = 100.0) -> DynamicLocalAggregation:
    dlan = DynamicLocalAggregation(som.feature_dim, som.num_neurons, alpha=alpha)
    dlan.initialise(*som.init_for_netvlad())
    return dlan


def per_cluster_centre_gradients(dlan: DynamicLocalAggregation, features: torch.Tensor) -> torch.Tensor:
    """Norm of the centre and assignment-conv gradient of each kept cluster for a generic loss on the prototypes."""
    dlan.zero_grad()
    prototypes, _ = dlan(features)
    (prototypes * torch.randn(prototypes.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    m = dlan.m
    return dlan.centres.grad[:m].norm(dim=1), dlan.assign.weight.grad[:m].flatten(1).norm(dim=1)


def test_every_kept_cluster_is_live_with_the_paper_som():
    """Paper SOM settings (δ = η = 0.5, k = 5000, 5x5) with the defaults (Gaussian, "wins") on known clusters:
    every kept cluster is the nearest centre of some fresh vectors, gets assignment mass at α = 100 and a
    non-zero gradient through the soft assignment."""
    som = AdaptiveClusterer(feature_dim=16)
    zs = som.fit_batch(known_cluster_maps(4, seed=0))
    assert som.num_clusters == int(sum(zs) / 4) >= 6  # at least one neuron per true cluster
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeadClusterWarning)
        dlan = dlan_from(som)
    features = known_cluster_maps(2, seed=1)  # unseen maps of the same clusters
    m = dlan.m
    assignment = dlan.soft_assignment(features)  # (B, L, N)
    nearest = assignment.argmax(dim=1)
    assert all((nearest == cluster).any() for cluster in range(m))
    stats = dlan.assignment_statistics(features)
    assert stats["num_kept"] == m and stats["min_kept_cluster_mass"] * stats["num_locations"] >= 1.0
    centre_grad, assign_grad = per_cluster_centre_gradients(dlan, features)
    assert (centre_grad > 1e-6).all()
    # The assignment conv's gradient vanishes only where α = 100 saturates the softmax: a cluster whose
    # vectors all have β = 1 exactly (float32) gets none (the α question, see assignment_statistics).
    saturated = torch.stack([(assignment[:, c][nearest == c] == 1).all() for c in range(m)])
    assert ((assign_grad > 0) | saturated).all() and (assign_grad > 0).sum() >= m - 1


def dead_neuron_som(centre_order: str) -> AdaptiveClusterer:
    """Paper-literal truncated SOM whose neurons 0 and 1 start far from the data at (1,0) and (0,1): never win."""
    som = AdaptiveClusterer(
        feature_dim=2, num_neurons=4, num_iterations=50, neighbourhood="truncated", centre_order=centre_order
    )
    som.weights.copy_(torch.tensor([[-1.0, 0.0], [0.0, -1.0], [0.9, 0.1], [0.1, 0.9]]))
    som.fit_batch(two_cluster_features(seed=0))
    return som


def two_cluster_features(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.eye(2).repeat(8, 1) + 0.05 * torch.randn(16, 2, generator=g), dim=1)
    return x.T.reshape(1, 2, 4, 4)


def test_flat_order_with_the_truncated_som_keeps_dead_clusters_and_warns():
    """The defect the defaults avoid: kept clusters that never won get no mass, no gradient, constant prototypes."""
    som = dead_neuron_som("flat")
    assert som.num_clusters == 2
    with pytest.warns(DeadClusterWarning, match="won no feature vector"):
        dlan = dlan_from(som)
    a, b = two_cluster_features(seed=1), two_cluster_features(seed=2)
    assert dlan.assignment_statistics(a)["kept_mass"] < 1e-30  # e^-198 in float64; exactly 0 in DLAN's float32
    assert torch.equal(dlan.soft_assignment(a)[:, :2], torch.zeros(1, 2, 16))
    centre_grad, _ = per_cluster_centre_gradients(dlan, a)
    assert torch.equal(centre_grad, torch.zeros(2))
    torch.testing.assert_close(dlan(a)[0], dlan(b)[0])  # the same prototypes whatever the input

    live = dlan_from(dead_neuron_som("wins"))
    stats = live.assignment_statistics(a)
    assert stats["kept_mass"] == pytest.approx(1.0) and stats["min_kept_cluster_mass"] > 0.3
    centre_grad, _ = per_cluster_centre_gradients(live, a)
    assert (centre_grad > 1e-6).all()


def test_assignment_statistics_known_answers():
    # Uniform: equal logits for all L = 5 clusters, M = 2.
    uniform = assignment_statistics(torch.zeros(2, 5, 7), num_kept=2)
    assert uniform["entropy"] == pytest.approx(math.log(5)) and uniform["entropy_normalised"] == pytest.approx(1.0)
    assert uniform["kept_mass"] == pytest.approx(0.4) and uniform["max_assignment"] == pytest.approx(0.2)
    assert uniform["min_kept_cluster_mass"] == pytest.approx(0.2) and uniform["num_locations"] == 14
    # Saturated: features on the centres e_0..e_3 at α = 100: 3 on e_0, 1 on e_1, 4 on e_2; M = 2.
    dlan = DynamicLocalAggregation(feature_dim=4, num_clusters=4, alpha=100.0)
    dlan.initialise(torch.eye(4), 2)
    features = torch.eye(4)[[0, 0, 0, 1, 2, 2, 2, 2]].T.reshape(1, 4, 2, 4)
    stats = dlan.assignment_statistics(features)
    assert stats["entropy"] < 1e-6 and stats["max_assignment"] == pytest.approx(1.0)
    assert stats["kept_mass"] == pytest.approx(0.5) and stats["min_kept_cluster_mass"] == pytest.approx(1 / 8)
    assert stats["cluster_mass"] == pytest.approx([3 / 8, 1 / 8, 4 / 8, 0.0])
    # A soft case against the definition.
    logits = torch.randn(2, 6, 9, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits.double(), dim=1)
    stats = assignment_statistics(logits, num_kept=4)
    assert stats["entropy"] == pytest.approx(float(-(p * p.log()).sum(1).mean()))
    assert stats["kept_mass"] == pytest.approx(float(p[:, :4].sum(1).mean()))
    with pytest.raises(ValueError, match="num_kept"):
        assignment_statistics(logits, num_kept=0)


def test_assignment_statistics_of_the_som_match_dlan_at_initialisation():
    """Stage 1 reports the assignment DLAN will start from; right after the switch DLAN reports the same."""
    model = tiny_model()
    model.clusterer.fit_batch(model(clip()).features.detach())
    state = {key: value.clone() for key, value in model.state_dict().items()}
    before = model.assignment_statistics(clip())  # in training mode: BatchNorm's running statistics stay
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())
    assert model.training and model.encoder.training
    model.start_dlan_stage()
    after = model.assignment_statistics(clip())
    assert before["num_kept"] == after["num_kept"] == model.num_prototypes
    for key in ("entropy", "kept_mass", "max_assignment", "min_kept_cluster_mass"):
        assert before[key] == pytest.approx(after[key], abs=1e-4), key
