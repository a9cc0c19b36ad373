"""Criss-cross attention (CCNet, Huang et al.) in the recurrent form used by APN (Hu et al. 2021).

For a feature map ``x`` of shape ``(B, C, H, W)`` three 1x1 convolutions give queries
``Q = W_q x`` and keys ``K = W_k x`` with ``C // reduction`` channels (at least one) and values
``V = W_v x`` with ``C`` channels. A pixel ``u = (i, j)`` attends to the ``H + W - 1`` pixels on
its criss-cross path: the ``H`` pixels of its column and the ``W`` pixels of its row. The energy
``e_{u,v} = Q_u^T K_v`` is computed for both; ``u`` itself lies on both lines, so its column
energy is set to ``-inf`` and it is counted once, through the row. One softmax over the
concatenation ``[column (H) | row (W)]`` gives the weights ``A_u`` and the output is
``gamma * sum_v A_{u,v} V_v + x_u`` with a learnable scalar ``gamma`` initialised to zero, so the
block starts as the identity.

One pass only mixes information along a row and a column. :class:`RecurrentCrissCross` applies
the *same* block (shared weights) ``recurrence`` times: after two hops every pixel has reached
every other one (``u -> (i, j') -> (i', j')``), which gives full-image context at a cost of
``O(HW (H + W))`` instead of ``O((HW)^2)``. As in APN's code, the recurrent module adds its input
once more, ``x + CCA(CCA(x))``, so at initialisation it returns exactly ``2 x``.

The computation is whole-tensor batched matrix products on channels-last ``(B, H, W, C)`` views;
the diagonal mask is built from the shape only, so the block can be exported with
``torch.onnx.export(dynamo=True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

__all__ = ["CrissCrossAttention", "RecurrentCrissCross"]


class CrissCrossAttention(nn.Module):
    """Apply one criss-cross attention hop with a zero-initialised residual scale.

    Args:
        channels: Number of input (and output) channels ``C``.
        reduction: Channel reduction of the queries and keys, ``C // reduction`` (at least 1).

    Raises:
        ValueError: If ``channels`` or ``reduction`` is not positive.

    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            msg = f"channels and reduction must be positive, got channels={channels}, reduction={reduction}"
            raise ValueError(msg)
        self.channels = channels
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, kernel_size=1)
        self.key = nn.Conv2d(channels, inner, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _check(self, x: Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is ``(B, channels, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            msg = f"expected input of shape (B, {self.channels}, H, W), got {tuple(x.shape)}"
            raise ValueError(msg)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``x`` to queries, keys and values, each ``(B, H, W, C')`` (channels last).

        The 1x1 convolutions run as matrix products on the channels-last view of ``x`` (free for a
        channels-last ``x``). The attention reads rows and columns of pixels as ``(positions, channels)``
        matrices, and this layout gives them directly, with fewer transposes than projecting in NCHW.
        OpenVINO, which keeps convolution outputs in channel blocks, then makes fewer layout copies.
        """
        pixels = x.permute(0, 2, 3, 1)
        return tuple(F.linear(pixels, conv.weight.flatten(1), conv.bias) for conv in (self.query, self.key, self.value))

    def _weights(self, q: Tensor, k: Tensor) -> Tensor:
        """``(B, H, W, H + W)`` criss-cross weights from ``(B, H, W, C')`` queries and keys."""
        height = q.shape[1]
        # row energies [b, i, j, l] = <Q(i, j), K(i, l)>
        row = q @ k.transpose(2, 3)
        # column energies [b, j, i, k] = <Q(i, j), K(k, j)>, viewed as [b, i, j, k]
        q_col, k_col = q.transpose(1, 2), k.transpose(1, 2)
        col = (q_col @ k_col.transpose(2, 3)).transpose(1, 2)
        diagonal = torch.eye(height, dtype=torch.bool, device=q.device).unsqueeze(1)  # (H, 1, H): [i, ., k] = i == k
        col = col.masked_fill(diagonal, float("-inf"))
        return torch.softmax(torch.cat([col, row], dim=-1), dim=-1)

    def attention(self, x: Tensor) -> Tensor:
        """Compute the criss-cross attention weights of every pixel.

        Args:
            x: ``(B, C, H, W)`` feature map.

        Returns:
            ``(B, H, W, H + W)`` weights; for pixel ``(i, j)`` entry ``k < H`` is the weight of
            ``(k, j)`` in its column (zero for ``k == i``) and entry ``H + l`` the weight of
            ``(i, l)`` in its row. Each pixel's weights sum to one.

        Raises:
            ValueError: If ``x`` is not ``(B, C, H, W)`` with the module's ``C``.

        """
        self._check(x)
        q, k, _ = self._project(x)
        return self._weights(q, k)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``gamma * sum_v A_{u,v} V_v + x``.

        Args:
            x: ``(B, C, H, W)`` feature map.

        Returns:
            ``(B, C, H, W)`` attended feature map.

        Raises:
            ValueError: If ``x`` is not ``(B, C, H, W)`` with the module's ``C``.

        """
        self._check(x)
        height = x.shape[2]
        q, k, v = self._project(x)
        weights = self._weights(q, k)
        col_weights, row_weights = weights[..., :height], weights[..., height:]
        # out[b, i, j, :] = sum_k A_col[b, i, j, k] V[b, k, j, :] + sum_l A_row[b, i, j, l] V[b, i, l, :]
        col = (col_weights.transpose(1, 2) @ v.transpose(1, 2)).transpose(1, 2)
        row = row_weights @ v
        return self.gamma * (col + row).permute(0, 3, 1, 2) + x


class RecurrentCrissCross(nn.Module):
    """Apply one shared criss-cross attention block several times and add the input once more.

    Args:
        channels: Number of input (and output) channels.
        recurrence: Number of hops ``R`` (APN uses 2, enough to connect every pair of pixels).
        reduction: Channel reduction of the queries and keys.

    Raises:
        ValueError: If ``recurrence < 1``.

    """

    def __init__(self, channels: int, recurrence: int = 2, reduction: int = 8) -> None:
        super().__init__()
        if recurrence < 1:
            msg = f"recurrence must be >= 1, got {recurrence}"
            raise ValueError(msg)
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(channels, reduction=reduction)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x + CCA^R(x)`` with the same block applied ``R`` times.

        Args:
            x: ``(B, C, H, W)`` feature map.

        Returns:
            ``(B, C, H, W)`` feature map (``2 x`` while ``gamma`` is zero).

        Raises:
            ValueError: If ``x`` is not ``(B, C, H, W)`` with the module's ``C``.

        """
        return x + self.cca_only(x)

    def cca_only(self, x: Tensor) -> Tensor:
        """Return ``CCA^R(x)``, the shared block applied ``R`` times, without the extra residual."""
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x
