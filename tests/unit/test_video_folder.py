"""``VideoFolder``: a folder of one's own recordings, every label form, the camera options and the mistakes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_vadproto.data.synthetic_video import (
    LABEL_FORMS,
    main,
    make_synthetic_video_folder,
    render_synthetic_video,
)
from anomalib_vadproto.data.video_folder import VideoFolder, keep_frames, parse_frame_ranges
from anomalib_vadproto.data.video_io import write_video
from anomalib_vadproto.errors import DatasetLayoutError, InvalidArgumentError

SIZE = {"n_frames": 30, "height": 48, "width": 64}
FRAME_FORMS = ("npy", "csv", "txt")
MASK_FORMS = ("mask_video", "mask_folder", "mask_npy", "mask_mat")


def folder(root: Path, **options) -> VideoFolder:
    """A set-up ``VideoFolder`` over ``root`` (no workers)."""
    datamodule = VideoFolder(root=root, num_workers=0, **{"eval_batch_size": 8, **options})
    datamodule.setup()
    return datamodule


def targets(dataset) -> dict[tuple[str, int], tuple[torch.Tensor, int | None, torch.Tensor | None]]:
    """Per ``(video name, frame)``: the target frame's image, label and mask of every clip of ``dataset``."""
    found = {}
    for i in range(len(dataset)):
        item = dataset[i]
        image = item.image if item.image.ndim == 3 else item.image[-1]
        label = None if item.gt_label is None else int(item.gt_label)
        mask = item.gt_mask if item.gt_mask is None or item.gt_mask.ndim == 2 else item.gt_mask[-1]
        found[(Path(item.video_path).stem, int(item.frames))] = (image, label, mask)
    return found


def intervals(root: Path) -> dict[str, tuple[int, int]]:
    """The anomalous frames (first, last) of each test video, as the generator recorded them."""
    videos = json.loads((root / "manifest.json").read_text())["test_videos"]
    return {name: (v["first_anomalous_frame"], v["last_anomalous_frame"]) for name, v in videos.items()}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Three training videos (mp4, avi, PNG frames) and one test video per frame-label form, at 30 fps."""
    return make_synthetic_video_folder(tmp_path_factory.mktemp("labelled"), label_forms=FRAME_FORMS, **SIZE)


@pytest.fixture(scope="module")
def masked(tmp_path_factory) -> Path:
    """One test video per mask form."""
    return make_synthetic_video_folder(tmp_path_factory.mktemp("masked"), label_forms=MASK_FORMS, **SIZE)


def copy_of(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


# ---------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("data", ["labelled", "masked"])
def test_every_label_form_gives_the_anomalous_frames(data, request) -> None:
    root = request.getfixturevalue(data)
    datamodule = folder(root, clip_length_in_frames=1)
    expected = intervals(root)
    found = targets(datamodule.test_data)
    assert {name for name, _ in found} == set(expected)
    for (name, frame), (_, label, mask) in found.items():
        first, last = expected[name]
        assert label == int(first <= frame <= last), (name, frame)
        if data == "masked":
            assert mask is not None and bool(mask.any()) == bool(label)
        else:
            assert mask is None  # frame labels only: no pixel metric
    assert datamodule.test_data.task.value == ("segmentation" if data == "masked" else "classification")


def test_masks_are_read_as_written(masked) -> None:
    datamodule = folder(masked, clip_length_in_frames=1)
    found = targets(datamodule.test_data)
    for index, name in enumerate(sorted(intervals(masked))):
        rendered = render_synthetic_video("test", index, seed=0, **SIZE).masks
        for frame in range(SIZE["n_frames"]):
            mask = found[(name, frame)][2].bool().numpy()
            if name == "test_01":  # the lossy mask video: white is anomalous, edges may differ by a pixel
                assert np.mean(mask != rendered[frame]) < 0.01
            else:
                assert np.array_equal(mask, rendered[frame]), (name, frame)


def test_masks_for_only_some_videos_give_frame_labels(tmp_path) -> None:
    root = make_synthetic_video_folder(tmp_path / "mixed", label_forms=("csv", "mask_npy"), **SIZE)
    datamodule = folder(root, clip_length_in_frames=1)
    found = targets(datamodule.test_data)
    expected = intervals(root)
    assert all(mask is None for _, _, mask in found.values())
    assert all(label == int(expected[n][0] <= f <= expected[n][1]) for (n, f), (_, label, _) in found.items())


def test_frame_ranges_are_zero_based_and_inclusive() -> None:
    assert np.flatnonzero(parse_frame_ranges("2-4\n", 8)).tolist() == [2, 3, 4]
    text = "start,end\n1,2\n\n# a comment\n5 6  # trailing\n7\n"
    assert np.flatnonzero(parse_frame_ranges(text, 8)).tolist() == [1, 2, 5, 6, 7]
    assert np.flatnonzero(parse_frame_ranges("0;0\n", 3)).tolist() == [0]
    assert not parse_frame_ranges("", 5).any()  # an empty file: a video without anomalies


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3-10\n", "frame 10 is beyond the video's 8 frames"),
        ("5-2\n", "ends before it starts"),
        ("1-2\nfive to six\n", "line 2: 'five to six' is not a frame range"),
    ],
)
def test_bad_frame_ranges_are_refused_in_one_line(text, message) -> None:
    with pytest.raises(DatasetLayoutError, match=message) as info:
        parse_frame_ranges(text, 8, "gt.csv")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- camera options
def test_keep_frames_uses_the_timestamps() -> None:
    assert keep_frames([i / 30 for i in range(10)], 10) == (0, 3, 6, 9)
    assert keep_frames([i / 25 for i in range(11)], 10) == (0, 3, 5, 8, 10)  # 10 per second on average
    assert keep_frames([0.0, 0.05, 0.09, 0.31, 0.32, 0.4], 10) == (0, 3, 5)  # a variable-rate recording
    assert keep_frames([i / 5 for i in range(4)], 10) == (0, 1, 2, 3)  # below the target: every frame
    assert keep_frames([0.0, 0.1], None) == (0, 1)


def test_fps_keeps_every_third_frame_of_a_30_fps_recording_with_its_labels(labelled) -> None:
    every = targets(folder(labelled, clip_length_in_frames=1).test_data)
    tenth = folder(labelled, clip_length_in_frames=1, fps=10)
    sub = targets(tenth.test_data)
    assert all(source.kept == tuple(range(0, 30, 3)) for source in tenth.test_data.indexer.sources.values())
    assert {frame for _, frame in sub} == set(range(10))
    for (name, frame), (image, label, _) in sub.items():
        image_30, label_30, _ = every[(name, 3 * frame)]
        assert torch.equal(image, image_30) and label == label_30
    # training videos too; the frame folder (normal_03) has no timestamps: its rate is folder_fps
    train = folder(labelled, fps=10, folder_fps=30).train_data.indexer.sources
    assert sorted(len(s.kept) for s in train.values()) == [10, 10, 10]
    train = folder(labelled, fps=10).train_data.indexer.sources  # folder_fps 25 by default
    assert {Path(p).name: len(s.kept) for p, s in train.items()}["normal_03"] == 12


def test_roi_crops_frames_and_masks_before_anything_else(masked) -> None:
    full = targets(folder(masked, clip_length_in_frames=1).test_data)
    cropped = targets(folder(masked, clip_length_in_frames=1, roi=[8, 4, 40, 32]).test_data)
    for key, (image, label, mask) in cropped.items():
        image_full, _, mask_full = full[key]
        assert image.shape == (3, 32, 40)
        assert torch.equal(image, image_full[:, 4:36, 8:48]) and torch.equal(mask, mask_full[4:36, 8:48])
        assert label == int(mask.any())  # labels from the cropped masks


def test_grayscale_is_pils_luma_in_three_equal_channels(labelled) -> None:
    colour = folder(labelled, clip_length_in_frames=1)
    grey = folder(labelled, clip_length_in_frames=1, grayscale=True, cache_frames=True)
    for split in ("train_data", "test_data"):  # video files, and the PNG frame folder (read as grey by PIL)
        expected = targets(getattr(colour, split))
        for key, (image, _, _) in targets(getattr(grey, split)).items():
            rgb = (expected[key][0] * 255).round().byte().permute(1, 2, 0).numpy()
            luma = np.asarray(Image.fromarray(rgb).convert("L"))
            assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
            assert np.array_equal((image[0] * 255).round().byte().numpy(), luma), key
    cache = grey.test_data.indexer.cache
    assert cache and all(frames.shape[1] == 1 for frames in cache.values())  # the cache holds one channel


def test_image_size_resizes_the_stored_frames(masked) -> None:
    datamodule = folder(masked, image_size=[24, 32], cache_frames=True)
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.image.shape[-2:] == (24, 32) and batch.gt_mask.shape[-2:] == (24, 32)
    assert all(frames.shape[-2:] == (24, 32) for frames in datamodule.test_data.indexer.cache.values())


def test_cached_and_decoded_clips_are_the_same(masked) -> None:
    options = {"fps": 15, "roi": [0, 8, 56, 40], "grayscale": True, "image_size": [32, 48]}
    decoded = next(iter(folder(masked, **options).test_dataloader()))
    cached = next(iter(folder(masked, cache_frames=True, **options).test_dataloader()))
    assert torch.equal(decoded.image, cached.image) and torch.equal(decoded.gt_mask, cached.gt_mask)
    assert torch.equal(decoded.gt_label, cached.gt_label)


def test_device_clips_cut_the_same_training_batches(labelled) -> None:
    datamodule = folder(labelled, cache_frames=True, device_clips=True, image_size=[32, 32])
    store = datamodule.device_clip_store()
    assert store.frames.shape == (3 * 30, 3, 32, 32)
    batch = store.batch(torch.tensor([0, 30]), "cpu")
    for row, clip in enumerate((0, 30)):
        assert torch.equal(batch.image[row], datamodule.train_data[clip].image)


# ---------------------------------------------------------------------------------------------- validation
def test_from_train_holds_out_whole_videos_never_trained_on(labelled) -> None:
    datamodule = folder(labelled, val_split_mode="from_train", val_videos=1)
    assert datamodule.held_out_videos == ("normal_02",)
    train = {Path(p).stem for p in datamodule.train_data.samples.image_path}
    assert train == {"normal_01", "normal_03"}
    assert {name for name, _ in targets(datamodule.val_data)} == {"normal_02"}
    trained = {Path(datamodule.train_data[i].video_path).stem for i in range(len(datamodule.train_data))}
    assert "normal_02" not in trained
    named = folder(labelled, val_split_mode="from_train", val_videos=["normal_03"])
    assert named.held_out_videos == ("normal_03",)


# ---------------------------------------------------------------------------------------------- prediction only
@pytest.mark.slow
def test_a_test_set_without_labels_runs_as_prediction_only(tmp_path, caplog) -> None:
    from anomalib.engine import Engine

    from anomalib_vadproto import Mnad

    root = make_synthetic_video_folder(tmp_path / "unlabelled", n_train=2, label_forms=("none",), n_test=2, **SIZE)
    datamodule = VideoFolder(root=root, num_workers=0, cache_frames=True)
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=1, default_root_dir=tmp_path / "run", logger=False, enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule)
    with caplog.at_level(logging.INFO):
        (metrics,) = engine.test(model=model, datamodule=datamodule, verbose=False)
    assert datamodule.has_ground_truth is False
    assert not any("AUC" in name or "AUROC" in name for name in metrics), metrics
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("No AUC")]
    assert len(messages) == 1 and "prediction only" in messages[0]


# ---------------------------------------------------------------------------------------------- mistakes
def mistake_empty_train(root: Path) -> None:
    for path in (root / "train").iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def mistake_missing_test(root: Path) -> None:
    shutil.rmtree(root / "test")


def mistake_undecodable(root: Path) -> None:
    (root / "train" / "broken.mp4").write_bytes(b"not a video at all" * 10)


def mistake_label_length(root: Path) -> None:
    np.save(root / "ground_truth" / "test_01.npy", np.zeros(29, dtype=np.uint8))


def mistake_range_beyond(root: Path) -> None:
    (root / "ground_truth" / "test_02.csv").write_text("start,end\n10,30\n")


def mistake_partial_ground_truth(root: Path) -> None:
    (root / "ground_truth" / "test_03.txt").unlink()


def mistake_other_size(root: Path) -> None:
    write_video(root / "test" / "test_04.mp4", np.zeros((30, 40, 56, 3), np.uint8), codec="mpeg4")
    (root / "ground_truth" / "test_04.csv").write_text("")


def mistake_same_name(root: Path) -> None:
    shutil.copy(root / "train" / "normal_01.mp4", root / "train" / "normal_01.mkv")


def mistake_loose_frames(root: Path) -> None:
    shutil.copy(root / "train" / "normal_03" / "000.png", root / "train" / "000.png")


def mistake_two_label_files(root: Path) -> None:
    (root / "ground_truth" / "test_02.txt").write_text("1-2\n")


MISTAKES = {
    mistake_empty_train: "holds no training videos",
    mistake_missing_test: "No test folder",
    mistake_undecodable: "broken.mp4 is not a video PyAV can decode",
    mistake_label_length: "holds 29 frame labels, but .* has 30 frames",
    mistake_range_beyond: "frame 30 is beyond the video's 30 frames",
    mistake_partial_ground_truth: "2 of the 3 test videos have ground truth .* test_03.mp4 has none",
    mistake_other_size: "differ in frame size .* set image_size",
    mistake_same_name: "Two training videos are named 'normal_01'",
    mistake_loose_frames: "holds image files",
    mistake_two_label_files: "Two frame-label files",
}


@pytest.mark.parametrize("mistake", list(MISTAKES), ids=lambda f: f.__name__.removeprefix("mistake_"))
def test_each_mistake_stops_setup_in_one_line(mistake, labelled, tmp_path) -> None:
    root = copy_of(labelled, tmp_path)
    mistake(root)
    with pytest.raises(DatasetLayoutError, match=MISTAKES[mistake]) as info:
        folder(root)
    assert "\n" not in str(info.value)


def test_other_sizes_are_fine_once_resized(labelled, tmp_path) -> None:
    root = copy_of(labelled, tmp_path)
    mistake_other_size(root)
    assert next(iter(folder(root, image_size=48).test_dataloader())).image.shape[-2:] == (48, 48)


def test_mask_mistakes_stop_setup_in_one_line(masked, tmp_path) -> None:
    root = copy_of(masked, tmp_path)
    np.save(root / "ground_truth" / "test_03_mask.npy", np.zeros((30, 48, 60), np.uint8))
    with pytest.raises(DatasetLayoutError, match="masks of 48x60 .* masks must have the recording's frame size"):
        folder(root)
    np.save(root / "ground_truth" / "test_03_mask.npy", np.zeros((31, 48, 64), np.uint8))
    with pytest.raises(DatasetLayoutError, match="holds 31 masks, but .* has 30 frames"):
        folder(root)
    (root / "ground_truth" / "test_03_mask.npy").unlink()
    (root / "ground_truth" / "test_02_mask" / "029.png").unlink()
    with pytest.raises(DatasetLayoutError, match="test_02_mask holds 29 masks"):
        folder(root)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"roi": [0, 0, 4]}, "roi must be \\[x, y, w, h\\]"),
        ({"image_size": [4, 4]}, "image_size must be \\[height, width\\]"),
        ({"fps": 0}, "fps must be a positive frame rate"),
    ],
)
def test_bad_options_are_refused_at_once(options, message) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        VideoFolder(root="anywhere", **options)


def test_a_roi_beyond_the_frame_is_refused(labelled) -> None:
    with pytest.raises(InvalidArgumentError, match="reaches beyond .* which is 64x48"):
        folder(labelled, roi=[40, 0, 32, 32])


def test_a_missing_root_names_the_layout(tmp_path) -> None:
    with pytest.raises(DatasetLayoutError, match="No video folder at .*synthetic_video video_folder"):
        folder(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- generator
def test_the_generator_writes_every_form(tmp_path, capsys) -> None:
    root = tmp_path / "all_forms"
    assert main(["video_folder", str(root), "--n-frames", "12", "--label-forms", *LABEL_FORMS]) == 0
    assert "Synthetic video_folder dataset" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "train").iterdir()) == ["normal_01.mp4", "normal_02.avi", "normal_03"]
    assert len(list((root / "test").iterdir())) == len(LABEL_FORMS)
    gt = sorted(p.name for p in (root / "ground_truth").iterdir())
    assert gt == [
        "test_01.npy", "test_02.csv", "test_03.txt", "test_04_mask.mp4", "test_05_mask", "test_06_mask.npy",
        "test_07_mask.mat",
    ]  # fmt: skip
    # test_08 has none: a partially labelled folder is refused; the rest reads as frame labels
    with pytest.raises(DatasetLayoutError, match="test_08.avi has none"):
        folder(root)
