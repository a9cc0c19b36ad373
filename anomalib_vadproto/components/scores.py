"""Per-clip anomaly cues shared by the models: PSNR, MNAD's feature distance and regular score, the error map.

Every function takes frames in the models' ``[-1, 1]`` range and returns one value per clip.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_unit_range(x: Tensor) -> Tensor:
    """Map ``[-1, 1]`` images to ``[0, 1]``."""
    return (x + 1.0) / 2.0


def frame_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-sample MSE over ``(C, H, W)`` on the ``[0, 1]`` scale, ``(B,)``."""
    return (to_unit_range(prediction) - to_unit_range(target)).square().flatten(1).mean(dim=1)


def psnr(prediction: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """PSNR of the official evaluation scripts: ``10·log10(1 / mse)`` on ``[0, 1]`` images (peak 1).

    Args:
        prediction: ``(B, C, H, W)`` frames in ``[-1, 1]``.
        target: ``(B, C, H, W)`` frames in ``[-1, 1]``.
        eps: Floor on the MSE so a perfect prediction gives a large finite PSNR instead of ``inf``.

    Returns:
        ``(B,)`` PSNR in dB (high means normal).

    """
    return 10.0 * torch.log10(1.0 / frame_mse(prediction, target).clamp_min(eps))


def regular_score(prediction: Tensor, target: Tensor) -> Tensor:
    """Weighted regular score ``E_t`` that gates MNAD's test-time memory update (code form).

    ``e = (Î - I)²`` element-wise on ``[0, 1]``, ``ω = 1 - exp(-e)`` and ``E_t = Σ ω·e / Σ ω``: a
    weighted MSE. The thresholds ``γ`` of MNAD and LGN-Net are calibrated for this form.

    Returns:
        ``(B,)`` scores; 0 for a perfect prediction.

    """
    err = (to_unit_range(prediction) - to_unit_range(target)).square().flatten(1)
    weights = 1.0 - torch.exp(-err)
    return (weights * err).sum(dim=1) / weights.sum(dim=1).clamp_min(torch.finfo(err.dtype).tiny)


def error_map(prediction: Tensor, target: Tensor) -> Tensor:
    """Squared error on ``[0, 1]`` averaged over channels: the anomaly map, ``(B, 1, H, W)``."""
    return (to_unit_range(prediction) - to_unit_range(target)).square().mean(dim=1, keepdim=True)


def feature_distance(queries: Tensor, items: Tensor, nearest: Tensor) -> Tensor:
    """MNAD's feature cue ``D_t``: mean over locations and channels of ``(q - p_a(q))²``.

    Args:
        queries: ``(B, K, C)`` unit-norm queries per clip.
        items: ``(M, C)`` items used for the read.
        nearest: ``(B, K)`` nearest-item indices.

    Returns:
        ``(B,)`` distances (high means anomalous).

    """
    return (queries - items[nearest]).square().mean(dim=(1, 2))
