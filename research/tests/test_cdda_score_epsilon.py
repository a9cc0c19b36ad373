"""``research.cdda_score_epsilon`` applies eqs. 14-15 with each ε, and reads ``p`` off the model exactly."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_vadproto import Cdda
from research import cdda_score_epsilon as bench

# Two videos. A: p = 1, 2, 3 (the last anomalous); B: p = 1, 3, 8 (the middle one anomalous).
P = np.array([1.0, 2.0, 3.0, 1.0, 3.0, 8.0])
LABELS = np.array([0, 0, 1, 0, 1, 0])
VIDEOS = np.array([0, 0, 0, 1, 1, 1])


def initialised(model, seed: int = 1):  # noqa: ANN001, ANN201
    """Random unit-norm centres for every clustering of a ``CddaModel`` (as ``tests/unit/test_cdda.py``)."""
    g = torch.Generator().manual_seed(seed)
    model.initialise_centres(
        {
            name: F.normalize(torch.rand(c.num_clusters, c.feature_dim, generator=g), dim=1)
            for name, c in model.clusters.items()
        }
    )
    return model


def test_known_answer_with_and_without_eps() -> None:
    # ε = 0: anomaly (1 − min-max of 1/p) is A: 0, 3/4, 1 and B: 0, 0.7619, 1. Of the 8 positive-negative
    # pairs, A's positive (1) beats three and ties one; B's (0.7619) beats A's 3/4 too: 6.5 / 8.
    micro, _ = bench.protocol_with_eps(P, LABELS, VIDEOS, 0.0)
    assert micro == 81.25
    # ε = 1 caps 1/(p + ε) at 1/2: A's middle frame becomes 2/3, B's positive 0.6429, below it: 5.5 / 8.
    micro, _ = bench.protocol_with_eps(P, LABELS, VIDEOS, 1.0)
    assert micro == 68.75
    # without ε the scale of p does not matter; with an ε at the scale of p it does
    assert bench.protocol_with_eps(P * 1e-9, LABELS, VIDEOS, 0.0)[0] == 81.25
    assert bench.protocol_with_eps(P * 1e-9, LABELS, VIDEOS, 1e-9)[0] == 68.75


def test_collect_reads_both_forms_exactly_and_restores_eps() -> None:
    torch.manual_seed(0)
    module = Cdda(image_size=(32, 32), grayscale=True, width=4, num_clusters=4).eval()
    initialised(module.model)
    clips = torch.rand(3, 5, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    batch = SimpleNamespace(
        image=clips,
        video_path=["x/Test002", "x/Test001", "x/Test002"],
        gt_label=torch.tensor([0, 1, 0]),
    )
    loader = SimpleNamespace(test_dataloader=lambda: [batch])
    diagnostics = getattr(module.model, "diagnostic_cues", None)
    data = bench.collect(module, loader)
    assert module.model.eps == 1e-30 and getattr(module.model, "diagnostic_cues", None) == diagnostics
    if isinstance(diagnostics, bool):  # an option: the reference below reads the other form's cue too
        module.model.diagnostic_cues = True
    with torch.no_grad():
        _, cues = module.model.score(module.pre_processor(clips))
    product = torch.stack([cues[name] for name in module.model.score_factors]).prod(dim=0).double()
    np.testing.assert_allclose(data["product"], product.numpy(), rtol=1e-5)
    np.testing.assert_allclose(data["pixelwise"], 1.0 / cues["regularity_pixelwise"].double().numpy(), rtol=1e-5)
    assert list(data["video_names"]) == ["Test001", "Test002"]
    assert data["video_index"].tolist() == [1, 0, 1] and data["labels"].tolist() == [0, 1, 0]
    with pytest.warns(UserWarning, match="macro"):  # no video here has both kinds of frame
        summary = bench.summarise(data, [0.0, 1e-30])
    assert summary["product"]["p_quantiles"]["q0"] == pytest.approx(product.min().item(), rel=1e-3)
    assert set(summary["pixelwise"]["protocol_auc"]) == {"0", "1e-30"}


def test_collect_refuses_a_checkpoint_without_centres() -> None:
    module = Cdda(image_size=(32, 32), grayscale=True, width=4, num_clusters=4).eval()
    with pytest.raises(SystemExit, match="before the centres existed"):
        bench.collect(module, SimpleNamespace(test_dataloader=list))
