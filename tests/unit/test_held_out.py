"""``benchmarks.held_out``: a candidate trained with held-out videos, its criteria recorded, nothing tested."""

from __future__ import annotations

import json

import pytest

from benchmarks import common
from benchmarks import held_out as bench


@pytest.mark.slow
def test_a_tiny_cdda_candidate_records_held_out_criteria(tmp_path, monkeypatch) -> None:
    from anomalib_vadproto.data import make_synthetic_ucsd

    make_synthetic_ucsd(tmp_path / "data", category="UCSDped2", n_train=3, n_test=1, n_frames=10, height=32, width=48)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    tiny = ["image_size=[32,32]", "width=4", "num_clusters=4", "kmeans_restarts=1", "kmeans_samples=64", "ae_epochs=1"]
    path = bench.main(
        ["--model", "cdda", "--epochs", "2", "--val-videos", "1", "--data-root", str(tmp_path / "data"),
         "--work-dir", str(tmp_path / "runs"), "--tag", "tiny", *[a for s in tiny for a in ("--set", s)]]
    )  # fmt: skip
    result = json.loads(path.read_text())
    assert path.name.startswith("held_out_cdda_lite_ped2_tiny_")
    assert result["held_out_videos"] == ["Train002"] and result["train_videos"] == 2
    criteria = result["held_out_criteria"]
    # The diagnostic cues are on (evaluation only), so each autoencoder's error on the held-out clips is there.
    assert {"val_regularity", "val_motion_error", "val_appearance_error"} <= set(criteria)
    assert criteria["spatial_to_motion_error"] == pytest.approx(
        criteria["val_appearance_error"] / criteria["val_motion_error"], rel=1e-3
    )
    live = result["held_out_live_code_channels"]
    assert live["channels"] == 32 and 0 <= live["alive"] <= 32  # 8 × width
    assert result["evaluation_options"] == {"diagnostic_cues": True}
    assert not any(key.startswith(("protocol", "pooled", "per_video")) for key in result)  # never tested
    assert result["command"].startswith("python -m benchmarks.held_out --model cdda")
