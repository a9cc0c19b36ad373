"""Frame sources and the video writer: folder vs lossless video equality, error messages."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from anomalib_vadproto.deploy import FrameFolderSource, VideoReadError, VideoSource, VideoWriter, open_source
from tests.conftest import PED2_COMPACT


def write_lossless(path: Path, frames: np.ndarray, grey: bool) -> None:
    """Write frames losslessly with PyAV: grey as H.264 qp 0 full-range yuvj420p (like the Ped2 copy), RGB as FFV1."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if grey else "ffv1", rate=10)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuvj420p" if grey else "bgr0"
        if grey:
            stream.options = {"qp": "0"}
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="gray" if grey else "rgb24")
            frame = frame.reformat(format="yuvj420p") if grey else frame
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture
def moving_frames() -> np.ndarray:
    """Eight 32x48 RGB frames with texture and motion."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    return np.stack([base[:, k : k + 48] for k in range(8)])


@pytest.mark.parametrize("grey", [True, False], ids=["grey-h264-qp0", "rgb-ffv1"])
def test_frame_folder_and_lossless_video_give_the_same_frames(tmp_path, moving_frames, grey):
    frames = moving_frames[..., 0] if grey else moving_frames
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, image in enumerate(frames, start=1):  # UCSD-style names, .tif as the materialised Ped2
        Image.fromarray(image).save(folder / f"{index:03d}.tif")
    video = tmp_path / ("video.mp4" if grey else "video.mkv")
    write_lossless(video, frames, grey)

    from_folder = list(open_source(folder, fps=10))
    from_video = list(open_source(video))
    assert isinstance(open_source(folder), FrameFolderSource) and isinstance(open_source(video), VideoSource)
    assert len(from_folder) == len(from_video) == 8
    expected = np.repeat(frames[..., None], 3, axis=-1) if grey else frames
    for a, b, reference in zip(from_folder, from_video, expected, strict=True):
        assert a.image.dtype == b.image.dtype == np.uint8 and a.image.shape == (32, 48, 3)
        np.testing.assert_array_equal(a.image, reference)
        np.testing.assert_array_equal(b.image, reference)
    assert [f.time for f in from_video] == pytest.approx([k / 10 for k in range(8)])
    assert [f.time for f in from_folder] == pytest.approx([k / 10 for k in range(8)])
    with open_source(video) as source:
        assert source.fps == 10 and source.num_frames == (8 if grey else None)  # Matroska stores no frame count


def test_frame_folder_sorts_numbers_naturally_and_skips_other_files(tmp_path):
    for number in (10, 2, 1):
        Image.fromarray(np.full((4, 4), number, dtype=np.uint8)).save(tmp_path / f"{number}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_source(tmp_path)
    assert [f.image[0, 0, 0] for f in source] == [1, 2, 10]
    assert source.num_frames == 3 and source.fps is None and not source.live


def test_live_sources_are_read_lazily(tmp_path, moving_frames):
    source = open_source("testsrc=size=64x48:rate=10", input_format="lavfi")  # endless generated video
    assert source.live and source.num_frames is None and source.fps == 10
    first = [frame for _, frame in zip(range(3), source, strict=False)]
    assert [f.index for f in first] == [0, 1, 2] and first[2].image.shape == (48, 64, 3)
    write_lossless(tmp_path / "file.mkv", moving_frames, grey=False)
    assert not open_source(tmp_path / "file.mkv").live  # files can be read twice (offline scores, overlays)


def test_missing_inputs_raise_file_not_found_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        open_source(tmp_path / "nothing.mp4")
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        open_source(tmp_path)


def test_corrupt_or_streamless_files_raise_a_clear_error(tmp_path):
    corrupt = tmp_path / "random.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match=r"Cannot read .*random.mp4 as video: Invalid data"):
        open_source(corrupt)
    empty = tmp_path / "empty.avi"
    empty.touch()
    with pytest.raises(VideoReadError, match="empty.avi"):
        open_source(empty)
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoReadError, match="has no video stream"):
        open_source(audio)
    assert issubclass(VideoReadError, ValueError)


def test_unreadable_frame_in_a_folder_is_reported(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "001.png")
    (tmp_path / "002.png").write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match="002.png"):
        list(open_source(tmp_path))


def test_video_writer_round_trip_pads_odd_sizes(tmp_path):
    y, x = np.mgrid[0:31, 0:47]
    smooth = np.stack([np.stack([4 * x + k, 6 * y, 128 + 0 * x], axis=-1) for k in range(8)]).astype(np.uint8)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, fps=5) as writer:
        for image in smooth:
            writer.write(image)
    source = open_source(path)
    decoded = [f.image for f in source]
    assert len(decoded) == 8 and decoded[0].shape == (32, 48, 3)  # padded to even sizes for 4:2:0
    assert source.fps == 5
    assert np.abs(decoded[3][:31, :47].astype(int) - smooth[3]).mean() < 3  # lossy, but the same picture
    with VideoWriter(tmp_path / "bad.mp4") as writer:
        writer.write(smooth[0])
        with pytest.raises(ValueError, match="has size"):
            writer.write(smooth[0, :16])


@pytest.mark.real_data
def test_ped2_mp4_rgb_frames_are_the_grey_plane():
    video = PED2_COMPACT / "videos" / "Test004.mp4"
    if not video.is_file():
        pytest.skip("the shared UCSD Ped2 copy is not beside the checkout")
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            rgb, grey = frame.to_ndarray(format="rgb24"), frame.to_ndarray(format="gray")
            assert np.array_equal(rgb, np.repeat(grey[..., None], 3, axis=-1)), index
            if index == 20:
                break
    assert [f.image for _, f in zip(range(3), open_source(video), strict=False)][2].shape == (240, 360, 3)
