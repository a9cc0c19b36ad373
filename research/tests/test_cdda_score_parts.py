"""``research.cdda_score_parts`` splits CDDA's AUC gap with known answers, and reads the score's parts exactly."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from anomalib_vadproto import Cdda
from research import cdda_score_parts as parts
from research.tests.test_cdda_score_epsilon import LABELS, VIDEOS, P, initialised


def test_known_answer_split() -> None:
    # Distances of 1, so p = E_rec; the motion autoencoder's own error separates the frames perfectly.
    ones = np.ones_like(P)
    data = {
        "labels": LABELS, "video_index": VIDEOS, "p": P, "reconstruction": P,
        "motion_distance": ones, "appearance_distance": ones,
        "motion_error": np.array([1.0, 1.0, 2.0, 1.0, 2.0, 1.0]), "appearance_error": P,
    }  # fmt: skip
    summary = parts.summarise(data)
    aucs = summary["protocol_auc"]
    # 1 − min-max of 1/p: 6.5 of 8 pairs (research.cdda_score_epsilon's known answer).
    assert aucs["score"]["reciprocal"]["micro"] == 81.25
    # min-max of p: A 0, .5, 1 and B 0, .2857, 1; A's positive beats 3 and ties 1, B's beats 2: 5.5 / 8.
    assert aucs["score"]["direct"]["micro"] == 68.75
    assert aucs["score_true_last_frame"]["reciprocal"]["micro"] == 100.0
    assert summary["micro_auc_split"] == {"normalisation": -12.5, "cluster_distances": 0.0, "spatial_residual": 18.75}


def test_non_positive_parts_are_refused() -> None:
    data = {name: np.ones(6) for name in ("p", *parts.COLLECTED)}
    data |= {"labels": LABELS, "video_index": VIDEOS, "motion_error": np.zeros(6)}
    with pytest.raises(SystemExit, match="score_true_last_frame"):
        parts.summarise(data)


def test_collect_reads_the_parts_of_p_exactly_and_restores_the_model() -> None:
    torch.manual_seed(0)
    module = Cdda(image_size=(32, 32), grayscale=True, width=4, num_clusters=4).eval()
    net = initialised(module.model)
    clips = torch.rand(3, 5, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    batch = SimpleNamespace(image=clips, video_path=["a/V1", "a/V1", "a/V2"], gt_label=torch.tensor([0, 1, 0]))
    data = parts.collect(module, SimpleNamespace(test_dataloader=lambda: [batch]))
    assert net.eps == 1e-30 and net.diagnostic_cues is False  # restored
    np.testing.assert_allclose(
        data["p"], data["reconstruction"] * data["motion_distance"] * data["appearance_distance"], rtol=1e-5
    )
    assert list(data["video_names"]) == ["V1", "V2"] and list(data["video_index"]) == [0, 0, 1]
