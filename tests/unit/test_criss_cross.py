"""Known-answer tests of APN's criss-cross attention."""

import math

import pytest
import torch

from anomalib_vadproto.models.apn.criss_cross import CrissCrossAttention, RecurrentCrissCross


def conv1x1(conv, x, b, i, j):
    return conv.weight[:, :, 0, 0] @ x[b, :, i, j] + conv.bias


def brute_force(module, x):
    """Loop over every pixel: column without u, then the row; one softmax; weighted sum of V."""
    batch, _, height, width = x.shape
    out = torch.empty_like(x)
    weights = torch.empty(batch, height, width, height + width, dtype=x.dtype)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                q = conv1x1(module.query, x, b, i, j)
                positions = [(k, j) for k in range(height)] + [(i, m) for m in range(width)]
                energies = []
                for n, (pi, pj) in enumerate(positions):
                    if n < height and pi == i:
                        energies.append(-math.inf)
                    else:
                        energies.append(float(q @ conv1x1(module.key, x, b, pi, pj)))
                peak = max(energies)
                exps = [math.exp(e - peak) for e in energies]
                total = sum(exps)
                attn = [e / total for e in exps]
                acc = torch.zeros(x.shape[1], dtype=x.dtype)
                for a, (pi, pj) in zip(attn, positions, strict=True):
                    acc = acc + a * conv1x1(module.value, x, b, pi, pj)
                out[b, :, i, j] = module.gamma * acc + x[b, :, i, j]
                weights[b, i, j] = torch.tensor(attn, dtype=x.dtype)
    return out, weights


@pytest.mark.parametrize("reduction", [8, 4])
def test_matches_brute_force_reference(reduction):
    torch.manual_seed(0)
    module = CrissCrossAttention(8, reduction=reduction).double()
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        expected, expected_weights = brute_force(module, x)
        got = module(x)
        got_weights = module.attention(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got_weights, expected_weights, atol=1e-5, rtol=0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_float32_matches_reference():
    torch.manual_seed(1)
    module = CrissCrossAttention(8, reduction=4)
    with torch.no_grad():
        module.gamma.fill_(-1.3)
        x = torch.randn(1, 8, 4, 3)
        expected, _ = brute_force(module, x)
        torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=0)


def test_identity_at_init_and_recurrent_doubles():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 7)
    cca = CrissCrossAttention(16)
    assert cca.gamma.item() == 0.0
    assert torch.equal(cca(x), x)
    rcca = RecurrentCrissCross(16, recurrence=2)
    assert torch.equal(rcca(x), 2 * x)


def test_recurrent_shares_one_block():
    torch.manual_seed(0)
    rcca = RecurrentCrissCross(16, recurrence=3)
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.5)
    x = torch.randn(1, 16, 4, 5)
    f = x
    for _ in range(3):
        f = rcca.cca(f)
    torch.testing.assert_close(rcca(x), x + f)
    assert sum(p.numel() for p in rcca.parameters()) == sum(p.numel() for p in rcca.cca.parameters())


def input_gradient(recurrence, pixel):
    torch.manual_seed(0)
    rcca = RecurrentCrissCross(8, recurrence=recurrence, reduction=4).double()
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.9)
    x = torch.randn(1, 8, 5, 7, dtype=torch.float64, requires_grad=True)
    rcca(x)[0, :, pixel[0], pixel[1]].sum().backward()
    return x.grad.abs().sum(dim=(0, 1))  # (H, W)


def test_two_hops_reach_every_pixel():
    grad = input_gradient(2, (1, 2))
    assert (grad > 0).all()


def test_one_hop_stays_on_row_and_column():
    grad = input_gradient(1, (1, 2))
    assert grad[4, 6] == 0  # far pixel: other row, other column
    off_cross = torch.ones_like(grad, dtype=torch.bool)
    off_cross[1, :] = False
    off_cross[:, 2] = False
    assert (grad[off_cross] == 0).all()
    assert (grad[~off_cross] > 0).all()


def test_reference_parameter_count():
    total = sum(sum(p.numel() for p in CrissCrossAttention(c, reduction=8).parameters()) for c in (64, 128, 256))
    assert total == 108_083


def test_minimum_one_query_channel():
    cca = CrissCrossAttention(4, reduction=8)
    assert cca.query.out_channels == 1
    assert cca.key.out_channels == 1


def test_attention_rows_sum_to_one_and_self_column_is_zero():
    torch.manual_seed(0)
    cca = CrissCrossAttention(8, reduction=4)
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        attn = cca.attention(x)
    assert attn.shape == (2, 5, 7, 5 + 7)
    assert torch.isfinite(attn).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 5, 7))
    rows = torch.arange(5)
    self_column = attn[:, rows, :, rows]  # (H, B, W): entry [i] of pixel (i, j)
    assert (self_column == 0).all()
    assert (attn[..., 5:] > 0).all()


def test_single_row_image_is_finite():
    cca = CrissCrossAttention(8, reduction=4)
    with torch.no_grad():
        cca.gamma.fill_(1.0)
        out = cca(torch.randn(1, 8, 1, 6))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(8, 5, 7), (1, 1, 8, 5, 7), (1, 4, 5, 7)])
def test_bad_input_raises(shape):
    cca = CrissCrossAttention(8)
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 8, H, W\), got"):
        cca(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"got \(" + ", ".join(map(str, shape))):
        cca.attention(torch.zeros(shape))
    with pytest.raises(ValueError, match="expected input"):
        RecurrentCrissCross(8)(torch.zeros(shape))


def test_bad_recurrence_raises():
    with pytest.raises(ValueError, match="recurrence must be >= 1"):
        RecurrentCrissCross(8, recurrence=0)


def test_onnx_dynamo_export_is_finite(tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    rcca = RecurrentCrissCross(8, recurrence=2, reduction=4).eval()
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.5)
    x = torch.randn(1, 8, 5, 7)
    path = tmp_path / "rcca.onnx"
    torch.onnx.export(rcca, (x,), str(path), dynamo=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    reference = pytest.importorskip("onnx.reference")
    (out,) = reference.ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
    out = torch.from_numpy(out)
    assert torch.isfinite(out).all()
    with torch.no_grad():
        torch.testing.assert_close(out, rcca(x), atol=1e-5, rtol=1e-5)
