"""``research.cdda_error_localisation`` measures the right pixels of the right maps."""

from __future__ import annotations

import math

import pytest
import torch

from anomalib_vadproto import Cdda
from research import cdda_error_localisation as localisation


def test_error_maps_are_each_autoencoders_squared_residual() -> None:
    torch.manual_seed(0)
    model = Cdda(image_size=(32, 32), grayscale=True, width=4, num_clusters=4).eval()
    clip = torch.rand(2, 5, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        maps = localisation.error_maps(model.model, clip)
        out = model.model._forward(clip)  # noqa: SLF001
    frames = (clip + 1) / 2
    torch.testing.assert_close(maps["frame"], frames[:, -1, 0])
    torch.testing.assert_close(maps["previous"], frames[:, -2, 0])
    torch.testing.assert_close(maps["appearance"], (frames[:, -1] - out.appearance).square().mean(dim=1))
    motion_target = frames[:, :-1] - frames[:, -1:]
    torch.testing.assert_close(maps["motion"], (motion_target - out.differences).square().mean(dim=(1, 2)))
    torch.testing.assert_close(maps["reconstruction"], out.reconstruction_error_map()[:, 0])
    assert all(value.shape == (2, 32, 32) for value in maps.values())


def test_region_masks_on_a_hand_made_pair_of_frames() -> None:
    frame = torch.zeros(2, 4, 4)
    previous = torch.zeros(2, 4, 4)
    previous[:, 0, :2] = 0.2  # two pixels move in both frames
    gt_mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt_mask[:, :2, :4] = True  # full-resolution anomaly covering the top-left 1x2 pixels at 4x4
    gt_mask[:, 4, 4] = True  # a quarter of one pixel: below half, dropped
    labels = torch.tensor([1, 0])
    regions = localisation.region_masks({"frame": frame, "previous": previous}, gt_mask, labels, threshold=0.1)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, :2] = True
    assert torch.equal(regions["anomaly"][0], expected)
    assert not regions["anomaly"][1].any()  # the normal frame has no anomaly, whatever its mask says
    assert torch.equal(regions["anomaly_moving"][0], expected)  # those two pixels also move
    assert not regions["moving"][0].any() and not regions["static"][0].any()  # anomalous frames: neither
    assert torch.equal(regions["moving"][1], expected)
    assert torch.equal(regions["static"][1], ~expected)


def test_crowd_correlation_follows_the_sign_and_skips_short_videos() -> None:
    rising = [("a", n, 2.0 * n, -float(n), 0.0) for n in range(12)]
    short = [("b", n, -3.0 * n, float(n), 0.0) for n in range(5)]  # fewer than 10 frames: skipped
    assert localisation.crowd_correlation(rising + short, 0) == pytest.approx(1.0)
    assert localisation.crowd_correlation(rising + short, 1) == pytest.approx(-1.0)
    assert math.isnan(localisation.crowd_correlation(rising, 2))  # a constant error has no correlation
    assert math.isnan(localisation.crowd_correlation(short, 0))


def test_pixel_auroc_separates_and_subsamples() -> None:
    generator = torch.Generator().manual_seed(0)
    high, low = torch.full((50,), 2.0), torch.rand(500, generator=generator)
    assert localisation.pixel_auroc(high, low, limit=10_000, generator=generator) == 100.0
    assert localisation.pixel_auroc(low[:50], high, limit=10_000, generator=generator) == 0.0
    mixed = localisation.pixel_auroc(torch.rand(300, generator=generator), low, limit=200, generator=generator)
    assert 30.0 < mixed < 70.0  # the same distribution, on a subsample of 200
