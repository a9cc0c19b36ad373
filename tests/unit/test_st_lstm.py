"""Tests of LGN-Net's spatiotemporal branch (ST-LSTM / ConvLSTM cells and the zigzag stack)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from anomalib_vadproto.models.lgn_net.st_lstm import ConvLSTMCell, SpatioTemporalStack, STLSTMCell

B, HID, SIZE = 2, 4, 8


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _zero_convs(cell: nn.Module) -> None:
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()


def _rand(*shape: int) -> Tensor:
    return torch.randn(*shape)


def _record(stack: SpatioTemporalStack) -> list[tuple[int, tuple, tuple]]:
    """Hook every cell; return a list filled with (layer, args, output) in call order."""
    calls: list[tuple[int, tuple, tuple]] = []
    for layer, cell in enumerate(stack.cells):

        def hook(_mod: nn.Module, args: tuple, out: tuple, layer: int = layer) -> None:
            calls.append((layer, args, out))

        cell.register_forward_hook(hook)
    return calls


# ----------------------------------------------------------------------------------------------- cells


def test_st_lstm_cell_parameter_count() -> None:
    cell = STLSTMCell(128, 128)
    assert sum(p.numel() for p in cell.parameters()) == 2_392_064
    assert all(conv.bias is None for conv in (cell.conv_x, cell.conv_h, cell.conv_m, cell.conv_o, cell.conv_last))
    assert cell.conv_last.kernel_size == (1, 1)


def test_st_lstm_cell_zero_convs_forget_bias() -> None:
    cell = STLSTMCell(3, HID)
    _zero_convs(cell)
    x = _rand(B, 3, SIZE, SIZE)
    h, c, m = (_rand(B, HID, SIZE, SIZE) for _ in range(3))
    h_new, c_new, m_new = cell(x, h, c, m)
    sig1 = 1.0 / (1.0 + math.exp(-1.0))
    # f = σ(0 + 1), i = 0.5, g = tanh(0) = 0  ->  C_new = σ(1) C; likewise for M; conv_last = 0 -> H_new = 0.
    torch.testing.assert_close(c_new, sig1 * c)
    torch.testing.assert_close(m_new, sig1 * m)
    torch.testing.assert_close(h_new, torch.zeros_like(h))


def test_st_lstm_cell_custom_forget_bias() -> None:
    cell = STLSTMCell(3, HID, forget_bias=-2.0)
    _zero_convs(cell)
    c, m = _rand(1, HID, 4, 4), _rand(1, HID, 4, 4)
    _, c_new, m_new = cell(_rand(1, 3, 4, 4), _rand(1, HID, 4, 4), c, m)
    sig = 1.0 / (1.0 + math.exp(2.0))
    torch.testing.assert_close(c_new, sig * c)
    torch.testing.assert_close(m_new, sig * m)


def test_st_lstm_cell_hand_chosen_weights() -> None:
    """1x1 kernels with identity blocks so each gate picks a known input; checks the split order too."""
    n = 2
    cell = STLSTMCell(n, n, kernel_size=1)
    _zero_convs(cell)
    eye = torch.eye(n)[:, :, None, None]
    with torch.no_grad():
        # conv_x blocks: i_x, f_x, g_x, i'_x, f'_x, g'_x, o_x
        cell.conv_x.weight[2 * n : 3 * n] = eye  # g_x = x
        cell.conv_x.weight[5 * n : 6 * n] = -eye  # g'_x = -x
        cell.conv_x.weight[6 * n : 7 * n] = eye  # o_x = x
        # conv_h blocks: i_h, f_h, g_h, o_h
        cell.conv_h.weight[0:n] = eye  # i_h = h
        # conv_m blocks: i_m, f_m, g_m
        cell.conv_m.weight[n : 2 * n] = eye  # f_m = m
        # conv_last over [C_new ; M_new]: C_new + M_new
        cell.conv_last.weight[:, :n] = eye
        cell.conv_last.weight[:, n:] = eye
    x, h, c, m = (_rand(1, n, 3, 3) for _ in range(4))
    h_new, c_new, m_new = cell(x, h, c, m)

    sig1 = torch.sigmoid(torch.tensor(1.0))
    c_exp = sig1 * c + torch.sigmoid(h) * torch.tanh(x)
    m_exp = torch.sigmoid(m + 1.0) * m + 0.5 * torch.tanh(-x)
    h_exp = torch.sigmoid(x) * torch.tanh(c_exp + m_exp)
    torch.testing.assert_close(c_new, c_exp)
    torch.testing.assert_close(m_new, m_exp)
    torch.testing.assert_close(h_new, h_exp)


def _reference_st_lstm(cell: STLSTMCell, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    n, k = cell.hidden, cell.conv_x.kernel_size[0]
    wx, wh, wm = cell.conv_x.weight, cell.conv_h.weight, cell.conv_m.weight

    def conv(inp: Tensor, w: Tensor, block: int) -> Tensor:
        return F.conv2d(inp, w[block * n : (block + 1) * n], padding=k // 2)

    fb = cell.forget_bias
    i = torch.sigmoid(conv(x, wx, 0) + conv(h, wh, 0))
    f = torch.sigmoid(conv(x, wx, 1) + conv(h, wh, 1) + fb)
    g = torch.tanh(conv(x, wx, 2) + conv(h, wh, 2))
    c_new = f * c + i * g
    ip = torch.sigmoid(conv(x, wx, 3) + conv(m, wm, 0))
    fp = torch.sigmoid(conv(x, wx, 4) + conv(m, wm, 1) + fb)
    gp = torch.tanh(conv(x, wx, 5) + conv(m, wm, 2))
    m_new = fp * m + ip * gp
    mem = torch.cat([c_new, m_new], dim=1)
    o = torch.sigmoid(conv(x, wx, 6) + conv(h, wh, 3) + F.conv2d(mem, cell.conv_o.weight, padding=k // 2))
    h_new = o * torch.tanh(F.conv2d(mem, cell.conv_last.weight))
    return h_new, c_new, m_new


def test_st_lstm_cell_matches_reference() -> None:
    cell = STLSTMCell(3, HID, kernel_size=3, forget_bias=0.7)
    x = _rand(B, 3, SIZE, SIZE)
    h, c, m = (_rand(B, HID, SIZE, SIZE) for _ in range(3))
    out = cell(x, h, c, m)
    ref = _reference_st_lstm(cell, x, h, c, m)
    for got, exp in zip(out, ref, strict=True):
        assert got.shape == (B, HID, SIZE, SIZE)
        torch.testing.assert_close(got, exp)


def test_conv_lstm_cell_matches_reference() -> None:
    cell = ConvLSTMCell(3, HID, kernel_size=3, forget_bias=1.0)
    assert cell.conv.bias is not None
    x, h, c = _rand(B, 3, SIZE, SIZE), _rand(B, HID, SIZE, SIZE), _rand(B, HID, SIZE, SIZE)
    h_new, c_new = cell(x, h, c)
    z = F.conv2d(torch.cat([x, h], 1), cell.conv.weight, cell.conv.bias, padding=1)
    i, f, g, o = (z[:, k * HID : (k + 1) * HID] for k in range(4))
    c_exp = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(g)
    torch.testing.assert_close(c_new, c_exp)
    torch.testing.assert_close(h_new, torch.sigmoid(o) * torch.tanh(c_exp))


def test_conv_lstm_cell_zero_conv_forget_bias() -> None:
    cell = ConvLSTMCell(3, HID)
    _zero_convs(cell)
    c = _rand(1, HID, 4, 4)
    h_new, c_new = cell(_rand(1, 3, 4, 4), _rand(1, HID, 4, 4), c)
    sig1 = 1.0 / (1.0 + math.exp(-1.0))
    torch.testing.assert_close(c_new, sig1 * c)
    torch.testing.assert_close(h_new, 0.5 * torch.tanh(sig1 * c))


# ----------------------------------------------------------------------------------------------- stack


@pytest.mark.parametrize("cell", ["st_lstm", "conv_lstm"])
def test_stack_output_shape(cell: str) -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=2, cell=cell)
    assert stack.output_channels == 2 * HID
    out = stack(_rand(B, 3, 3, SIZE, 6))
    assert out.shape == (B, 2 * HID, SIZE, 6)


def test_stack_cell_types() -> None:
    assert all(isinstance(c, STLSTMCell) for c in SpatioTemporalStack(3, HID, 3).cells)
    assert all(isinstance(c, ConvLSTMCell) for c in SpatioTemporalStack(3, HID, 3, cell="conv_lstm").cells)
    stack = SpatioTemporalStack(3, HID, num_layers=3)
    assert len(stack.cells) == 3
    assert stack.cells[0].in_channels == 3
    assert stack.cells[1].in_channels == HID and stack.cells[2].in_channels == HID


def test_zigzag_memory_flow_and_zero_init() -> None:
    layers, steps = 4, 3
    stack = SpatioTemporalStack(3, HID, num_layers=layers)
    calls = _record(stack)
    frames = _rand(B, steps, 3, SIZE, SIZE)
    stack(frames)
    assert [layer for layer, _, _ in calls] == list(range(layers)) * steps

    def at(t: int, layer: int) -> tuple[tuple, tuple]:  # 0-based step and layer
        _, args, out = calls[t * layers + layer]
        return args, out

    # States start at zero: layer 1 at step 1 gets zero h, c, m; every layer at step 1 gets zero h, c.
    args0, _ = at(0, 0)
    torch.testing.assert_close(args0[0], frames[:, 0])
    for state in args0[1:]:
        assert torch.count_nonzero(state) == 0
    for layer in range(layers):
        args, _ = at(0, layer)
        assert torch.count_nonzero(args[1]) == 0 and torch.count_nonzero(args[2]) == 0

    for t in range(steps):
        for layer in range(layers):
            args, _ = at(t, layer)
            # Input: x_t for layer 1, H_t^{l-1} otherwise.
            x_exp = frames[:, t] if layer == 0 else at(t, layer - 1)[1][0]
            assert torch.equal(args[0], x_exp)
            # H and C flow horizontally within a layer.
            if t > 0:
                prev_out = at(t - 1, layer)[1]
                assert torch.equal(args[1], prev_out[0]) and torch.equal(args[2], prev_out[1])
            # M flows upward within a step ...
            if layer > 0:
                assert torch.equal(args[3], at(t, layer - 1)[1][2])
        # ... and the top layer's M at step t is layer 1's M at step t + 1 (zigzag).
        if t > 0:
            top_m_prev = at(t - 1, layers - 1)[1][2]
            assert torch.count_nonzero(top_m_prev) > 0
            assert torch.equal(at(t, 0)[0][3], top_m_prev)


def test_zigzag_top_layer_memory_reaches_bottom_layer_via_gradient() -> None:
    """Check the zigzag flow against manual rollouts and via autograd.

    A manual zigzag rollout of the two cells reproduces the stack, while a per-layer (non-zigzag) memory does not.
    The memory that layer 1 reads at step 2 (the top layer's step-1 memory) carries gradient from the output.
    """
    stack = SpatioTemporalStack(3, HID, num_layers=2)
    frames = _rand(1, 2, 3, SIZE, SIZE)
    out = stack(frames)

    bottom, top = stack.cells
    zeros = frames.new_zeros(1, HID, SIZE, SIZE)
    # Manual zigzag rollout.
    h1, c1, m = bottom(frames[:, 0], zeros, zeros, zeros)
    h2, c2, m = top(h1, zeros, zeros, m)
    h1, c1, m = bottom(frames[:, 1], h1, c1, m)
    h2, c2, m = top(h1, h2, c2, m)
    torch.testing.assert_close(out, torch.cat([h2, m], 1))

    # A per-layer (non-zigzag) memory gives a different answer, so the check above is sensitive to the flow.
    h1, c1, m1 = bottom(frames[:, 0], zeros, zeros, zeros)
    h2, c2, m2 = top(h1, zeros, zeros, m1)
    h1, c1, m1 = bottom(frames[:, 1], h1, c1, m1)
    h2, c2, m2 = top(h1, h2, c2, m1)
    assert not torch.allclose(out, torch.cat([h2, m2], 1))

    # Gradient: the output depends on the top layer's conv_m weights, and the bottom layer's step-2 memory input
    # (which is the top layer's step-1 memory) carries gradient from the output.
    recorded: list[Tensor] = []

    def hook(_mod: nn.Module, args: tuple) -> None:
        recorded.append(args[3])

    handle = bottom.register_forward_pre_hook(hook)
    stack.zero_grad()
    out = stack(frames)
    handle.remove()
    m_in_step2 = recorded[1]
    assert m_in_step2.requires_grad  # produced by top.conv_m at step 1
    (g_m,) = torch.autograd.grad(out[:, HID:].sum(), m_in_step2, retain_graph=True)
    assert g_m.abs().sum() > 0
    out.sum().backward()
    assert top.conv_m.weight.grad is not None and top.conv_m.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("cell", "state_index"), [("st_lstm", 2), ("conv_lstm", 1)])
def test_stack_output_is_h_and_memory(cell: str, state_index: int) -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=2, cell=cell)
    calls = _record(stack)
    out = stack(_rand(B, 3, 3, SIZE, SIZE))
    layer, _, last = calls[-1]
    assert layer == 1
    torch.testing.assert_close(out[:, :HID], last[0])
    torch.testing.assert_close(out[:, HID:], last[state_index])
    # The other state differs, so the check distinguishes [H ; M] from [H ; C].
    if cell == "st_lstm":
        assert not torch.allclose(out[:, HID:], last[1])


@pytest.mark.parametrize("cell", ["st_lstm", "conv_lstm"])
def test_output_depends_on_first_frame(cell: str) -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=2, cell=cell)
    frames = _rand(1, 4, 3, SIZE, SIZE).requires_grad_(True)
    stack(frames).sum().backward()
    assert frames.grad is not None
    assert frames.grad[:, 0].abs().sum() > 0
    assert frames.grad[:, -1].abs().sum() > 0


def test_states_reset_each_forward_and_dtype_follows_input() -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=2).double()
    frames = _rand(1, 2, 3, SIZE, SIZE).double()
    first = stack(frames)
    assert first.dtype == torch.float64
    torch.testing.assert_close(stack(frames), first)


def test_single_layer_single_step_equals_cell() -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=1)
    frames = _rand(B, 1, 3, SIZE, SIZE)
    zeros = torch.zeros(B, HID, SIZE, SIZE)
    h, _, m = stack.cells[0](frames[:, 0], zeros, zeros, zeros)
    torch.testing.assert_close(stack(frames), torch.cat([h, m], 1))


def test_torch_export() -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=2).eval()
    frames = _rand(1, 3, 3, SIZE, SIZE)
    program = torch.export.export(stack, (frames,))
    torch.testing.assert_close(program.module()(frames), stack(frames))


# ----------------------------------------------------------------------------------------------- errors


def test_bad_cell_name() -> None:
    with pytest.raises(ValueError, match=r"cell must be one of \('st_lstm', 'conv_lstm'\), got 'gru'"):
        SpatioTemporalStack(3, HID, cell="gru")


@pytest.mark.parametrize(("kwargs", "match"), [({"num_layers": 0}, "num_layers"), ({"hidden": 0}, "hidden")])
def test_bad_sizes(kwargs: dict, match: str) -> None:
    params = {"in_channels": 3, "hidden": HID} | kwargs
    with pytest.raises(ValueError, match=match):
        SpatioTemporalStack(**params)


@pytest.mark.parametrize(
    ("shape", "received"),
    [
        ((B, 3, SIZE, SIZE), r"\(2, 3, 8, 8\)"),
        ((B, 2, 5, SIZE, SIZE), r"\(2, 2, 5, 8, 8\)"),
        ((B, 0, 3, 4, 4), r"\(2, 0, 3, 4, 4\)"),
    ],
)
def test_bad_input_shape(shape: tuple[int, ...], received: str) -> None:
    stack = SpatioTemporalStack(3, HID, num_layers=1)
    with pytest.raises(ValueError, match=r"\(B, T, in_channels=3, H, W\).*got " + received):
        stack(torch.zeros(shape))
