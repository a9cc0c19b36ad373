"""Unit tests of CDDA: RGB-difference targets, eq. 10 and ‖CCᵀ − I‖_F, score, alternation, k-means, stages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.callbacks.checkpoint import ModelCheckpoint
from anomalib.engine import Engine
from lightning.pytorch.callbacks import Callback

from anomalib_vadproto import Cdda
from anomalib_vadproto.components.clip import ClipShapeError
from anomalib_vadproto.metrics.protocol import fuse_cues
from anomalib_vadproto.models.cdda import CddaModel, DeepKMeans, VarianceAttention, fit_kmeans
from anomalib_vadproto.models.cdda.torch_model import CddaOutput
from tests.conftest import clip_datamodule

TINY = {"image_size": (32, 32), "grayscale": True, "width": 4, "num_clusters": 4, "kmeans_samples": 500, "seed": 0}


def clip(b: int = 2, height: int = 32, width: int = 32, channels: int = 1, seed: int = 3) -> torch.Tensor:
    return torch.rand(b, 5, channels, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_model(**kwargs) -> CddaModel:
    torch.manual_seed(0)
    return CddaModel(in_channels=1, width=4, num_clusters=4, **kwargs)


def initialised(model: CddaModel, seed: int = 1) -> CddaModel:
    g = torch.Generator().manual_seed(seed)
    model.initialise_centres(
        {
            name: F.normalize(torch.rand(c.num_clusters, c.feature_dim, generator=g), dim=1)
            for name, c in model.clusters.items()
        }
    )
    return model


# ---------------------------------------------------------------------- architecture
def test_paper_network_has_the_spec_parameter_counts():
    model = CddaModel()  # 256x256 RGB, width 32, K = 32, separate clusterings
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.spatial_encoder) == 2_139_424  # the STD code's layers: 2.14 M
    assert count(model.spatial_decoder) == 1_255_104  # 1.26 M
    assert count(model.motion_encoder) == 2_227_584  # 2.23 M
    assert count(model.motion_decoder) == 486_144  # 0.48 M with the ECCV 12-channel target (STD: 3 channels)
    assert count(model.clusters) == 2 * 32 * 256  # two K = 32 centre sets on 256-d features
    assert count(model) == 6_124_640  # ≈ 6.12 M


def test_kaiming_spatial_init_changes_only_the_spatial_encoder():
    default, kaiming = tiny_model(), tiny_model(spatial_init="kaiming")
    convs = {
        f"spatial_encoder.{name}.weight"
        for name, module in default.spatial_encoder.named_modules()
        if isinstance(module, torch.nn.Conv2d)
    }
    assert len(convs) == 11  # the stem, three residual blocks of three, the projection
    for name, value in default.state_dict().items():  # every other module draws the same weights
        assert torch.equal(value, kaiming.state_dict()[name]) == (name not in convs), name
    conv = kaiming.spatial_encoder.projection  # fan-in 32 * 9, gain sqrt(2 / (1 + 0.01²))
    expected = math.sqrt(2 / (1 + 1e-4)) / math.sqrt(conv.weight[0].numel())
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert default.spatial_encoder.projection.weight.std().item() < expected / 2  # PyTorch's default: /2.45
    with pytest.raises(ValueError, match="spatial_init"):
        tiny_model(spatial_init="xavier")


def test_rgb_difference_targets_of_a_hand_made_clip():
    # frame t is the constant (t - 2) / 2 in [-1, 1], i.e. (t + 0) / 4 in [0, 1]
    values = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    hand = values.reshape(1, 5, 1, 1, 1).expand(2, 5, 3, 32, 48).clone()
    model = CddaModel(in_channels=3, width=4, num_clusters=2).eval()
    out = model._forward(hand)
    unit = (values + 1) / 2  # 0, .25, .5, .75, 1
    torch.testing.assert_close(out.last_frame, torch.ones(2, 3, 32, 48))  # the LIF, on [0, 1]
    for i in range(4):
        torch.testing.assert_close(out.difference_targets[:, i], torch.full((2, 3, 32, 48), float(unit[i] - 1)))
    assert out.differences.shape == out.difference_targets.shape == (2, 4, 3, 32, 48)
    assert out.appearance.shape == (2, 3, 32, 48)
    assert out.features["motion"].shape == out.features["appearance"].shape == (2, 32, 4, 6)


def test_each_autoencoder_reads_only_its_frames():
    model = tiny_model().eval()
    x = clip()
    other_last = x.clone()
    other_last[:, -1] = torch.rand_like(x[:, -1]) * 2 - 1
    other_past = x.clone()
    other_past[:, :-1] = torch.rand_like(x[:, :-1]) * 2 - 1
    with torch.no_grad():
        base, last, past = model._forward(x), model._forward(other_last), model._forward(other_past)
    torch.testing.assert_close(last.differences, base.differences)  # the motion AE never sees the LIF
    torch.testing.assert_close(past.appearance, base.appearance)  # the spatial AE sees only the LIF
    assert not torch.allclose(last.appearance, base.appearance)
    assert not torch.allclose(past.differences, base.differences)


def test_encoder_features_are_normalised_as_specified():
    model = tiny_model().train()
    out = model(clip())
    for value in out.features.values():  # the clustering inputs are L2-normalised per location
        torch.testing.assert_close(value.norm(dim=1), torch.ones(2, 4, 4))
    z_a = model.spatial_encoder.project(out.pre_projection[0])
    assert (z_a >= 0).all()
    torch.testing.assert_close(z_a.abs().sum(dim=1), torch.ones(2, 4, 4))  # L1-normalised appearance code
    torch.testing.assert_close(
        model.motion_encoder.project(out.pre_projection[1]).abs().sum(dim=1), torch.ones(2, 4, 4)
    )


def test_variance_attention_code_form_by_hand():
    att = VarianceAttention(channels=2, pool=2, form="code")
    with torch.no_grad():
        att.transform.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, :2, :2] = 2.0  # top-left 2x2 block: channels (2, 0) -> pooled deviation² sum = 1 + 1 = 2
    x[0, 1, 2:, 2:] = 4.0  # bottom-right block: channels (0, 4) -> 4 + 4 = 8
    v = torch.tensor([[2.0, 0.0], [0.0, 8.0]])
    a = torch.softmax(v.flatten(), 0).reshape(2, 2)
    expected = x * torch.exp(a.repeat_interleave(2, 0).repeat_interleave(2, 1))
    torch.testing.assert_close(att(x), expected)
    weights = torch.exp(att.attention(torch.randn(3, 2, 8, 8)))
    assert (weights >= 1).all() and (weights <= math.e).all()


def test_variance_attention_paper_form_by_hand():
    att = VarianceAttention(channels=2, pool=1, form="paper")
    with torch.no_grad():
        att.transform.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
    x = torch.tensor([[[[1.0, 0.0]], [[3.0, 0.0]]]])  # (1, 2, 1, 2): mean |dev| = 1 at (0, 0), 0 at (0, 1)
    a = F.normalize(torch.softmax(torch.tensor([1.0, 0.0]), 0), dim=0)
    torch.testing.assert_close(att(x), x * (1 + a.reshape(1, 1, 1, 2)))


# ---------------------------------------------------------------------- deep k-means
def test_soft_assigned_distance_and_redundancy_on_hand_made_centres():
    alpha = 2.0
    clusters = DeepKMeans(num_clusters=2, feature_dim=2, alpha=alpha, distance="squared")
    clusters.initialise(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    features = torch.tensor([[1.0, 0.6], [0.0, 0.8]]).reshape(1, 2, 1, 2)  # locations r = (1, 0) and (0.6, 0.8)

    def by_hand(d1: float, d2: float, squared: bool) -> float:
        w1, w2 = math.exp(-alpha * d1), math.exp(-alpha * d2)
        w1, w2 = w1 / (w1 + w2), w2 / (w1 + w2)
        return w1 * d1**2 + w2 * d2**2 if squared else (w1 * d1 + w2 * d2) / 2

    distances = [(0.0, math.sqrt(2.0)), (math.sqrt(0.16 + 0.64), math.sqrt(0.36 + 0.04))]
    expected = torch.tensor([[[by_hand(*d, squared=True) for d in distances]]])
    torch.testing.assert_close(clusters.distance_map(features), expected, atol=1e-5, rtol=1e-5)
    clusters.distance = "euclidean"  # the STD code's form
    expected = torch.tensor([[[by_hand(*d, squared=False) for d in distances]]])
    torch.testing.assert_close(clusters.distance_map(features), expected, atol=1e-5, rtol=1e-5)

    assert clusters.redundancy().item() == pytest.approx(0.0, abs=1e-7)  # orthonormal centres
    clusters.initialise(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))  # CCᵀ − I = [[0, 1], [1, 1]]
    assert clusters.redundancy().item() == pytest.approx(math.sqrt(3.0))


def test_soft_assigned_distance_is_exact_under_bf16_autocast():
    """Mixed precision: codes near their centres keep FP32 distances (a bf16 ``r·c`` would not resolve them)."""
    g = torch.Generator().manual_seed(0)
    clusters = DeepKMeans(num_clusters=8, feature_dim=64, alpha=25.0)
    centres = F.normalize(torch.randn(8, 64, generator=g), dim=1)
    clusters.initialise(centres)
    near = F.normalize(centres.repeat(4, 1) + 0.0125 * torch.randn(32, 64, generator=g), dim=1)  # ‖r − c‖² ≈ 0.01
    features = near.t().reshape(1, 64, 4, 8).to(torch.bfloat16)  # what a bf16 encoder hands over
    expected = DeepKMeans(num_clusters=8, feature_dim=64, alpha=25.0)
    expected.initialise(centres)
    reference = expected.distance_map(features.float())
    features.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = clusters.distance_map(features)
        redundancy = clusters.redundancy()
    assert got.dtype == torch.float32
    assert 0.005 < float(reference.mean()) < 0.05
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(redundancy, expected.redundancy(), atol=1e-6, rtol=1e-6)
    got.sum().backward()
    assert features.grad is not None and features.grad.dtype == torch.bfloat16


def test_fit_kmeans_finds_well_separated_clusters():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    samples = torch.cat([m + 0.01 * torch.randn(50, 3, generator=g) for m in means])
    centres, inertia = fit_kmeans(samples, 3, seed=0)
    order = centres.argmax(dim=1).argsort()
    torch.testing.assert_close(centres[order], means, atol=0.01, rtol=0)
    assert inertia < 0.1
    with pytest.raises(ValueError, match="at least 3"):
        fit_kmeans(samples[:2], 3)
    with pytest.raises(ValueError, match="NaN"):
        fit_kmeans(torch.full((10, 3), float("nan")), 3)


def test_kmeans_restarts_keep_the_lowest_inertia_seeding():
    # Uniform points have many local minima: every best-of-10 beats the single seeding it starts from.
    samples = torch.rand(300, 4, generator=torch.Generator().manual_seed(0))
    for seed in range(4):
        _, single = fit_kmeans(samples, 12, seed=seed)
        centres, best = fit_kmeans(samples, 12, seed=seed, restarts=10)
        assert best < single
        assert centres.shape == (12, 4)
        assert fit_kmeans(samples, 12, seed=seed, restarts=10)[1] == best  # reproducible


def test_deep_kmeans_refuses_bad_arguments():
    with pytest.raises(ValueError, match="distance"):
        DeepKMeans(4, 8, distance="cosine")
    with pytest.raises(ValueError, match="alpha"):
        DeepKMeans(4, 8, alpha=0.0)
    with pytest.raises(ValueError, match="shape"):
        DeepKMeans(4, 8).initialise(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="NaN"):
        DeepKMeans(4, 8).initialise(torch.full((4, 8), float("nan")))


# ---------------------------------------------------------------------- score
def test_reconstruction_error_of_the_recombined_clip():
    g = torch.Generator().manual_seed(0)
    t = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    out = CddaOutput(t(2, 1, 4, 4), t(2, 1, 4, 4), t(2, 4, 1, 4, 4), t(2, 4, 1, 4, 4), {}, (t(1), t(1)))
    clips = out.difference_targets + out.last_frame.unsqueeze(1)  # x_clips
    expected = (clips - out.appearance.unsqueeze(1) - out.differences).square().mean(dim=(1, 2)).unsqueeze(1)
    torch.testing.assert_close(out.reconstruction_error_map(), expected)


def test_error_parts_are_each_autoencoders_own_error():
    g = torch.Generator().manual_seed(0)
    t = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    last, appearance, targets = t(2, 1, 4, 4), t(2, 1, 4, 4), t(2, 4, 1, 4, 4)
    differences = targets.clone()
    differences[:, :, :, :2] += 0.5  # the motion AE misses half of every frame by 0.5
    parts = CddaOutput(appearance, last, differences, targets, {}, (t(1), t(1))).error_parts()
    torch.testing.assert_close(parts["motion_error"], torch.full((2,), 0.125))  # 0.5² on half the pixels
    torch.testing.assert_close(parts["appearance_error"], (last - appearance).square().mean(dim=(1, 2, 3)))
    # With a perfect spatial AE, E_rec is the motion AE's error; with a perfect motion AE, the spatial AE's.
    perfect_spatial = CddaOutput(last, last, differences, targets, {}, (t(1), t(1)))
    torch.testing.assert_close(perfect_spatial.reconstruction_error_map().mean(dim=(1, 2, 3)), parts["motion_error"])
    perfect_motion = CddaOutput(appearance, last, targets, targets, {}, (t(1), t(1)))
    torch.testing.assert_close(perfect_motion.reconstruction_error_map().mean(dim=(1, 2, 3)), parts["appearance_error"])
    assert perfect_motion.error_parts()["motion_error"].eq(0).all()


@pytest.mark.parametrize("score", ["product", "pixelwise"])
def test_score_is_the_inverse_product(score):
    model = initialised(tiny_model(score=score)).eval()
    x = clip()
    with torch.no_grad():
        batch, cues = model.score(x)
        out = model._forward(x)
        error = out.reconstruction_error_map()
        maps = model.distance_maps(out.features)
    if score == "product":  # eq. 14: 1 / (D_m · D_a · E_rec)
        product = error.mean(dim=(1, 2, 3)) * maps["motion"].mean(dim=(1, 2)) * maps["appearance"].mean(dim=(1, 2))
    else:  # STD: 1 / mean(e ⊙ m_m ⊙ m_a), the 4x4 cluster maps upsampled x8
        up = lambda m: m.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(1)  # noqa: E731
        product = (error * up(maps["motion"]) * up(maps["appearance"])).mean(dim=(1, 2, 3))
    torch.testing.assert_close(cues["regularity"], 1.0 / (product + model.eps))
    torch.testing.assert_close(batch.pred_score, torch.log(product + model.eps))
    torch.testing.assert_close(batch.anomaly_map.mean(dim=(1, 2, 3)), product)
    assert batch.anomaly_map.shape == (2, 1, 32, 32)
    with torch.no_grad():  # a pure function of the clip: batch composition does not matter
        torch.testing.assert_close(model.score(x[:1])[1]["regularity"], cues["regularity"][:1])


def test_score_epsilon_does_not_bend_the_per_video_normalisation():
    """Eq. 14 has no ε: per-video min-max of ``1 / (p + ε)`` must not change when every ``p`` shrinks 1e9x.

    Ped2's products are 3e-11 to 5e-10 at the lite scale, where the old ε of 1e-12 was up to 3.8% of a video's smallest.
    """
    model = initialised(tiny_model(diagnostic_cues=True)).eval()
    with torch.no_grad():
        _, cues = model.score(clip())
    product = torch.stack([cues[name] for name in model.score_factors]).prod(dim=0).double()
    products = torch.cat([product, product * 3.0, product * 0.5])  # one "video" of six frames

    def normalised(p):
        s = 1.0 / (p + model.eps)
        return (s - s.min()) / (s.max() - s.min())

    torch.testing.assert_close(normalised(products * 1e-9), normalised(products), rtol=1e-9, atol=1e-9)


def test_score_before_the_centres_uses_the_reconstruction_error_alone():
    model = tiny_model(diagnostic_cues=True).eval()
    with torch.no_grad():
        _, cues = model.score(clip())
        error = model._forward(clip()).reconstruction_error_map().mean(dim=(1, 2, 3))
    torch.testing.assert_close(cues["regularity"], 1.0 / (error + model.eps))
    torch.testing.assert_close(cues["reconstruction"], error)
    torch.testing.assert_close(cues["regularity_pixelwise"], cues["regularity"])
    assert not cues["motion_distance"].any() and not cues["appearance_distance"].any()


@pytest.mark.parametrize("clustering", ["separate", "joint"])
def test_diagnostic_cues_are_the_factors_of_the_product(clustering):
    model = initialised(tiny_model(clustering=clustering, diagnostic_cues=True)).eval()
    with torch.no_grad():
        _, cues = model.score(clip())
    names = {"separate": ("reconstruction", "motion_distance", "appearance_distance")}
    assert model.score_factors == names.get(clustering, ("reconstruction", "joint_distance"))
    assert set(cues) == {"regularity", "regularity_pixelwise", "motion_error", "appearance_error", *model.score_factors}
    out = model._forward(clip())
    for name, value in out.error_parts().items():
        torch.testing.assert_close(cues[name], value)
    product = torch.stack([cues[name] for name in model.score_factors]).prod(dim=0)
    assert (product > 0).all()
    torch.testing.assert_close(cues["regularity"], 1.0 / (product + model.eps))


def test_each_score_form_reports_the_other_as_a_variant():
    product, pixelwise = (
        initialised(tiny_model(score=form, diagnostic_cues=True)).eval() for form in ("product", "pixelwise")
    )
    pixelwise.load_state_dict(product.state_dict())
    with torch.no_grad():
        _, product_cues = product.score(clip())
        _, pixelwise_cues = pixelwise.score(clip())
    torch.testing.assert_close(product_cues["regularity_pixelwise"], pixelwise_cues["regularity"])
    torch.testing.assert_close(pixelwise_cues["regularity_product"], product_cues["regularity"])
    assert not torch.allclose(product_cues["regularity"], pixelwise_cues["regularity"])  # two different scores


def test_diagnostic_cues_have_zero_weight_and_leave_the_protocol_auc_unchanged():
    lightning = Cdda(image_size=(32, 32), width=2, num_clusters=4, ae_epochs=1, diagnostic_cues=True)
    weights = lightning.protocol.cue_weights
    diagnostics = (
        "reconstruction", "motion_distance", "appearance_distance", "motion_error", "appearance_error",
        "regularity_pixelwise",
    )  # fmt: skip
    assert weights == {"regularity": 1.0, **dict.fromkeys(diagnostics, 0.0)}
    assert set(lightning.protocol.normal_cues) == {"regularity", "regularity_pixelwise"}
    rng = np.random.default_rng(0)
    labels = np.tile([0, 0, 0, 1, 1, 0, 0, 0], 2)
    video_index = np.repeat([0, 1], 8)
    regularity = rng.random(16) + 0.5 * (1 - labels)
    noise = {name: rng.random(16) for name in lightning.model.diagnostic_cue_names}  # uninformative
    fused = fuse_cues({"regularity": regularity, **noise}, video_index, weights, lightning.protocol.normal_cues)
    alone = fuse_cues({"regularity": regularity}, video_index, {"regularity": 1.0}, ("regularity",))
    np.testing.assert_array_equal(fused, alone)


@pytest.mark.parametrize("form", ["product", "pixelwise"])
def test_diagnostic_cues_are_opt_in_and_leave_the_score_unchanged(form):
    plain = initialised(tiny_model(score=form)).eval()
    diagnostic = initialised(tiny_model(score=form, diagnostic_cues=True)).eval()
    assert list(plain.state_dict()) == list(diagnostic.state_dict())  # the option changes no weight or buffer
    with torch.no_grad():
        batch, cues = plain.score(clip())
        full_batch, full_cues = diagnostic.score(clip())
    assert list(cues) == list(plain.cue_names) == ["regularity"]
    assert list(full_cues) == list(diagnostic.cue_names) == ["regularity", *diagnostic.diagnostic_cue_names]
    assert torch.equal(batch.pred_score, full_batch.pred_score)
    assert torch.equal(batch.anomaly_map, full_batch.anomaly_map)
    assert torch.equal(cues["regularity"], full_cues["regularity"])
    plain.diagnostic_cues = True  # an attribute: switched on a built model, e.g. one loaded from a checkpoint
    with torch.no_grad():
        assert set(plain.score(clip())[1]) == set(full_cues)


@pytest.mark.parametrize("diagnostic_cues", [False, True])
def test_protocol_and_exported_outputs_carry_the_diagnostic_cues_only_when_asked(diagnostic_cues):
    model = Cdda(**TINY, diagnostic_cues=diagnostic_cues)
    assert model.hparams["diagnostic_cues"] is diagnostic_cues
    expected = ("regularity", *(model.model.diagnostic_cue_names if diagnostic_cues else ()))
    assert model.protocol.cue_weights == {name: float(name == "regularity") for name in expected}
    raw = torch.rand(2, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # the graph's input: [0, 1] RGB
    with model.read_only_eval(), torch.no_grad():
        outputs = model.predict_clip(raw)  # what the export traces: its outputs are these names
    assert {name for name in outputs if name.startswith("cue_")} == {f"cue_{name}" for name in expected}


def test_joint_clustering_uses_one_centre_set_on_the_concatenation():
    model = tiny_model(clustering="joint")
    assert list(model.clusters) == ["joint"] and model.clusters["joint"].centres.shape == (4, 64)
    out = model(clip())
    assert out.features["joint"].shape == (2, 64, 4, 4)
    torch.testing.assert_close(out.features["joint"].norm(dim=1), torch.ones(2, 4, 4))


# ---------------------------------------------------------------------- alternation
class RecordingOptimiser:
    """Wrap an optimiser; at every ``step`` record which parameters are frozen and which have gradients."""

    def __init__(self, optimiser: torch.optim.Optimizer, model: torch.nn.Module) -> None:
        self.optimiser, self.model, self.records = optimiser, model, []

    def zero_grad(self) -> None:
        self.optimiser.zero_grad()

    def step(self) -> None:
        named = dict(self.model.named_parameters())
        before = {k: v.detach().clone() for k, v in named.items()}
        self.records.append(
            {
                "trainable": {k for k, v in named.items() if v.requires_grad},
                "with_grad": {k for k, v in named.items() if v.grad is not None and v.grad.abs().sum() > 0},
            }
        )
        self.optimiser.step()
        self.records[-1]["changed"] = {k for k, v in named.items() if not torch.equal(v.detach(), before[k])}


def lightning_tiny(**kwargs) -> Cdda:
    model = Cdda(**{**TINY, **kwargs})
    initialised(model.model)
    return model


def names(model: Cdda, params) -> set[str]:  # noqa: ANN001
    ids = {id(p) for p in params}
    return {k for k, v in model.model.named_parameters() if id(v) in ids}


def test_alternation_freezes_the_centres_then_the_autoencoders():
    model = lightning_tiny()
    ae_opt, centre_opt = model.configure_optimizers()
    ae, centre = RecordingOptimiser(ae_opt, model.model), RecordingOptimiser(centre_opt, model.model)
    losses = model.optimisation_step(clip(b=4), ae, centre)
    assert {"appearance", "motion", "ae_cluster", "cluster", "distance", "redundancy"} <= set(losses)
    centres = names(model, model.model.centre_parameters())
    autoencoders = names(model, model.model.autoencoder_parameters())
    assert centres == {"clusters.motion.centres", "clusters.appearance.centres"}
    (ae_record,), (centre_record,) = ae.records, centre.records
    # AE step: centres frozen (no gradient, unchanged); the autoencoders move
    assert centres.isdisjoint(ae_record["trainable"] | ae_record["with_grad"] | ae_record["changed"])
    assert ae_record["changed"] == autoencoders
    # centre step: autoencoders frozen (no new gradient, unchanged); the centres move
    assert ae_record["trainable"] >= autoencoders and centre_record["trainable"] == centres
    assert centre_record["changed"] == centres
    assert all(p.requires_grad for p in model.model.parameters())  # everything is restored afterwards


def test_std_centre_step_also_moves_the_projections():
    model = lightning_tiny(centre_step="centres_and_projection")
    ae_opt, centre_opt = model.configure_optimizers()
    centre = RecordingOptimiser(centre_opt, model.model)
    model.optimisation_step(clip(b=4), ae_opt, centre)
    projections = names(model, model.model.projection_parameters())
    assert projections == {"spatial_encoder.projection.weight", "motion_encoder.projection.weight"}
    assert centre.records[0]["changed"] == names(model, model.model.centre_parameters()) | projections


def test_cluster_term_reaches_the_encoders_only_when_asked():
    grads = {}
    for flag in (True, False):
        model = lightning_tiny(cluster_in_ae_step=flag)
        ae = RecordingOptimiser(torch.optim.SGD(model.model.autoencoder_parameters(), lr=0.0), model.model)
        centre = torch.optim.SGD(model.model.centre_parameters(), lr=0.0)
        losses = model.optimisation_step(clip(b=4), ae, centre)
        assert ("ae_cluster" in losses) is flag
        grads[flag] = model.model.spatial_encoder.projection.weight.grad.clone()
        if not flag:
            torch.testing.assert_close(losses["loss"], losses["appearance"] + losses["motion"])
    assert not torch.allclose(grads[True], grads[False])


def test_pretraining_step_has_no_cluster_term_and_gathers_normalised_features():
    model = Cdda(**TINY)
    model.model.train()
    model._samples = {name: [] for name in model.model.clusters}
    ae_opt, centre_opt = model.configure_optimizers()
    centre = RecordingOptimiser(centre_opt, model.model)
    losses = model.optimisation_step(clip(b=4), ae_opt, centre)
    assert set(losses) == {"appearance", "motion", "loss"} and not centre.records  # no centre step
    for chunks in model._samples.values():
        (vectors,) = chunks
        assert vectors.shape == (4 * 4 * 4, 32)  # every location of the batch (no trainer: no subsampling)
        torch.testing.assert_close(vectors.norm(dim=1), torch.ones(64))


def test_stage_switch_sets_the_centres_to_the_kmeans_result():
    model = Cdda(**TINY)
    with pytest.raises(RuntimeError, match="No features were gathered"):
        model.start_alternating()
    g = torch.Generator().manual_seed(0)
    samples = {name: F.normalize(torch.rand(300, 32, generator=g), dim=1) for name in model.model.clusters}
    model._samples = {name: [value[:100], value[100:]] for name, value in samples.items()}
    assert not model.model.alternating
    model.start_alternating()
    assert model.model.alternating and int(model.model.stage) == 1
    for name, value in samples.items():
        expected, inertia = fit_kmeans(value, 4, max_iter=100, seed=0, restarts=model.kmeans_restarts)
        torch.testing.assert_close(model.model.clusters[name].centres.detach(), expected)
        assert model.kmeans_info[name] == {"samples": 300, "inertia": pytest.approx(inertia), "active_dimensions": 32}
    assert model._samples == {}


def test_kmeans_subsamples_to_kmeans_samples():
    model = Cdda(**{**TINY, "kmeans_samples": 50})
    model._samples = {name: [torch.rand(200, 32)] for name in model.model.clusters}
    model.start_alternating()
    assert all(info["samples"] == 50 for info in model.kmeans_info.values())


def test_kmeans_info_counts_the_active_code_dimensions():
    model = Cdda(**TINY)
    g = torch.Generator().manual_seed(0)
    dead = torch.rand(200, 32, generator=g)
    dead[:, 5:] = 0.0  # a ReLU code with 27 dead channels
    model._samples = {"motion": [torch.rand(200, 32, generator=g)], "appearance": [dead]}
    model.start_alternating()
    assert model.kmeans_info["motion"]["active_dimensions"] == 32
    assert model.kmeans_info["appearance"]["active_dimensions"] == 5
    assert model.run_summary()["kmeans"]["appearance"]["active_dimensions"] == 5


def test_learning_rate_drop_is_counted_in_alternating_epochs():
    model = Cdda(**{**TINY, "ae_epochs": 50, "lr_drop_epoch": 100})
    assert [model.autoencoder_lr(e) for e in (0, 49, 50, 149, 150)] == pytest.approx([1e-4] * 4 + [1e-5])
    assert Cdda(**{**TINY, "lr_drop_epoch": None}).autoencoder_lr(10_000) == pytest.approx(1e-4)


def test_stage_and_centres_survive_a_state_dict_round_trip():
    model = initialised(tiny_model()).eval()
    restored = tiny_model()
    assert not restored.alternating
    restored.load_state_dict(model.state_dict())
    restored.eval()
    assert restored.alternating
    with torch.no_grad():
        torch.testing.assert_close(restored.score(clip())[1]["regularity"], model.score(clip())[1]["regularity"])


# ---------------------------------------------------------------------- bad inputs and arguments
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.rand(2, 1, 32, 32), "5-D clip"),  # a 4-D image batch, not a clip
        (torch.rand(2, 4, 1, 32, 32), "exactly 5 frames"),
        (torch.rand(2, 5, 3, 32, 32), "channel"),  # RGB into a grey model
        (torch.full((2, 5, 1, 32, 32), float("nan")), "NaN"),
        (torch.rand(2, 5, 1, 40, 32), "multiples of 16"),
    ],
)
def test_bad_clips_fail_clearly(bad, match):
    with pytest.raises(ClipShapeError, match=match):
        tiny_model()(bad)
    with pytest.raises(ClipShapeError, match=match):
        tiny_model().eval().score(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ae_epochs": 0}, "ae_epochs"),
        ({"image_size": (40, 32)}, "multiples of 16"),
        ({"kmeans_samples": 3}, "kmeans_samples"),
        ({"kmeans_max_iter": 0}, "kmeans_max_iter"),
        ({"kmeans_restarts": 0}, "kmeans_restarts"),
        ({"cluster_reduction": "median"}, "cluster_reduction"),
        ({"centre_step": "all"}, "centre_step"),
        ({"clustering": "shared"}, "clustering"),
        ({"cluster_distance": "cosine"}, "distance"),
        ({"attention": "none"}, "attention"),
        ({"score": "sum"}, "score"),
        ({"lambda_cluster": -1.0}, "lambda_cluster"),
        ({"centre_lr": 0.0}, "centre_lr"),
        ({"lr_drop_epoch": -1}, "lr_drop_epoch"),
        ({"num_clusters": 0}, "num_clusters"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Cdda(**{**TINY, **kwargs})


# ---------------------------------------------------------------------- through anomalib's Engine
class Epochs(Callback):
    """Record, at the first batch of every epoch, the AE learning rate, the optimisers and the stage."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, float, int, bool]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001, D102
        if batch_idx == 0:
            ae, centres = trainer.optimizers
            self.seen[trainer.current_epoch] = (
                ae.param_groups[0]["lr"],
                centres.param_groups[0]["lr"],
                len(trainer.optimizers),
                pl_module.model.alternating,
            )


def engine_fit(root, work, ckpt_path=None, max_epochs: int = 3) -> tuple[Cdda, Epochs, Engine]:  # noqa: ANN001
    model = Cdda(**{**TINY, "ae_epochs": 1, "lr_drop_epoch": 1})
    epochs = Epochs()
    every_epoch = ModelCheckpoint(
        dirpath=work / "epochs", filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=True
    )
    engine = Engine(max_epochs=max_epochs, default_root_dir=work, logger=False, callbacks=[epochs, every_epoch])
    engine.fit(model=model, datamodule=clip_datamodule(root), ckpt_path=ckpt_path)
    return model, epochs, engine


@pytest.fixture(scope="module")
def fitted(synthetic_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("cdda")
    model, epochs, engine = engine_fit(synthetic_root, work)
    return model, epochs, engine, work


def test_engine_runs_every_stage_in_one_fit_and_tests(fitted, synthetic_root):
    model, epochs, engine, _ = fitted
    # epoch 0 pre-training; epoch 1 alternating at lr; epoch 2 (alternating epoch 1) dropped to lr / 10
    assert epochs.seen[0] == (pytest.approx(1e-4), pytest.approx(1e-5), 2, False)
    assert epochs.seen[1] == (pytest.approx(1e-4), pytest.approx(1e-5), 2, True)
    assert epochs.seen[2] == (pytest.approx(1e-5), pytest.approx(1e-5), 2, True)
    summary = model.run_summary()
    assert summary["stage"] == "alternating" and summary["pretrain_seconds"] > 0 and summary["alternating_seconds"] > 0
    # 24 training clips of 4x4 locations, all gathered (500 allowed), for each clustering
    assert {name: info["samples"] for name, info in summary["kmeans"].items()} == {"motion": 384, "appearance": 384}
    # one mean soft-assigned distance per alternating epoch and clustering, none for pre-training
    history = summary["distance_history"]
    assert sorted(history) == ["appearance", "motion"] and all(len(values) == 2 for values in history.values())
    assert all(0.0 < value < 4.0 for values in history.values() for value in values)  # L2-normalised codes
    (results,) = engine.test(model=model, datamodule=clip_datamodule(synthetic_root))
    assert 0.0 <= results["protocol_AUC_micro"] <= 1.0 and 0.0 <= results["image_AUROC"] <= 1.0


def test_resume_after_the_switch_keeps_the_stage_and_schedule(fitted, synthetic_root, tmp_path):
    model, _, _, work = fitted
    ckpt = work / "epochs" / "epoch=0.ckpt"  # saved after the switch at the end of the last pre-training batch
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert int(saved["state_dict"]["model.stage"]) == 1 and len(saved["optimizer_states"]) == 2
    assert saved["cdda_kmeans"]["motion"]["samples"] == 384
    resumed, epochs, _ = engine_fit(synthetic_root, tmp_path, ckpt_path=ckpt)
    assert sorted(epochs.seen) == [1, 2]
    assert epochs.seen[1][0] == pytest.approx(1e-4) and epochs.seen[2][0] == pytest.approx(1e-5)
    assert all(seen[3] for seen in epochs.seen.values())
    assert resumed.kmeans_info == model.kmeans_info
    assert saved["cdda_distance_history"] == {}  # saved before any alternating epoch
    assert {name: len(values) for name, values in resumed.distance_history.items()} == {"motion": 2, "appearance": 2}


def test_openvino_export_matches_pytorch(fitted, synthetic_root):
    from anomalib.deploy import ExportType

    from anomalib_vadproto.deploy import OpenVINOClipModel

    model, _, engine, work = fitted
    state = {k: v.clone() for k, v in model.state_dict().items()}
    xml = engine.export(
        model=model, export_type=ExportType.OPENVINO, export_root=work / "export", input_size=(48, 64)
    )  # raw synthetic frames: the graph resizes
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    data = clip_datamodule(synthetic_root)
    data.setup()
    clips = torch.cat([batch.image for batch in data.test_dataloader()])[:6]
    outputs = OpenVINOClipModel(xml)(clips.numpy())
    with model.read_only_eval(), torch.no_grad():
        reference = model.predict_clip(clips)
    assert set(outputs) == set(reference) >= {"pred_score", "anomaly_map", "cue_regularity"}
    assert {name for name in outputs if name.startswith("cue_")} == {"cue_regularity"}  # no diagnostics by default
    np.testing.assert_allclose(outputs["pred_score"], reference["pred_score"].numpy(), atol=1e-3)
    np.testing.assert_allclose(outputs["anomaly_map"], reference["anomaly_map"].numpy(), rtol=1e-3, atol=1e-7)
    # the cue is 1 / p: compare relatively
    np.testing.assert_allclose(outputs["cue_regularity"], reference["cue_regularity"].numpy(), rtol=1e-3)


def test_spatial_decoder_input_raw_decodes_the_code_before_normalisation() -> None:
    from anomalib_vadproto.models.cdda.layers import l1_normalise
    from anomalib_vadproto.models.cdda.torch_model import CddaModel

    torch.manual_seed(0)
    normalised = CddaModel(in_channels=1, width=4, num_clusters=4).train()
    raw = CddaModel(in_channels=1, width=4, num_clusters=4, spatial_decoder_input="raw").train()
    raw.load_state_dict(normalised.state_dict())  # same weights: only what the decoder reads differs
    clip = torch.rand(2, 5, 1, 32, 32) * 2 - 1
    a, b = normalised(clip), raw(clip)
    code, _ = normalised.spatial_encoder.encode(b.last_frame)
    torch.testing.assert_close(a.appearance, normalised.spatial_decoder(l1_normalise(code)))
    torch.testing.assert_close(b.appearance, raw.spatial_decoder(code))
    assert not torch.allclose(a.appearance, b.appearance)
    for name in a.features:  # the clustering sees the same normalised code either way
        torch.testing.assert_close(a.features[name], b.features[name])
    with pytest.raises(ValueError, match="spatial_decoder_input must be one of"):
        CddaModel(spatial_decoder_input="l2")


@pytest.mark.parametrize("codes", ["train", "eval"])
def test_kmeans_codes_choose_the_gathered_features_and_the_agreement_is_reported(codes) -> None:
    model = Cdda(**TINY, kmeans_codes=codes)
    model.model.train()
    model._samples = {name: [] for name in model.model.clusters}
    ae_opt, centre_opt = model.configure_optimizers()
    x = clip(b=4)
    with torch.no_grad():  # the weights the step reads, batch norm in eval mode
        model.model.eval()
        eval_features = model.model._forward(x).features
        model.model.train()
    model.optimisation_step(x, ae_opt, centre_opt)
    for name, (vectors,) in model._samples.items():
        expected = eval_features[name].flatten(2).transpose(1, 2).reshape(-1, vectors.shape[1])
        # Rows in any order; 1e-2 allows for rounding (train- and eval-mode codes are 0.1 or more apart here).
        gathered_from_eval = torch.cdist(vectors, expected).min(dim=1).values.max() < 1e-2
        # Only the spatial encoder has batch norm: the motion codes are the same in both modes.
        assert bool(gathered_from_eval) is (codes == "eval" or name == "motion")
    assert model.model.training  # back in training mode
    model.start_alternating()
    # The two codes' mean cosine similarity: 1 without batch norm, below 1 with it.
    assert model.kmeans_info["motion"]["train_eval_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < model.kmeans_info["appearance"]["train_eval_cosine"] < 0.99
    with pytest.raises(ValueError, match="kmeans_codes must be one of"):
        Cdda(**TINY, kmeans_codes="test")
