"""Losses shared by the five models, in the forms of the methods' released code.

The published loss weights only make sense in these forms: compactness is an MSE averaged over
every element (channels included), separateness is PyTorch's mean triplet-margin loss with
non-squared distances, the intensity loss is an MSE, and the gradient loss follows Liu et al.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from anomalib_vadproto.errors import check_choice

#: Borders of :func:`gradient_loss`.
GRADIENT_BORDERS = ("pad", "zero")


def intensity_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over every element."""
    return F.mse_loss(prediction, target)


def compactness_loss(queries: Tensor, items: Tensor, nearest: Tensor, detach_items: bool = True) -> Tensor:
    """``mean((q - p_a(q))²)`` over all queries and channels.

    Args:
        queries: ``(N, C)`` queries.
        items: ``(M, C)`` memory items or prototypes.
        nearest: ``(N,)`` index of each query's nearest item.
        detach_items: Stop the gradient to the items (MNAD's memory, default); DLAN-AC's prototypes
            are learnt outputs and keep it.

    """
    return F.mse_loss(queries, (items.detach() if detach_items else items)[nearest])


def separateness_loss(
    queries: Tensor,
    items: Tensor,
    nearest: Tensor,
    second: Tensor,
    margin: float = 1.0,
    detach_items: bool = True,
) -> Tensor:
    """Triplet margin loss pulling each query to its nearest item and away from the second nearest.

    PyTorch's default form: ``mean(max(0, ‖q - p_a + ε‖ - ‖q - p_b + ε‖ + margin))`` with
    ``ε = 1e-6``. With ``detach_items`` (MNAD, default) only the queries (the encoder) are trained.
    """
    if detach_items:
        items = items.detach()
    return F.triplet_margin_loss(queries, items[nearest], items[second], margin=margin)


def gradient_loss(prediction: Tensor, target: Tensor, border: str = "pad") -> Tensor:
    """Gradient (sharpness) loss of Liu et al.: ``mean(| |∂I| - |∂Î| |)`` over x and y.

    Args:
        prediction: ``(B, C, H, W)`` predicted frames.
        target: ``(B, C, H, W)`` ground-truth frames.
        border: ``"pad"`` zero-pads the last row/column before differencing (DLAN-AC's code, so the
            border "gradient" is the negated pixel), ``"zero"`` sets the border gradients to 0
            (the STD/CDDA code).

    """
    check_choice("border", border, GRADIENT_BORDERS)

    def grads(x: Tensor) -> tuple[Tensor, Tensor]:
        if border == "pad":
            gx = F.pad(x, (0, 1, 0, 0))[..., :, 1:] - x
            gy = F.pad(x, (0, 0, 0, 1))[..., 1:, :] - x
        else:
            gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
            gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        return gx.abs(), gy.abs()

    pgx, pgy = grads(prediction)
    tgx, tgy = grads(target)
    return torch.mean((tgx - pgx).abs() + (tgy - pgy).abs())
