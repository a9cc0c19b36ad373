"""Known-answer tests of the Gaussian-window SSIM."""

import math

import pytest
import torch

from anomalib_vadproto.components.ssim import gaussian_window, ssim, ssim_loss, ssim_map

C1 = 0.01**2
C2 = 0.03**2


def brute_force_ssim_map(x, y, window_size, sigma, c1=C1, c2=C2):
    """Per-pixel loops with zero padding outside the image."""
    half = window_size // 2
    g = [math.exp(-((k - half) ** 2) / (2 * sigma**2)) for k in range(window_size)]
    g = [v / sum(g) for v in g]
    batch, channels, height, width = x.shape
    out = torch.empty(x.shape, dtype=torch.float64)

    def at(t, b, c, i, j):
        return float(t[b, c, i, j]) if 0 <= i < height and 0 <= j < width else 0.0

    for b in range(batch):
        for c in range(channels):
            for i in range(height):
                for j in range(width):
                    mx = my = sxx = syy = sxy = 0.0
                    for di in range(window_size):
                        for dj in range(window_size):
                            w = g[di] * g[dj]
                            a = at(x, b, c, i + di - half, j + dj - half)
                            v = at(y, b, c, i + di - half, j + dj - half)
                            mx += w * a
                            my += w * v
                            sxx += w * a * a
                            syy += w * v * v
                            sxy += w * a * v
                    vx, vy, cov = sxx - mx * mx, syy - my * my, sxy - mx * my
                    out[b, c, i, j] = ((2 * mx * my + c1) * (2 * cov + c2)) / (
                        (mx * mx + my * my + c1) * (vx + vy + c2)
                    )
    return out


def test_identical_images_give_one():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_symmetric():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 12, 10), torch.rand(2, 3, 12, 10)
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), abs=1e-7)
    assert ssim(x, y).item() < 0.5


def test_matches_brute_force_reference():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    y = (x + 0.3 * torch.randn(1, 1, 6, 6, dtype=torch.float64)).clamp(0, 1)
    expected = brute_force_ssim_map(x, y, window_size=3, sigma=1.0)
    got = ssim_map(x, y, window_size=3, sigma=1.0)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    assert ssim(x, y, window_size=3, sigma=1.0).item() == pytest.approx(expected.mean().item(), abs=1e-10)
    assert ssim_loss(x, y, window_size=3, sigma=1.0).item() == pytest.approx(1 - expected.mean().item(), abs=1e-10)


def test_matches_brute_force_multichannel_default_constants_changed():
    torch.manual_seed(1)
    x = torch.rand(2, 2, 5, 4, dtype=torch.float64) * 2 - 1
    y = torch.rand(2, 2, 5, 4, dtype=torch.float64) * 2 - 1
    expected = brute_force_ssim_map(x, y, window_size=5, sigma=1.5, c1=0.02, c2=0.05)
    got = ssim_map(x, y, window_size=5, sigma=1.5, c1=0.02, c2=0.05)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_constant_images_closed_form():
    a, b = 0.8, 0.3
    closed = (2 * a * b + C1) / (a * a + b * b + C1)  # variances and covariance vanish: c2 / c2 = 1
    x = torch.full((1, 1, 9, 9), a, dtype=torch.float64)
    y = torch.full((1, 1, 9, 9), b, dtype=torch.float64)
    interior = ssim_map(x, y, window_size=3, sigma=1.0)[0, 0, 1:-1, 1:-1]  # window fully inside
    torch.testing.assert_close(interior, torch.full_like(interior, closed), atol=1e-10, rtol=0)
    # a 1x1 window never touches the padding, so the mean is the closed form too
    assert ssim(x, y, window_size=1).item() == pytest.approx(closed, abs=1e-12)


def test_constant_image_border_pixel_by_hand():
    # corner pixel, window 3: the in-image weight is s = (g0 + g1)^2; zero padding elsewhere
    a, b, sigma = 0.8, 0.3, 1.0
    g = [math.exp(-1 / (2 * sigma**2)), 1.0, math.exp(-1 / (2 * sigma**2))]
    g = [v / sum(g) for v in g]
    s = (g[1] + g[2]) ** 2
    mx, my = s * a, s * b
    vx, vy, cov = s * a * a - mx**2, s * b * b - my**2, s * a * b - mx * my
    corner = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    x = torch.full((1, 1, 5, 5), a, dtype=torch.float64)
    y = torch.full((1, 1, 5, 5), b, dtype=torch.float64)
    assert ssim_map(x, y, window_size=3, sigma=sigma)[0, 0, 0, 0].item() == pytest.approx(corner, abs=1e-12)


def test_gaussian_window_is_normalised_outer_product():
    w = gaussian_window(5, 1.5, dtype=torch.float64)
    assert w.shape == (5, 5)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(w, w.T)
    assert w[2, 2] == w.max()
    assert w[0, 2].item() / w[2, 2].item() == pytest.approx(math.exp(-4 / (2 * 1.5**2)), rel=1e-12)


def test_gradient_flows():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    y = torch.rand(1, 3, 8, 8)
    ssim_loss(x, y).backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "match"),
    [
        ((3, 8, 8), (3, 8, 8), "4-D"),
        ((1, 3, 8, 8), (3, 8, 8), "4-D"),
        ((1, 3, 8, 8), (1, 3, 8, 7), "equal shapes"),
        ((1, 3, 8, 8), (1, 1, 8, 8), "equal shapes"),
    ],
)
def test_bad_shapes_raise(x_shape, y_shape, match):
    with pytest.raises(ValueError, match=match):
        ssim(torch.zeros(x_shape), torch.zeros(y_shape))
    with pytest.raises(ValueError, match=match):
        ssim_loss(torch.zeros(x_shape), torch.zeros(y_shape))


@pytest.mark.parametrize("window_size", [0, 4])
def test_bad_window_raises(window_size):
    with pytest.raises(ValueError, match="odd"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), window_size=window_size)
