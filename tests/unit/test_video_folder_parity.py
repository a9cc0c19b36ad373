"""``benchmarks.video_folder_parity`` on a tiny stand-in of the compact Ped2 copy: both datamodules, one AUC."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from benchmarks import common
from benchmarks import video_folder_parity as parity

pytestmark = pytest.mark.slow


def write_lossless_grey_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """H.264 lossless (qp 0), full-range yuvj420p, the grey frame as the Y plane: the compact copy's form."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape
        stream.pix_fmt, stream.options = "yuvj420p", {"qp": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> tuple[Path, Path]:
    """``(compact copy, anomalib layout)`` of the same synthetic frames, as ``ensure_ped2`` pairs them."""
    from anomalib_vadproto.data import make_synthetic_ucsd

    base = tmp_path_factory.mktemp("ped2_stand_in")
    layout = make_synthetic_ucsd(
        base / "ucsd", category="UCSDped2", n_train=2, n_test=2, n_frames=16, height=48, width=64
    ).parent
    compact = base / "compact"
    for split in ("Train", "Test"):
        for video in sorted(p for p in (layout / "UCSDped2" / split).iterdir() if not p.name.endswith("_gt")):
            frames = [np.asarray(Image.open(p).convert("L")) for p in sorted(video.glob("*.tif"))]
            write_lossless_grey_mp4(compact / "videos" / f"{video.name}.mp4", frames)
            if split == "Test":
                masks = sorted(video.with_name(f"{video.name}_gt").glob("*.bmp"))
                labels = np.array([np.asarray(Image.open(p)).any() for p in masks], dtype=np.uint8)
                (compact / "frame_labels").mkdir(exist_ok=True)
                np.save(compact / "frame_labels" / f"{video.name}.npy", labels)
    return compact, layout


def test_one_set_of_weights_gives_one_auc_through_both_datamodules(stand_in, tmp_path, monkeypatch) -> None:
    compact, layout = stand_in
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    path = parity.main([
        "--compact", str(compact), "--ped2-root", str(layout), "--work-dir", str(tmp_path / "work"),
        "--epochs", "1", "--train-videos", "2", "--set", "image_size=[32,32]", "--set", "width=4",
    ])  # fmt: skip
    result = json.loads(path.read_text())
    assert path.parent == tmp_path / "results" and path.name.startswith("video_folder_parity_mnad_lite_")
    assert result["equal"] is True and result["test_videos"] == ["Test001", "Test002"]
    assert result["held_out_for_validation"] == "Train002"  # thresholds fitted without the test set
    assert result["weights"] == "trained here: 1 epoch(s) on ['Train001']"
    assert result["frames_compared"] == 2 * (16 - 4)  # 5-frame clips: every frame from the fifth on
    assert result["max_abs_fused_score_difference"] == 0.0  # the same frames, so the same scores
    runs = result["runs"]
    assert runs["LocalUCSDped"]["protocol_AUC_micro"] == runs["VideoFolder"]["protocol_AUC_micro"]
    assert runs["LocalUCSDped"]["image_AUROC"] == runs["VideoFolder"]["image_AUROC"]
    # the video folder is links to the compact copy, not copies
    assert (tmp_path / "work" / "ped2_folder" / "test" / "Test001.mp4").is_symlink()


def test_unknown_test_videos_are_refused(stand_in, tmp_path) -> None:
    compact, layout = stand_in
    with pytest.raises(SystemExit, match="Unknown test videos"):
        parity.main(["--compact", str(compact), "--ped2-root", str(layout), "--test-videos", "Test099",
                     "--work-dir", str(tmp_path)])  # fmt: skip
