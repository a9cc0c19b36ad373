"""APN groundwork: the Attention Prototype Unit against a plain reading of MPN's prototype unit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_vadproto.models.apn.prototype_unit import AttentionPrototypeUnit


def test_apu_matches_a_loop_reference():
    torch.manual_seed(0)
    unit = AttentionPrototypeUnit(channels=6, num_prototypes=3).double()
    features = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    out = unit(features)
    psi = unit.heads.weight  # (M, C)
    for b in range(2):
        x = [F.normalize(features[b, :, i, j], dim=0) for i in range(3) for j in range(4)]
        logits = torch.stack([psi @ v for v in x])  # (N, M)
        a = torch.softmax(logits, dim=0)  # over positions, per head
        protos = [F.normalize(sum(a[n, m] * x[n] for n in range(12)), dim=0) for m in range(3)]
        torch.testing.assert_close(out.prototypes[b], torch.stack(protos))
        for n in range(12):
            beta = torch.softmax(torch.stack([x[n] @ p for p in protos]), dim=0)
            y = F.normalize(sum(beta[m] * protos[m] for m in range(3)), dim=0) + x[n]
            torch.testing.assert_close(out.output[b, :, n // 4, n % 4], y)
    assert unit.heads.weight.numel() == 18  # the APU's only parameters (1,280 at C=128, M=10)


def test_apu_parameters_and_gradients():
    unit = AttentionPrototypeUnit()
    assert sum(p.numel() for p in unit.parameters()) == 1_280
    features = torch.randn(1, 128, 4, 4, requires_grad=True)
    out = unit(features)
    out.output.sum().backward()
    assert unit.heads.weight.grad.abs().sum() > 0 and features.grad.abs().sum() > 0  # nothing detached


def test_apu_rejects_bad_input():
    with pytest.raises(ValueError, match="expected features"):
        AttentionPrototypeUnit(channels=8)(torch.randn(1, 4, 3, 3))
    with pytest.raises(ValueError, match="positive"):
        AttentionPrototypeUnit(channels=0)
