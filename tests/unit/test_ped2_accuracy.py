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


def test_an_accuracy_run_of_dlan_ac_without_its_dlan_branch_is_recorded(tmp_path, monkeypatch) -> None:
    """``--set use_dlan=false`` (the paper's autoencoder baseline) has no clusters: no assignment statistics."""
    import json

    from anomalib_vadproto.data import make_synthetic_ucsd
    from benchmarks import common

    make_synthetic_ucsd(tmp_path / "data", category="UCSDped2", n_train=2, n_test=2, n_frames=10, height=32, width=48)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    tiny = ["use_dlan=false", "image_size=[32,32]", "width=4", "som_iterations=20", "ac_epochs=1"]
    path = accuracy.main(
        ["--model", "dlan_ac", "--epochs", "2", "--data-root", str(tmp_path / "data"), "--work-dir",
         str(tmp_path / "runs"), "--tag", "aeonly", *[a for s in tiny for a in ("--set", s)]]
    )  # fmt: skip
    result = json.loads(path.read_text())
    assert result["model_overrides"]["use_dlan"] is False and result["use_dlan"] is False
    assert "test_assignment" not in result and 0.0 <= result["protocol_auc_micro"] <= 100.0
