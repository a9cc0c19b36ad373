"""Structural similarity (SSIM) with a Gaussian window, as in APN's code.

Each channel is filtered separately (depthwise convolution) with a normalised 2-D Gaussian window,
the outer product of a 1-D Gaussian with standard deviation ``sigma``, using zero padding of
``window_size // 2`` so the map keeps the input size. With ``w * .`` that filtering,

``mu_x = w * x``, ``sigma_x^2 = w * x^2 - mu_x^2``, ``sigma_xy = w * (x y) - mu_x mu_y`` and

``SSIM = (2 mu_x mu_y + c1)(2 sigma_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(sigma_x^2 + sigma_y^2 + c2))``.

The default constants ``c1 = 0.01^2`` and ``c2 = 0.03^2`` assume a dynamic range of 1 (images in
``[0, 1]``), while APN's code applies SSIM to frames in ``[-1, 1]`` with these constants unchanged;
this module keeps them as in that code and leaves the input range to the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

__all__ = ["gaussian_window", "ssim", "ssim_loss", "ssim_map"]


def gaussian_window(
    window_size: int = 11,
    sigma: float = 1.5,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Build the normalised 2-D Gaussian window.

    Args:
        window_size: Odd side length of the window.
        sigma: Standard deviation of the Gaussian, in pixels.
        dtype: Floating dtype of the window.
        device: Device of the window.

    Returns:
        ``(window_size, window_size)`` window summing to one.

    Raises:
        ValueError: If ``window_size`` is not a positive odd integer or ``sigma`` is not positive.

    """
    if window_size < 1 or window_size % 2 == 0:
        msg = f"window_size must be a positive odd integer, got {window_size}"
        raise ValueError(msg)
    if sigma <= 0:
        msg = f"sigma must be positive, got {sigma}"
        raise ValueError(msg)
    offsets = torch.arange(window_size, dtype=dtype, device=device) - window_size // 2
    gauss = torch.exp(-(offsets**2) / (2 * sigma**2))
    gauss = gauss / gauss.sum()
    return torch.outer(gauss, gauss)


def _check_pair(x: Tensor, y: Tensor) -> None:
    """Raise a ``ValueError`` unless ``x`` and ``y`` are 4-D with equal shapes."""
    if x.dim() != 4 or y.dim() != 4:
        msg = f"ssim expects 4-D (B, C, H, W) tensors, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        raise ValueError(msg)
    if x.shape != y.shape:
        msg = f"ssim expects equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}"
        raise ValueError(msg)


def ssim_map(
    x: Tensor,
    y: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 0.01**2,
    c2: float = 0.03**2,
) -> Tensor:
    """Compute the per-pixel, per-channel SSIM map.

    Args:
        x: ``(B, C, H, W)`` images.
        y: ``(B, C, H, W)`` images.
        window_size: Odd side length of the Gaussian window.
        sigma: Standard deviation of the Gaussian window.
        c1: Stabiliser of the luminance term.
        c2: Stabiliser of the contrast-structure term.

    Returns:
        ``(B, C, H, W)`` SSIM map.

    Raises:
        ValueError: If the inputs are not 4-D with equal shapes, or the window is invalid.

    """
    _check_pair(x, y)
    channels = x.shape[1]
    window = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    weight = window.expand(channels, 1, window_size, window_size)
    padding = window_size // 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, weight, padding=padding, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = blur(x * x) - mu_x2
    var_y = blur(y * y) - mu_y2
    cov = blur(x * y) - mu_xy
    return ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_x2 + mu_y2 + c1) * (var_x + var_y + c2))


def ssim(
    x: Tensor,
    y: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 0.01**2,
    c2: float = 0.03**2,
) -> Tensor:
    """Compute the mean SSIM over batch, channels and pixels.

    Args:
        x: ``(B, C, H, W)`` images.
        y: ``(B, C, H, W)`` images.
        window_size: Odd side length of the Gaussian window.
        sigma: Standard deviation of the Gaussian window.
        c1: Stabiliser of the luminance term.
        c2: Stabiliser of the contrast-structure term.

    Returns:
        Scalar mean of :func:`ssim_map`.

    Raises:
        ValueError: If the inputs are not 4-D with equal shapes, or the window is invalid.

    """
    return ssim_map(x, y, window_size=window_size, sigma=sigma, c1=c1, c2=c2).mean()


def ssim_loss(x: Tensor, y: Tensor, **kwargs: float) -> Tensor:
    """Compute ``1 - ssim(x, y)``.

    Args:
        x: ``(B, C, H, W)`` images.
        y: ``(B, C, H, W)`` images.
        **kwargs: ``window_size``, ``sigma``, ``c1`` or ``c2``, passed to :func:`ssim`.

    Returns:
        Scalar loss, zero for identical images.

    Raises:
        ValueError: If the inputs are not 4-D with equal shapes, or the window is invalid.

    """
    return 1 - ssim(x, y, **kwargs)
