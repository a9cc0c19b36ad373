"""Known-answer tests of the shared losses and cues."""

import math

import pytest
import torch

from anomalib_vadproto.components.losses import compactness_loss, gradient_loss, intensity_loss, separateness_loss
from anomalib_vadproto.components.scores import error_map, feature_distance, frame_mse, psnr, regular_score


def const(value, shape=(1, 3, 4, 4)):
    return torch.full(shape, float(value))


def test_psnr_uses_peak_one_on_unit_range():
    # [-1,1] -> [0,1]: 1 vs 0 gives mse 1 -> 0 dB; 0 vs -1 gives 0.5 vs 0, mse 0.25 -> 10 log10(4)
    assert psnr(const(1), const(-1)).item() == pytest.approx(0.0, abs=1e-6)
    assert psnr(const(0), const(-1)).item() == pytest.approx(10 * math.log10(4), abs=1e-5)
    perfect = psnr(const(0.3), const(0.3))
    assert torch.isfinite(perfect).all() and perfect.item() == pytest.approx(100.0)


def test_psnr_is_per_sample():
    pred = torch.cat([const(0), const(1)])
    target = torch.cat([const(-1), const(-1)])
    assert psnr(pred, target).tolist() == pytest.approx([10 * math.log10(4), 0.0], abs=1e-5)


def test_regular_score_is_weighted_mse():
    # constant error e on [0,1] -> weights all equal -> E = e
    assert regular_score(const(0), const(-1)).item() == pytest.approx(0.25, abs=1e-7)
    # two elements with squared errors a and b: E = (wa*a + wb*b)/(wa+wb), w = 1 - exp(-e)
    pred = torch.tensor([[[[0.0, 1.0]]]])  # -> 0.5, 1.0
    target = torch.tensor([[[[-1.0, -1.0]]]])  # -> 0, 0
    a, b = 0.25, 1.0
    wa, wb = 1 - math.exp(-a), 1 - math.exp(-b)
    assert regular_score(pred, target).item() == pytest.approx((wa * a + wb * b) / (wa + wb), rel=1e-6)
    assert regular_score(const(0.2), const(0.2)).item() == 0.0


def test_error_map_and_mse():
    pred, target = const(0, (2, 3, 4, 5)), const(-1, (2, 3, 4, 5))
    emap = error_map(pred, target)
    assert emap.shape == (2, 1, 4, 5)
    assert torch.allclose(emap, torch.full_like(emap, 0.25))
    assert torch.allclose(frame_mse(pred, target), torch.full((2,), 0.25))


def test_compactness_is_mse_over_every_element_with_items_detached():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    items = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = compactness_loss(queries, items, torch.tensor([0, 1]))
    # errors: (1,0) and (-1,0) -> squares 1,0,1,0 -> mean 0.5
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert items.grad is None and queries.grad is not None


def test_separateness_is_pytorch_mean_triplet_with_eps():
    q = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    items = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    loss = separateness_loss(q, items, torch.tensor([0, 0]), torch.tensor([1, 1]), margin=1.0)
    eps = 1e-6
    d = lambda a, b: math.dist([a[0] - b[0] + eps, a[1] - b[1] + eps], [0, 0])  # noqa: E731
    per = [max(0.0, d(x, items[0]) - d(x, items[1]) + 1.0) for x in q.tolist()]
    assert loss.item() == pytest.approx(sum(per) / 2, rel=1e-5)


def test_feature_distance_per_clip():
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    items = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    nearest = torch.tensor([[0, 0], [1, 0]])
    # clip 0: errors (0,0),(0,1)-(1,0)=(-1,1) -> squares 0,0,1,1 -> mean 0.5; clip 1: (1,0),(0,0) -> 0.25
    assert feature_distance(queries, items, nearest).tolist() == pytest.approx([0.5, 0.25])


def test_gradient_loss_pad_and_zero_borders():
    target = torch.zeros(1, 1, 2, 2)
    pred = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    # pad: gx(pred) = [[1, -1],[0,0]] -> |.| = [[1,1],[0,0]]; gy(pred) = [[0,-1],[0,0]] -> [[0,1],[0,0]]
    assert gradient_loss(pred, target, border="pad").item() == pytest.approx((2 + 1) / 4)
    # zero: gx = [[1,0],[0,0]], gy = [[0,-1],[0,0]] -> sum |.| = 2
    assert gradient_loss(pred, target, border="zero").item() == pytest.approx(2 / 4)
    assert gradient_loss(pred, pred).item() == 0.0
    with pytest.raises(ValueError, match="border"):
        gradient_loss(pred, target, border="reflect")


def test_intensity_loss():
    assert intensity_loss(const(0.5), const(-0.5)).item() == pytest.approx(1.0)
