"""Unit tests of the APN model: parameter count, losses with known answers, score cues, options, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_vadproto import Apn
from anomalib_vadproto.components.clip import ClipShapeError
from anomalib_vadproto.models.apn import ApnModel
from anomalib_vadproto.models.apn.prototype_unit import PrototypeOutput
from anomalib_vadproto.models.apn.torch_model import diversity_loss, feature_mse, feature_psnr


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def clip(b: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 5, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny(**kwargs) -> ApnModel:
    torch.manual_seed(0)
    return ApnModel(in_channels=1, width=4, **kwargs)


def test_code_network_has_the_reference_parameter_count():
    model = ApnModel()
    encoder_convs = sum(count(stage.block) for stage in (model.enc1, model.enc2, model.enc3))
    attention = sum(count(stage.context) for stage in (model.enc1, model.enc2, model.enc3))
    decoder = sum(count(m) for m in (model.dec3, model.up3, model.dec2, model.up2))
    assert (encoder_convs, attention, decoder) == (1_150_592, 108_083, 1_991_616)  # the released code's layers
    assert count(model.prototype_unit) == 1_280 and count(model.head) == 112_451
    assert count(model) == 3_364_022


def test_prototype_unit_invariants_inside_the_model():
    model = tiny().train()
    out = model(clip())
    features = out.prototypes
    assert features.queries.shape == (2, 16 * 16, 8)  # full resolution, 2 * width channels
    torch.testing.assert_close(features.queries.norm(dim=2), torch.ones(2, 256))
    torch.testing.assert_close(features.prototypes.norm(dim=2), torch.ones(2, 10))
    weights = torch.softmax(model.prototype_unit.heads(features.queries), dim=1)  # normalcy weights a_{n,m}
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 10))  # sum to 1 over positions
    assert out.prediction.shape == out.target.shape == (2, 1, 16, 16)
    assert out.prediction.abs().max() <= 1


def test_diversity_loss_known_answers():
    eye = torch.eye(4).unsqueeze(0)  # orthogonal prototypes: d = 1 - 2 = -1 -> 0
    assert diversity_loss(eye) == 0
    same = F.normalize(torch.ones(1, 3, 4), dim=2)  # identical: d = 1 for each of the 3 pairs
    assert diversity_loss(same).item() == pytest.approx(1.0)
    angle = torch.tensor([[[1.0, 0.0], [math.cos(math.pi / 4), math.sin(math.pi / 4)]]])  # 45°: 2cos - 1
    assert diversity_loss(angle).item() == pytest.approx(math.sqrt(2) - 1, abs=1e-6)
    assert diversity_loss(torch.cat([angle, F.normalize(torch.eye(2), dim=1)[None]])).item() == pytest.approx(
        (math.sqrt(2) - 1) / 2, abs=1e-6
    )  # mean over samples
    assert diversity_loss(torch.ones(2, 1, 4)) == 0  # one prototype: no pairs
    p = F.normalize(torch.randn(2, 5, 8), dim=2).requires_grad_()
    diversity_loss(p).backward()
    assert torch.isfinite(p.grad).all()


def test_feature_cue_uses_each_locations_nearest_prototype():
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    prototypes = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = PrototypeOutput(torch.zeros(1), queries, prototypes, queries @ prototypes.transpose(1, 2))
    expected = (0.6**2 + 0.2**2) / 6  # third query -> (0, 1): difference (0.6, -0.2); others exact
    torch.testing.assert_close(feature_mse(out), torch.tensor([expected]))
    torch.testing.assert_close(feature_psnr(out), torch.tensor([10 * math.log10(1 / expected)]))


def test_score_is_pure_and_gives_both_normality_cues():
    model = tiny().eval()
    x = clip(3)
    with torch.no_grad():
        batch, cues = model.score(x)
        again, _ = model.score(x)
    assert set(cues) == {"psnr", "psnr_feature"}
    assert cues["psnr"].shape == cues["psnr_feature"].shape == (3,)
    torch.testing.assert_close(batch.pred_score, -cues["psnr"])
    torch.testing.assert_close(batch.pred_score, again.pred_score)  # no state between clips
    assert batch.anomaly_map.shape == (3, 1, 16, 16)


def test_losses_train_every_parameter():
    module = Apn(width=4, image_size=16, grayscale=True, seed=0)
    module.model.train()
    out = module.model(clip())
    losses = module.losses(out)
    assert set(losses) == {"pixel", "ssim", "feature", "diversity"}
    assert all(torch.isfinite(v) for v in losses.values())
    (losses["pixel"] + losses["feature"] + losses["ssim"] + losses["diversity"]).backward()
    assert all(p.grad is not None for p in module.model.parameters())
    heads = module.model.prototype_unit.heads.weight
    heads.grad = None
    module.model.zero_grad()
    module.losses(module.model(clip()))["feature"].backward()
    assert heads.grad.abs().sum() > 0  # L_fea reaches the attention heads: prototypes are not detached


def test_optimizer_is_constant_adamw():
    module = Apn(width=4, image_size=16, grayscale=True, lr=1e-3)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["weight_decay"] == 0.01


def test_cosine_schedule_anneals_to_zero_over_the_run():
    module = Apn(width=4, image_size=16, grayscale=True, lr=1e-3, lr_schedule="cosine")
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and config["lr_scheduler"]["interval"] == "epoch"
    assert scheduler.T_max == 1  # no trainer attached: one epoch
    module.schedule_epochs = lambda: 4
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-3) and lrs[2] == pytest.approx(5e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule"):
        Apn(width=4, image_size=16, grayscale=True, lr_schedule="step")


def test_context_fusion_options():
    summed = tiny()
    concat = tiny(context_fusion="concat")
    assert summed.enc1.fuse is None
    assert count(concat) - count(summed) == sum(2 * c * c + c for c in (4, 8, 16))  # three 1x1 fusions
    with torch.no_grad():
        assert torch.isfinite(concat.eval().score(clip())[0].pred_score).all()
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(summed.enc1.context(x), 2 * x)  # code: x + CCA(CCA(x)), gamma = 0 at start


def test_protocol_reports_both_smoothings():
    module = Apn(width=4, image_size=16, grayscale=True)
    assert not module.protocol.smoothing and module.protocol_other.smoothing
    assert module.protocol.cue_weights == {"psnr": 0.5, "psnr_feature": 0.5}
    smoothed = Apn(width=4, image_size=16, grayscale=True, smoothing=True)
    assert smoothed.protocol.smoothing and smoothed.protocol_other.prefix == "protocol_unsmoothed_"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (torch.zeros(2, 5, 16, 16), ClipShapeError),  # 4-D
        (torch.zeros(2, 4, 1, 16, 16), ClipShapeError),  # wrong clip length
        (torch.zeros(2, 5, 3, 16, 16), ClipShapeError),  # wrong channels
        (torch.full((2, 5, 1, 16, 16), float("nan")), ValueError),
    ],
)
def test_bad_clips_fail_clearly(bad, error):
    with pytest.raises(error):
        tiny()(bad)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="context_fusion"):
        ApnModel(context_fusion="add")
    with pytest.raises(ValueError, match="width"):
        ApnModel(width=0)
    with pytest.raises(ValueError, match="score_weight"):
        Apn(score_weight=2.0)


def test_smoothing_holds_the_borders_like_the_official_filter_and_is_settable():
    module = Apn(width=4, image_size=16, grayscale=True)
    assert module.protocol.smoothing_mode == module.protocol_other.smoothing_mode == "hold"
    other = Apn(width=4, image_size=16, grayscale=True, smoothing_mode="nearest")
    assert other.protocol_other.smoothing_mode == "nearest"
    with pytest.raises(ValueError, match="smoothing_mode"):
        Apn(width=4, image_size=16, grayscale=True, smoothing_mode="wrap")
