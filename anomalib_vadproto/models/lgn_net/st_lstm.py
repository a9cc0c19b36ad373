"""Spatiotemporal branch of LGN-Net (Zhao et al., 2022): PredRNN ST-LSTM cells stacked with zigzag memory.

The branch reads a short clip of encoded feature maps ``x_1 .. x_T`` and returns the local spatiotemporal
feature ``F_loc``. It is PredRNN's "STP-Net": ``L`` stacked spatiotemporal LSTM (ST-LSTM) cells.

**ST-LSTM cell** (:class:`STLSTMCell`). All convolutions are bias-free ``k x k`` convolutions with "same"
padding (``conv_last`` is ``1 x 1``); ``σ`` is the sigmoid, ``b_f`` the forget bias::

    i_x, f_x, g_x, i'_x, f'_x, g'_x, o_x = split(conv_x(X), 7)
    i_h, f_h, g_h, o_h                   = split(conv_h(H), 4)
    i_m, f_m, g_m                        = split(conv_m(M), 3)

    C_new = σ(f_x + f_h + b_f) ⊙ C + σ(i_x + i_h) ⊙ tanh(g_x + g_h)          (temporal memory)
    M_new = σ(f'_x + f_m + b_f) ⊙ M + σ(i'_x + i_m) ⊙ tanh(g'_x + g_m)      (spatiotemporal memory)
    o     = σ(o_x + o_h + conv_o([C_new ; M_new]))
    H_new = o ⊙ tanh(conv_last([C_new ; M_new]))

With ``in_channels = hidden = 128`` and ``k = 3`` one cell has exactly 2,392,064 parameters
(``conv_x`` 1,032,192 + ``conv_h`` 589,824 + ``conv_m`` 442,368 + ``conv_o`` 294,912 + ``conv_last`` 32,768).

**Zigzag memory flow** (:class:`SpatioTemporalStack`). ``H^l`` and ``C^l`` are per layer and flow only
horizontally (from step ``t-1`` to step ``t`` of the same layer). A single spatiotemporal memory ``M`` flows
upward through layers ``1 → L`` within a step, and the memory written by the top layer ``L`` at step ``t-1``
is the memory that layer 1 reads at step ``t``::

    step t:   x_t → layer 1 → layer 2 → ... → layer L
              M: (M_{t-1}^L) → M_t^1 → M_t^2 → ... → M_t^L

All states start at zero on every forward. The output after the last step is ``F_loc = [H_T^L ; M_T^L]``
(``2 * hidden`` channels). The LGN-ST ablation replaces the cells by plain ConvLSTM cells
(:class:`ConvLSTMCell`, no ``M``) and returns ``[H_T^L ; C_T^L]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from anomalib_vadproto.errors import check_choice

CELL_TYPES = ("st_lstm", "conv_lstm")


class STLSTMCell(nn.Module):
    """Spatiotemporal LSTM cell of PredRNN (bias-free convolutions).

    Args:
        in_channels: Channels of the input ``X``.
        hidden: Channels of ``H``, ``C`` and ``M``.
        kernel_size: Kernel size of ``conv_x``, ``conv_h``, ``conv_m`` and ``conv_o`` ("same" padding).
        forget_bias: Constant added to both forget-gate pre-activations.

    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.forget_bias = forget_bias
        pad = kernel_size // 2
        self.conv_x = nn.Conv2d(in_channels, 7 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, kernel_size, padding=pad, bias=False)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Advance the cell by one step.

        Args:
            x: Input ``(B, in_channels, H, W)``.
            h: Hidden state ``(B, hidden, H, W)``.
            c: Temporal cell state ``(B, hidden, H, W)``.
            m: Spatiotemporal memory ``(B, hidden, H, W)``.

        Returns:
            ``(h_new, c_new, m_new)``, each ``(B, hidden, H, W)``.

        """
        i_x, f_x, g_x, i_xp, f_xp, g_xp, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_m, f_m, g_m = torch.split(self.conv_m(m), self.hidden, dim=1)

        i = torch.sigmoid(i_x + i_h)
        f = torch.sigmoid(f_x + f_h + self.forget_bias)
        g = torch.tanh(g_x + g_h)
        c_new = f * c + i * g

        i_p = torch.sigmoid(i_xp + i_m)
        f_p = torch.sigmoid(f_xp + f_m + self.forget_bias)
        g_p = torch.tanh(g_xp + g_m)
        m_new = f_p * m + i_p * g_p

        mem = torch.cat([c_new, m_new], dim=1)
        o = torch.sigmoid(o_x + o_h + self.conv_o(mem))
        h_new = o * torch.tanh(self.conv_last(mem))
        return h_new, c_new, m_new


class ConvLSTMCell(nn.Module):
    """Standard convolutional LSTM cell (the LGN-ST ablation).

    Args:
        in_channels: Channels of the input ``X``.
        hidden: Channels of ``H`` and ``C``.
        kernel_size: Kernel size of the gate convolution ("same" padding).
        forget_bias: Constant added to the forget-gate pre-activation.

    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.forget_bias = forget_bias
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Advance the cell by one step.

        Args:
            x: Input ``(B, in_channels, H, W)``.
            h: Hidden state ``(B, hidden, H, W)``.
            c: Cell state ``(B, hidden, H, W)``.

        Returns:
            ``(h_new, c_new)``, each ``(B, hidden, H, W)``.

        """
        i, f, g, o = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden, dim=1)
        c_new = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new


class SpatioTemporalStack(nn.Module):
    """Stack of recurrent cells with zigzag memory (PredRNN "STP-Net"), LGN-Net's spatiotemporal branch.

    Args:
        in_channels: Channels of each input feature map.
        hidden: Channels of every layer's states.
        num_layers: Number of stacked cells ``L`` (>= 1).
        cell: ``"st_lstm"`` (LGN-Net) or ``"conv_lstm"`` (LGN-ST ablation).
        kernel_size: Kernel size of the cells' convolutions.
        forget_bias: Constant added to the forget-gate pre-activations.

    Raises:
        ValueError: If ``cell`` is unknown or ``num_layers`` / ``hidden`` is smaller than 1.

    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        num_layers: int = 4,
        cell: str = "st_lstm",
        kernel_size: int = 3,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, CELL_TYPES)
        if num_layers < 1:
            msg = f"num_layers must be >= 1, got {num_layers}."
            raise ValueError(msg)
        if hidden < 1:
            msg = f"hidden must be >= 1, got {hidden}."
            raise ValueError(msg)
        self.in_channels = in_channels
        self.hidden = hidden
        self.num_layers = num_layers
        self.cell_type = cell
        cell_cls = STLSTMCell if cell == "st_lstm" else ConvLSTMCell
        self.cells = nn.ModuleList(
            cell_cls(in_channels if layer == 0 else hidden, hidden, kernel_size, forget_bias)
            for layer in range(num_layers)
        )

    @property
    def output_channels(self) -> int:
        """Return the channels of ``F_loc`` (``2 * hidden``)."""
        return 2 * self.hidden

    def forward(self, frames: Tensor) -> Tensor:
        """Run the stack over a clip and return ``F_loc``.

        Args:
            frames: Encoded feature maps ``(B, T, in_channels, H, W)``, one per time step.

        Returns:
            ``[H_T^L ; M_T^L]`` (``st_lstm``) or ``[H_T^L ; C_T^L]`` (``conv_lstm``), shape ``(B, 2*hidden, H, W)``.

        Raises:
            ValueError: If ``frames`` is not ``(B, T, in_channels, H, W)`` with ``T >= 1``.

        """
        if frames.ndim != 5 or frames.shape[2] != self.in_channels or frames.shape[1] < 1:
            msg = (
                f"Expected frames of shape (B, T, in_channels={self.in_channels}, H, W) with T >= 1, "
                f"got {tuple(frames.shape)}."
            )
            raise ValueError(msg)
        batch, steps, _, height, width = frames.shape
        zeros = frames.new_zeros(batch, self.hidden, height, width)
        h = [zeros] * self.num_layers
        c = [zeros] * self.num_layers
        m = zeros
        use_memory = self.cell_type == "st_lstm"
        for t in range(steps):
            x = frames[:, t]
            for layer, cell in enumerate(self.cells):
                if use_memory:
                    h[layer], c[layer], m = cell(x, h[layer], c[layer], m)
                else:
                    h[layer], c[layer] = cell(x, h[layer], c[layer])
                x = h[layer]
        top_state = m if use_memory else c[-1]
        return torch.cat([h[-1], top_state], dim=1)
