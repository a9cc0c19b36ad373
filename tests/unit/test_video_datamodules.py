"""LocalAvenue and LocalShanghaiTech: PyAV decoding (no torchcodec), anomalib's clips, masks and errors."""

from __future__ import annotations

import dataclasses
import pickle
import random
import shutil
import signal
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.transforms.v2.functional import to_dtype

from anomalib_vadproto.data.synthetic_video import (
    make_synthetic_avenue,
    make_synthetic_shanghaitech,
    render_synthetic_video,
)
from anomalib_vadproto.data.video_io import VideoReader, VideoReadError, index_video, read_video

SIZE = {"n_frames": 20, "height": 64, "width": 96}
CLIP = {"clip_length_in_frames": 5, "frames_between_clips": 1, "num_workers": 0}


@pytest.fixture(scope="module")
def avenue_root(tmp_path_factory) -> Path:
    """2 train + 2 test videos, lossless (ffv1), ``.mat`` masks."""
    return make_synthetic_avenue(tmp_path_factory.mktemp("avenue"), codec="ffv1", **SIZE)


@pytest.fixture(scope="module")
def sht_root(tmp_path_factory) -> Path:
    """Scenes 1 and 2, 2 train + 2 test videos each, lossless training videos."""
    return make_synthetic_shanghaitech(tmp_path_factory.mktemp("sht"), scenes=(1, 2), codec="ffv1", **SIZE)


def avenue(root: Path, **kwargs):
    from anomalib_vadproto import LocalAvenue

    datamodule = LocalAvenue(root=root, gt_dir=root / "ground_truth_demo", **{**CLIP, **kwargs})
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def shanghaitech(root: Path, scene, **kwargs):
    from anomalib_vadproto import LocalShanghaiTech

    datamodule = LocalShanghaiTech(root=root, scene=scene, **{**CLIP, **kwargs})
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def as_float(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float as anomalib's datasets scale it."""
    return to_dtype(torch.from_numpy(frames).permute(0, 3, 1, 2), torch.float32, scale=True)


def video_number(path: str) -> int:
    """0-based index of ``.../NN.avi`` or ``.../SS_NNN(N)``."""
    return int(Path(path).stem.split("_")[-1]) - 1


# ---------------------------------------------------------------------------------------------- Avenue
def test_avenue_clips_frames_masks_and_labels_match_what_was_written(avenue_root) -> None:
    datamodule = avenue(avenue_root)
    assert len(datamodule.train_data) == len(datamodule.test_data) == 2 * 16  # (20 - 5) // 1 + 1 per video
    rendered = {("test", i): render_synthetic_video("test", i, **SIZE) for i in range(2)}
    rendered |= {("train", i): render_synthetic_video("train", i, **SIZE) for i in range(2)}
    labels = []
    for split, dataset in (("train", datamodule.train_data), ("test", datamodule.test_data)):
        for index in range(len(dataset)):
            item = dataset[index]
            video = rendered[split, video_number(item.video_path)]
            target = int(item.frames)
            assert torch.equal(item.image, as_float(video.frames[target - 4 : target + 1])), (split, index)
            if split == "train":
                assert item.gt_mask is None and item.gt_label is None
                continue
            assert isinstance(item.gt_mask, torch.Tensor)  # anomalib's .mat reader returns NumPy (crash)
            assert torch.equal(item.gt_mask.bool(), torch.from_numpy(video.masks[target]))
            assert bool(item.gt_label) == bool(video.masks[target].any()) == (target in video.anomalous)
            labels.append(bool(item.gt_label))
    assert any(labels) and not all(labels)
    assert sorted({video_number(p) for p in datamodule.test_data.samples.image_path}) == [0, 1]


def test_avenue_stride_and_mid_target_frame(avenue_root) -> None:
    datamodule = avenue(avenue_root, clip_length_in_frames=4, frames_between_clips=3, target_frame="mid")
    per_video = (20 - 4) // 3 + 1
    assert len(datamodule.train_data) == len(datamodule.test_data) == 2 * per_video
    video = render_synthetic_video("test", 0, **SIZE)
    for clip in range(per_video):  # the first video's clips come first
        item = datamodule.test_data[clip]
        start = 3 * clip
        assert int(item.frames) == start + 2  # MID of 4 frames: int(4 / 2)
        assert torch.equal(item.image, as_float(video.frames[start : start + 4]))
        assert torch.equal(item.gt_mask.bool(), torch.from_numpy(video.masks[start + 2]))


def test_avenue_png_mask_folders_equal_mat_masks(avenue_root, tmp_path) -> None:
    png_root = make_synthetic_avenue(tmp_path, codec="ffv1", mask_format="png", **SIZE)
    assert (png_root / "ground_truth_demo/testing_label_mask/1_label/000.png").is_file()
    assert not (png_root / "ground_truth_demo/testing_label_mask/1_label.mat").exists()
    mat, png = avenue(avenue_root).test_data, avenue(png_root).test_data
    assert len(mat) == len(png)
    masks = [png[i].gt_mask for i in range(len(png))]
    assert sum(bool(m.any()) for m in masks) > 0
    for i, mask in enumerate(masks):
        assert torch.equal(mask, mat[i].gt_mask)


def test_avenue_ground_truth_demo_copies_are_not_counted_twice(avenue_root, tmp_path) -> None:
    from anomalib.data.datasets.video.avenue import make_avenue_dataset

    root = tmp_path / "avenue"
    shutil.copytree(avenue_root, root)
    shutil.copytree(root / "testing_videos", root / "ground_truth_demo" / "testing_videos")
    # anomalib's own search doubles the test set (the pitfall) ...
    assert len(make_avenue_dataset(root.resolve(), root / "ground_truth_demo", "test")) == 4
    # ... the plugin's does not
    datamodule = avenue(root)
    assert len(datamodule.test_data.samples) == 2
    assert len(datamodule.test_data) == 2 * 16


def test_mjpeg_frames_decode_close_to_the_rendered_ones(tmp_path) -> None:
    root = make_synthetic_avenue(tmp_path, codec="mjpeg", n_train=1, n_test=1, **SIZE)
    decoded = read_video(root / "training_videos" / "01.avi").permute(0, 2, 3, 1).numpy().astype(np.int16)
    frames = render_synthetic_video("train", 0, **SIZE).frames.astype(np.int16)
    assert decoded.shape == frames.shape
    error = np.abs(decoded - frames).mean(axis=(1, 2, 3))
    assert error.max() < 4.0  # lossy, but close
    shifted = np.abs(decoded[1:] - frames[:-1]).mean(axis=(1, 2, 3))
    assert np.all(error[1:] < shifted)  # and frame t is frame t, not t - 1
    assert not np.array_equal(decoded[..., 0], decoded[..., 2])  # colour kept (RGB, tinted)


def test_cached_and_seeking_reads_are_identical_in_any_order(tmp_path) -> None:
    root = make_synthetic_avenue(tmp_path, codec="mpeg4", **SIZE)  # key frame every 6 frames
    cached, seeking = avenue(root, cache_frames=True), avenue(root)
    for split in ("train_data", "test_data"):
        a, b = getattr(cached, split), getattr(seeking, split)
        order = list(range(len(a)))
        random.Random(0).shuffle(order)
        for index in order:
            assert torch.equal(a[index].image, b[index].image), (split, index)
    assert cached.val_data.indexer.cache is cached.test_data.indexer.cache
    assert len(cached.test_data.indexer.cache) > 0 and seeking.test_data.indexer.cache is None


def test_reader_seeks_exactly_with_b_frames(tmp_path) -> None:
    path = tmp_path / "bframes.avi"
    yy, xx = np.mgrid[0:48, 0:64]
    frames = [np.stack([(2 * xx + 7 * t) % 256, (3 * yy + t) % 256, (xx + yy + 5 * t) % 256], -1) for t in range(30)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size, stream.codec_context.max_b_frames = 8, 2
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    index = index_video(path)
    assert index.num_frames == 30 and index.pts is not None
    everything = read_video(index)
    reader = VideoReader(index, window=10, max_skip=10)
    rng = random.Random(1)
    for _ in range(60):
        start = rng.randrange(0, 26)
        assert torch.equal(reader.read(range(start, start + 5)), everything[start : start + 5]), start
    for start in range(26):  # in order: continues decoding
        assert torch.equal(reader.read(range(start, start + 5)), everything[start : start + 5]), start


def test_reader_without_matching_timestamps_counts_frames(avenue_root) -> None:
    index = index_video(avenue_root / "testing_videos" / "01.avi")
    everything = read_video(index)
    no_pts = dataclasses.replace(index, pts=None)  # e.g. packets without timestamps
    wrong_pts = dataclasses.replace(index, pts=tuple(p + 1000 for p in index.pts))  # frames never match
    for broken in (no_pts, wrong_pts):
        reader = VideoReader(broken, window=10)
        for start in (7, 2, 15, 3, 4, 5, 0, 12):
            assert torch.equal(reader.read(range(start, start + 5)), everything[start : start + 5]), start
    assert torch.equal(read_video(wrong_pts), everything)
    with pytest.raises(IndexError, match="has 20 frames"):
        VideoReader(index).read([18, 19, 20])


def test_missing_avenue_data_raises_file_not_found(avenue_root, tmp_path) -> None:
    from anomalib_vadproto import LocalAvenue

    with pytest.raises(FileNotFoundError, match=r"No Avenue dataset at .*nowhere.*training_videos"):
        LocalAvenue(root=tmp_path / "nowhere", gt_dir=tmp_path / "gt").prepare_data()
    root = tmp_path / "avenue"
    shutil.copytree(avenue_root, root)
    (root / "ground_truth_demo" / "testing_label_mask" / "2_label.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 test video\(s\) \(2_label.mat\)"):
        LocalAvenue(root=root, gt_dir=root / "ground_truth_demo").prepare_data()
    shutil.rmtree(root / "training_videos")
    with pytest.raises(FileNotFoundError, match=r"training_videos has no \.avi videos"):
        LocalAvenue(root=root, gt_dir=root / "ground_truth_demo").prepare_data()


def test_corrupt_video_raises_an_error_naming_the_file(avenue_root, tmp_path) -> None:
    root = tmp_path / "avenue"
    shutil.copytree(avenue_root, root)
    bad = root / "testing_videos" / "02.avi"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(VideoReadError, match=r"testing_videos/02\.avi"):
        avenue(root)
    bad.write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"02\.avi"):
        avenue(root)


@pytest.mark.timeout(120)  # a decoder freed in a forked worker deadlocks
def test_indexer_survives_pickling_and_worker_processes(avenue_root, worker_processes) -> None:
    datamodule = avenue(avenue_root, eval_batch_size=8)
    test = datamodule.test_data
    expected = [test[i].image for i in range(len(test))]  # the main process now holds an open reader
    clone = pickle.loads(pickle.dumps(test))
    assert torch.equal(clone[5].image, expected[5])
    datamodule.num_workers = 1
    images = torch.cat([batch.image for batch in datamodule.test_dataloader()])
    assert torch.equal(images, torch.stack(expected))
    assert callable(signal.getsignal(signal.SIGCHLD))  # torch's handler, removed again by worker_processes


# ----------------------------------------------------------------------------------------- ShanghaiTech
def test_shanghaitech_all_scenes_pooled_with_per_video_identity(sht_root) -> None:
    datamodule = shanghaitech(sht_root, "all")
    assert datamodule.category == "all"
    train_paths = [datamodule.train_data[i].video_path for i in range(len(datamodule.train_data))]
    test_paths = [datamodule.test_data[i].video_path for i in range(len(datamodule.test_data))]
    assert sorted({Path(p).name for p in train_paths}) == ["01_001.avi", "01_002.avi", "02_001.avi", "02_002.avi"]
    assert sorted({Path(p).name for p in test_paths}) == ["01_0001", "01_0002", "02_0001", "02_0002"]
    assert all(train_paths.count(p) == 16 for p in set(train_paths))  # every video keeps its 16 clips
    assert all(test_paths.count(p) == 16 for p in set(test_paths))
    assert len(shanghaitech(sht_root, None).test_data) == len(datamodule.test_data) == 64
    two = shanghaitech(sht_root, [2])
    assert two.category == "02"
    assert {Path(p).name[:3] for p in two.train_data.samples.image_path} == {"02_"}
    assert {Path(p).name[:3] for p in two.test_data.samples.image_path} == {"02_"}


def test_shanghaitech_train_frames_match_what_was_written(sht_root) -> None:
    train = shanghaitech(sht_root, 2).train_data
    assert len(train) == 2 * 16
    for index in range(len(train)):
        item = train[index]
        assert Path(item.video_path).parent.name == "videos"  # read where the dataset ships it, no re-encoding
        video = render_synthetic_video("train", video_number(item.video_path), scene=2, **SIZE)
        target = int(item.frames)
        assert torch.equal(item.image, as_float(video.frames[target - 4 : target + 1])), index


@pytest.mark.parametrize("cache_frames", [False, True])
def test_shanghaitech_test_items_equal_anomalibs_reader(sht_root, cache_frames) -> None:
    from anomalib.data.datasets.video.shanghaitech import ShanghaiTechDataset

    ours = shanghaitech(sht_root, [1, 2], cache_frames=cache_frames).test_data
    offset = 0
    for scene in (1, 2):
        theirs = ShanghaiTechDataset(
            split="test", root=sht_root, scene=scene, clip_length_in_frames=5, frames_between_clips=1
        )
        for i in range(len(theirs)):
            a, b = theirs[i], ours[offset + i]
            assert a.video_path == b.video_path
            assert torch.equal(a.image, b.image)
            assert torch.equal(a.gt_mask, b.gt_mask)
            assert a.gt_label == b.gt_label
            assert torch.equal(a.frames, b.frames)
        offset += len(theirs)
    assert offset == len(ours) == 64
    video = render_synthetic_video("test", 1, scene=2, **SIZE)
    item = ours[48 + 10]  # scene 2, second video, target frame 14
    assert int(item.frames) == 14 and torch.equal(item.gt_mask.bool(), torch.from_numpy(video.masks[14]))
    assert np.abs(item.image[-1].numpy() - as_float(video.frames[14:15])[0].numpy()).mean() < 0.02  # JPEG


def test_shanghaitech_batches_are_video_batches(sht_root) -> None:
    from anomalib.data import VideoBatch

    datamodule = shanghaitech(sht_root, "all", train_batch_size=4, eval_batch_size=8)
    train, test = next(iter(datamodule.train_dataloader())), next(iter(datamodule.test_dataloader()))
    assert isinstance(train, VideoBatch) and isinstance(test, VideoBatch)
    assert train.image.shape == (4, 5, 3, 64, 96) and train.gt_label is None
    assert test.image.shape == (8, 5, 3, 64, 96) and test.gt_mask.shape == (8, 64, 96)
    assert test.gt_mask.dtype == torch.bool and test.gt_label.dtype == torch.bool


def test_missing_shanghaitech_data_raises_file_not_found(sht_root, tmp_path) -> None:
    from anomalib_vadproto import LocalShanghaiTech

    with pytest.raises(FileNotFoundError, match=r"No ShanghaiTech dataset at .*nowhere.*training/videos"):
        LocalShanghaiTech(root=tmp_path / "nowhere").prepare_data()
    with pytest.raises(FileNotFoundError, match=r"No training videos for scene\(s\) 03"):
        LocalShanghaiTech(root=sht_root, scene=[1, 3]).prepare_data()
    root = tmp_path / "sht"
    shutil.copytree(sht_root, root)
    (root / "testing" / "test_pixel_mask" / "01_0002.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"01_0002\.npy"):
        LocalShanghaiTech(root=root, scene=1).prepare_data()
    (root / "training" / "videos" / "02_001.avi").write_bytes(b"not a video")
    with pytest.raises(VideoReadError, match=r"02_001\.avi"):
        shanghaitech(root, 2)


def test_converted_videos_are_used_when_videos_is_absent(sht_root, tmp_path) -> None:
    root = tmp_path / "sht"
    shutil.copytree(sht_root, root)
    (root / "training" / "videos").rename(root / "training" / "converted_videos")
    train = shanghaitech(root, 1).train_data
    assert {Path(p).parent.name for p in train.samples.image_path} == {"converted_videos"}
    assert len(train) == 32


def test_parse_scenes() -> None:
    from anomalib_vadproto.data.shanghaitech import parse_scenes

    assert parse_scenes(None) is None and parse_scenes("all") is None and parse_scenes("ALL") is None
    assert parse_scenes(3) == (3,) and parse_scenes("3") == (3,) and parse_scenes("4,1") == (1, 4)
    assert parse_scenes([13, 1, 1]) == (1, 13)
    for bad in (0, 100, True, [], "x", [1, "a"], 1.5):
        with pytest.raises(ValueError, match="scene must be"):
            parse_scenes(bad)


def test_cli_parses_the_datamodules_and_configs(sht_root) -> None:
    from anomalib.cli.cli import AnomalibCLI

    from anomalib_vadproto import LocalAvenue, LocalShanghaiTech
    from tests.conftest import REPO

    def datamodule(*args: str):
        return AnomalibCLI(["train", "--model", "Mnad", *args], run=False).datamodule

    pooled = datamodule("--data", "LocalShanghaiTech", "--data.root", str(sht_root), "--data.scene", "all")
    assert isinstance(pooled, LocalShanghaiTech) and pooled.scenes is None
    listed = datamodule("--data", "anomalib_vadproto.LocalShanghaiTech", "--data.scene", "[1,2]")
    assert listed.scenes == (1, 2) and listed.category == "01_02"
    config = datamodule("--data", str(REPO / "configs/data/shanghaitech_all.yaml"))
    assert isinstance(config, LocalShanghaiTech) and config.scenes is None and config.clip_length_in_frames == 5
    config = datamodule("--data", str(REPO / "configs/data/shanghaitech.yaml"))
    assert isinstance(config, LocalShanghaiTech) and config.scenes == (1,)
    config = datamodule("--data", str(REPO / "configs/data/avenue.yaml"), "--data.cache_frames", "true")
    assert isinstance(config, LocalAvenue) and config.cache_frames and config.frames_between_clips == 1


# ------------------------------------------------------------------------------------------- generators
def test_generators_are_idempotent_and_refuse_foreign_data(tmp_path) -> None:
    root = make_synthetic_shanghaitech(tmp_path / "sht", scenes=[3], n_train=1, n_test=1, **SIZE)
    video = root / "training" / "videos" / "03_001.avi"
    stamp = video.stat().st_mtime_ns
    assert make_synthetic_shanghaitech(root, scenes=[3], n_train=1, n_test=1, **SIZE) == root
    assert video.stat().st_mtime_ns == stamp  # nothing rewritten
    masks = np.load(root / "testing" / "test_pixel_mask" / "03_0001.npy")
    labels = np.load(root / "testing" / "test_frame_mask" / "03_0001.npy")
    assert masks.shape == (20, 64, 96) and masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1}
    np.testing.assert_array_equal(labels, masks.any(axis=(1, 2)))
    assert len(list((root / "testing" / "frames" / "03_0001").glob("*.jpg"))) == 20
    foreign = tmp_path / "real"
    (foreign / "training_videos").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="did not write"):
        make_synthetic_avenue(foreign)
    with pytest.raises(ValueError, match="codec"):
        make_synthetic_avenue(tmp_path / "x", codec="h264")
