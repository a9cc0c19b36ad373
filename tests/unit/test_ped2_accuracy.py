"""Pieces of ``benchmarks.ped2_accuracy`` that a results file relies on."""

from __future__ import annotations

import pytest
import torch

from benchmarks import ped2_accuracy as accuracy
from tests.conftest import clip_datamodule


def test_dlan_ac_test_assignment_statistics_cover_every_test_location(synthetic_root):
    from anomalib_vadproto import DlanAc

    model = DlanAc(image_size=(32, 32), grayscale=True, width=4, som_iterations=50, seed=0)
    datamodule = clip_datamodule(synthetic_root)
    datamodule.setup()
    clips = next(iter(datamodule.test_dataloader())).image
    with torch.no_grad():
        model.model.clusterer.fit_batch(model.model(model.pre_processor(clips)).features)
    model.model.start_dlan_stage()
    stats = accuracy.test_assignment_statistics(model, datamodule)
    m = model.model.dlan.m
    assert stats["num_kept"] == m == len(stats["kept_cluster_mass"])
    assert stats["kept_mass"] == pytest.approx(sum(stats["kept_cluster_mass"]), abs=1e-5)
    assert 0.0 < stats["kept_mass"] <= 1.0 + 1e-9 and 0.0 <= stats["entropy_normalised"] <= 1.0
    test_clips = sum(batch.image.shape[0] for batch in datamodule.test_dataloader())
    assert stats["num_locations"] == test_clips * 4 * 4  # 32 / 8 = 4: a 4x4 feature map per clip
