"""Deployment reliability: output folders, partial results, files cut short, input checks, unreadable models.

The model is a hand-built OpenVINO IR (a few reductions, no training) with the plugin's metadata, so the
``score`` command runs end to end in a second or two.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_vadproto.deploy import (
    METADATA_KEY,
    Frame,
    ModelMetadata,
    OutputExistsError,
    VideoReadError,
    VideoSource,
    load_clip_model,
    open_source,
    score_source,
    write_outputs,
)
from anomalib_vadproto.deploy import score as score_module
from anomalib_vadproto.deploy.score import EXIT_SOURCE_FAILED, main
from anomalib_vadproto.deploy.writers import default_output_dir

SIZE = (16, 16)
CLIP = 3
META = ModelMetadata(
    model="Tiny", clip_length=CLIP, image_size=SIZE, input_size=SIZE, cue_weights={"psnr": 1.0}, normal_cues=("psnr",)
)


def build_tiny_ir(path: Path) -> Path:
    """Write an IR scoring (N, 3, 3, 16, 16) clips: pred_score = mean, cue_psnr = PSNR of the clip against 0."""
    import openvino as ov
    import openvino.opset13 as ops

    clip = ops.parameter([-1, CLIP, 3, *SIZE], np.float32, name="input")
    axes = np.array([1, 2, 3, 4])
    mean = ops.reduce_mean(clip, axes, keep_dims=False)
    mse = ops.maximum(ops.reduce_mean(ops.multiply(clip, clip), axes, keep_dims=False), np.float32(1e-10))
    psnr = ops.multiply(ops.log(ops.divide(np.float32(1.0), mse)), np.float32(10 / np.log(10)))  # 100 dB at mse 0
    outputs = {
        "pred_score": mean,
        "pred_label": ops.convert(ops.greater(mean, np.float32(0.5)), "boolean"),
        "anomaly_map": ops.unsqueeze(ops.reduce_mean(clip, np.array([1, 2]), keep_dims=False), np.array([1])),
        "cue_psnr": psnr,
    }
    for name, node in outputs.items():
        node.output(0).get_tensor().set_names({name})
    model = ov.Model(list(outputs.values()), [clip], "tiny")
    model.set_rt_info(META.to_json(), ["framework", METADATA_KEY])
    ov.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_xml(tmp_path_factory) -> Path:
    return build_tiny_ir(tmp_path_factory.mktemp("ir") / "model.xml")


def random_frames(count: int, size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def write_mp4(path: Path, frames: np.ndarray, faststart: bool = True, fps: int = 10) -> Path:
    """H.264 mp4; ``faststart`` puts the index (and so the frame count) before the frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for index, image in enumerate(frames, start=1):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return folder


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("anomalib-vadproto")]
    assert len(err) == 1 and err[0].startswith("anomalib-vadproto score: error: "), err
    return err[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# 1. output folders: never mixed or silently replaced, unique defaults, atomic writes


def test_a_folder_with_scores_needs_overwrite_which_removes_stale_outputs(tiny_xml, tmp_path, capsys):
    video = write_mp4(tmp_path / "a.mp4", random_frames(10))
    out = tmp_path / "out"
    assert main([str(tiny_xml), str(video), "-o", str(out), "--overlay", "--no-progress"]) == 0
    first = snapshot(out)
    assert set(first) == {"scores.csv", "scores.json", "score_curve.png", "overlay.mp4"}
    capsys.readouterr()

    other = write_mp4(tmp_path / "b.mp4", random_frames(8, seed=1))
    assert main([str(tiny_xml), str(other), "-o", str(out), "--no-progress"]) == 1
    line = one_error_line(capsys)
    assert f"{out} already holds score outputs" in line and "--overwrite" in line
    assert snapshot(out) == first  # nothing replaced

    assert main([str(tiny_xml), str(other), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["score_curve.png", "scores.csv", "scores.json"]  # old overlay gone
    assert json.loads((out / "scores.json").read_text())["frames"] == 8
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        write_outputs(score_source(tiny_xml, other), out)


def test_a_failing_run_leaves_the_earlier_outputs_and_no_partial_file(tiny_xml, tmp_path, capsys):
    folder = write_folder(tmp_path / "clip", random_frames(8))
    out = tmp_path / "out"
    assert main([str(tiny_xml), str(folder), "-o", str(out), "--overlay", "--no-progress"]) == 0
    before = snapshot(out)
    # a frame of another size after 5 frames: the overlay (written on the fly) is under way when the run fails
    Image.fromarray(random_frames(1, size=(8, 8))[0]).save(folder / "006.png")
    args = ["-o", str(out), "--overlay", "--overwrite", "--normalization", "running", "--warmup", "1", "--no-progress"]
    assert main([str(tiny_xml), str(folder), *args]) == 1
    assert "frame size changed" in one_error_line(capsys)
    assert snapshot(out) == before  # same names, same bytes: no partial file, no replaced one


def test_outputs_are_renamed_into_place_only_when_all_are_written(tiny_xml, tmp_path, monkeypatch):
    result = score_source(tiny_xml, write_mp4(tmp_path / "a.mp4", random_frames(6)))
    out = tmp_path / "out"
    write_outputs(result, out)
    before = snapshot(out)

    def broken_plot(*args, **kwargs):
        Path(kwargs["path"]).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr("anomalib_vadproto.visualization.curves.plot_score_curve", broken_plot)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, out, overwrite=True)
    assert snapshot(out) == before


def test_the_default_output_folder_is_unique_per_input_and_documented(tiny_xml, tmp_path, monkeypatch, capsys):
    one = write_mp4(tmp_path / "cam1" / "clip.mp4", random_frames(6))
    two = write_mp4(tmp_path / "cam2" / "clip.mp4", random_frames(6, seed=1))
    assert default_output_dir(one) != default_output_dir(two)
    assert default_output_dir(one).name.startswith("clip-") and len(default_output_dir(one).name) == len("clip-") + 8
    assert default_output_dir(one) == default_output_dir(tmp_path / "cam1" / ".." / "cam1" / "clip.mp4")
    assert default_output_dir("rtsp://cam/a").name != default_output_dir("rtsp://cam/b").name
    monkeypatch.chdir(tmp_path)
    assert main([str(tiny_xml), str(one), "--no-progress"]) == 0
    assert main([str(tiny_xml), str(two), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == sorted(
        (default_output_dir(one).name, default_output_dir(two).name)
    )
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "scores/<name>-<hash>" in help_text and "SHA-1" in help_text and "--overwrite" in help_text


# 2. a source that breaks off: the frames read so far are scored and written


class BreakingSource(VideoSource):
    """A live source that yields ``good`` frames at 10 fps, then fails like a dropped stream."""

    def __init__(self, good: int) -> None:  # no FFmpeg: only what score_source reads
        self.good, self.live, self.fps, self.num_frames, self.path = good, True, 10, None, None
        self.name = self.source = "http://127.0.0.1/stream"

    def __iter__(self) -> Iterator[Frame]:
        for index, image in enumerate(random_frames(self.good)):
            yield Frame(index, image, index / 10)
        msg = f"Cannot decode {self.name} after {self.good} frame(s): Connection reset by peer."
        raise VideoReadError(msg)


def test_a_live_source_that_breaks_keeps_the_frames_scored(tiny_xml, tmp_path, caplog):
    overlay = tmp_path / "overlay.mp4"
    with caplog.at_level(logging.WARNING):
        result = score_source(tiny_xml, BreakingSource(7), normalization="running", warmup=1, overlay=overlay)
    assert len(result.score) == 7 and result.scored.sum() == 7 - (CLIP - 1)
    assert result.failure is not None and result.failure.frames == 7 and result.failure.time == pytest.approx(0.6)
    assert "Connection reset by peer" in result.failure.error
    assert "after 7 frame(s) (last read: frame 6 at 0.600 s)" in caplog.text
    assert len(list(open_source(overlay))) == 7  # the overlay of the frames read is kept too
    with pytest.raises(ValueError, match="nothing was scored .*the source failed after 2 frame"):
        score_source(tiny_xml, BreakingSource(2), normalization="running")


def test_the_command_writes_what_was_read_and_exits_3_when_the_source_breaks(tiny_xml, tmp_path, capsys):
    folder = write_folder(tmp_path / "clip", random_frames(12))
    (folder / "009.png").write_bytes(b"not a png")  # frames 0..7 read, frame 8 fails
    out = tmp_path / "out"
    status = main([str(tiny_xml), str(folder), "-o", str(out), "--overlay", "--fps", "10", "--no-progress"])
    assert status == EXIT_SOURCE_FAILED == 3
    line = one_error_line(capsys)
    assert "the source failed after 8 frame(s) (last read: frame 7 at 0.700 s)" in line and "009.png" in line
    summary = json.loads((out / "scores.json").read_text())
    assert summary["frames"] == 8 and summary["scored_frames"] == 8 - (CLIP - 1)
    assert summary["source_failure"]["frames"] == 8 and "009.png" in summary["source_failure"]["error"]
    assert len(list(open_source(out / "overlay.mp4"))) == 8  # the offline overlay's second pass stops there too


# 3. a file cut short


def test_a_file_cut_short_warns_once_with_the_frame_counts(tiny_xml, tmp_path, caplog):
    video = write_mp4(tmp_path / "full.mp4", random_frames(90, size=(48, 64)))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    with caplog.at_level(logging.WARNING):
        assert len(list(open_source(video))) == 90
        assert "ended early" not in caplog.text  # a complete file: no warning
        source = open_source(cut)
        decoded = len(list(source))
    assert source.num_frames == 90 and CLIP <= decoded < 45
    expected = f"the file ended early: {decoded} of 90 announced frames decoded"
    assert source.ended_early == expected
    assert sum(expected in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = score_source(tiny_xml, cut, overlay=tmp_path / "overlay.mp4")  # resized; a second pass for the overlay
    assert len(result.score) == decoded and result.extra["warnings"] == [expected]
    assert sum(expected in r.getMessage() for r in caplog.records) == 1  # once, not again in the overlay pass


def test_a_matroska_file_cut_short_is_judged_by_its_duration(tmp_path, caplog):
    from anomalib_vadproto.data.video_io import write_video

    video = write_video(tmp_path / "full.mkv", random_frames(60, size=(48, 64)), fps=10, codec="ffv1")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    source = open_source(cut)
    with caplog.at_level(logging.WARNING):
        decoded = len(list(source))
    assert source.num_frames is None and decoded < 40
    assert source.ended_early.startswith(f"the file ended early: {decoded} of 60 announced frames decoded")
    assert "duration" in caplog.text


# 4. clips the models cannot score: one clear error before inference, on both back-ends


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    from anomalib_vadproto import Mnad

    path = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0).to_torch(tmp_path_factory.mktemp("pt"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRUST_REMOTE_CODE", "1")
        return load_clip_model(path)


def good_clips(model) -> np.ndarray:
    """Two clips in [0, 1] of the model's length, at its input size (the torch model takes 32x32)."""
    size = model.metadata.input_size or (32, 32)
    return np.random.default_rng(0).random((2, model.metadata.clip_length, 3, *size), dtype=np.float32)


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_nan_integer_and_0_255_clips_are_refused_with_what_to_do(backend, tiny_xml, torch_model):
    model = load_clip_model(tiny_xml) if backend == "openvino" else torch_model
    clips = good_clips(model)
    assert np.isfinite(model(clips)["pred_score"]).all()
    with pytest.raises(
        ValueError, match=r"NaN or infinite values.*float frames in \[0, 1\] of shape \(N, T, 3, H, W\)"
    ):
        model(np.full_like(clips, np.nan))  # unchecked, the IR reads PSNR 100 dB: a perfectly normal clip
    with pytest.raises(ValueError, match=r"must be float in \[0, 1\]; got uint8 0\.\.255: divide by 255"):
        model(np.round(clips * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"must be float in \[0, 1\]; got float32 \S+\.\.2\d\d\S*: divide by 255"):
        model(clips * 255)
    with pytest.raises(ValueError, match=r"must be float in \[0, 1\]; got float32 -0\.9\d*\.\.0\.9\d*\.$"):
        model(clips * 2 - 1)  # a [-1, 1] normalisation: no hint to divide


def test_the_torch_model_takes_numpy_and_tensors_and_names_the_layout(torch_model):
    clips = good_clips(torch_model)
    expected = torch_model(clips)["pred_score"]
    np.testing.assert_allclose(torch_model(clips.astype(np.float64))["pred_score"], expected, rtol=1e-6)
    np.testing.assert_allclose(torch_model(torch.from_numpy(clips).requires_grad_())["pred_score"], expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"channels-last \(N, T, H, W, 3\).*expects \(N, T, 3, H, W\)"):
        torch_model(np.moveaxis(clips, 2, -1))


# 5. labels of the wrong length fail before scoring


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_labels_of_the_wrong_length_fail_before_scoring(kind, tiny_xml, tmp_path, monkeypatch, capsys):
    frames = random_frames(10)
    source = write_mp4(tmp_path / "a.mp4", frames) if kind == "file" else write_folder(tmp_path / "a", frames)
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(9, dtype=np.int64))

    def never(*args, **kwargs):
        raise AssertionError("scored despite wrong labels")

    monkeypatch.setattr(score_module, "score_source", never)
    out = tmp_path / "out"
    assert main([str(tiny_xml), str(source), "-o", str(out), "--labels", str(labels), "--no-progress"]) == 1
    assert f"--labels {labels} has 9 labels but a has 10 frames" in one_error_line(capsys)
    assert not out.exists()  # nothing written, no empty folder left behind
    monkeypatch.undo()
    args = ["-o", str(out), "--labels", str(labels), "--max-frames", "8", "--no-progress"]
    assert main([str(tiny_xml), str(source), *args]) == 0  # labels for every frame scored


# 6. unreadable OpenVINO files


def test_a_malformed_model_xml_names_the_file(tiny_xml, tmp_path, capsys):
    broken = tmp_path / "model.xml"
    broken.write_bytes(tiny_xml.read_bytes()[:300])
    with pytest.raises(ValueError, match="model.xml is not a readable OpenVINO IR") as error:
        load_clip_model(broken)
    assert isinstance(error.value.__cause__, RuntimeError)  # OpenVINO's own error stays chained
    no_bin = tmp_path / "nobin" / "model.xml"
    no_bin.parent.mkdir()
    no_bin.write_bytes(tiny_xml.read_bytes())
    with pytest.raises(ValueError, match="not a readable OpenVINO IR.*bin file"):
        load_clip_model(no_bin)
    video = write_mp4(tmp_path / "a.mp4", random_frames(6))
    assert main([str(broken), str(video), "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    line = one_error_line(capsys)
    assert f"{broken} is not a readable OpenVINO IR" in line and "Exception from" not in line
