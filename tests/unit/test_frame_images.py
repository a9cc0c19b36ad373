"""Which per-frame images the video visualizer writes: none by default, anomalous or all on request, capped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from anomalib_vadproto.visualization import VideoVisualizer
from tests.unit.test_visualization import FIELD_SIZE, _trainer, _video_batch


def _written(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def _four_clips(video: str = "/d/Test001"):
    """Frames 4-7 of one video: 5 is labelled anomalous only, 6 is predicted anomalous only."""
    batch = _video_batch(frames=(4, 5, 6, 7), videos=(video,) * 4)
    batch.gt_label = torch.tensor([False, True, False, False])
    batch.pred_label = torch.tensor([False, False, True, False])
    return batch


def test_default_writes_no_frame_images_and_says_how_to_get_them(tmp_path: Path, caplog) -> None:
    visualizer = VideoVisualizer(field_size=FIELD_SIZE)
    assert visualizer.frame_images == "none"
    batch = _four_clips()
    with caplog.at_level(logging.INFO, logger="anomalib_vadproto.visualization.video_visualizer"):
        visualizer.on_test_batch_end(_trainer(tmp_path), None, batch, batch, batch_idx=0)
        visualizer.on_predict_batch_end(_trainer(tmp_path), None, batch, batch, batch_idx=1)
    assert _written(tmp_path) == []
    hints = [r.getMessage() for r in caplog.records if "frame_images" in r.getMessage()]
    assert len(hints) == 1  # once per run, not per batch
    assert "--model.visualizer VideoVisualizer --model.visualizer.init_args.frame_images" in hints[0]


def test_anomalous_writes_predicted_and_labelled_frames_only(tmp_path: Path) -> None:
    batch = _four_clips()
    VideoVisualizer(field_size=FIELD_SIZE, frame_images="anomalous").on_test_batch_end(
        _trainer(tmp_path), None, batch, batch, batch_idx=0
    )
    assert _written(tmp_path / "images") == ["Test001/00005.png", "Test001/00006.png"]


def test_all_writes_every_frame(tmp_path: Path) -> None:
    batch = _four_clips()
    VideoVisualizer(field_size=FIELD_SIZE, frame_images="all").on_test_batch_end(
        _trainer(tmp_path), None, batch, batch, batch_idx=0
    )
    assert _written(tmp_path / "images") == [f"Test001/0000{frame}.png" for frame in (4, 5, 6, 7)]


def test_cap_per_video_and_run(tmp_path: Path) -> None:
    visualizer = VideoVisualizer(field_size=FIELD_SIZE, frame_images="all", max_frame_images_per_video=2)
    trainer = _trainer(tmp_path)
    for batch_idx, video in enumerate(("/d/Test001", "/d/Test002", "/d/Test001")):
        batch = _four_clips(video)
        visualizer.on_test_batch_end(trainer, None, batch, batch, batch_idx=batch_idx)
    assert _written(tmp_path / "images") == [
        "Test001/00004.png",
        "Test001/00005.png",
        "Test002/00004.png",
        "Test002/00005.png",
    ]
    # a new run starts a new count
    for path in (tmp_path / "images").rglob("*.png"):
        path.unlink()
    visualizer.on_predict_start(trainer, None)
    batch = _four_clips("/d/Test002")
    visualizer.on_predict_batch_end(trainer, None, batch, batch, batch_idx=0)
    assert _written(tmp_path / "images") == ["Test002/00004.png", "Test002/00005.png"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"frame_images": "some"}, "frame_images"), ({"max_frame_images_per_video": 0}, "max_frame_images_per_video")],
)
def test_invalid_options_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        VideoVisualizer(**kwargs)


def test_options_parse_from_the_command_line() -> None:
    """The same parsing anomalib's CLI applies to ``--model.visualizer.init_args.<name>``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VideoVisualizer, "visualizer")
    config = parser.parse_args(
        ["--visualizer.frame_images", "anomalous", "--visualizer.max_frame_images_per_video", "20"]
    )
    assert config.visualizer.frame_images == "anomalous"
    assert config.visualizer.max_frame_images_per_video == 20
    assert parser.get_defaults().visualizer.frame_images == "none"
    with pytest.raises(Exception, match="frame_images"):
        parser.parse_args(["--visualizer.frame_images", "every"])
