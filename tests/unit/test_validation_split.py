"""``val_split_mode: from_train``: whole training videos held out for validation, never trained on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalib_vadproto.data.synthetic_video import make_synthetic_avenue, make_synthetic_shanghaitech
from anomalib_vadproto.data.validation import held_out_indices
from anomalib_vadproto.errors import InvalidArgumentError

CLIP = {"clip_length_in_frames": 5, "frames_between_clips": 1, "num_workers": 0}
NAMES = [f"Train{i:03d}" for i in range(1, 17)]  # Ped2's 16 training videos


# ---------------------------------------------------------------------------------------------- choice
def test_a_number_spreads_the_held_out_videos_evenly() -> None:
    # The middle of each of k equal stretches of the 16 sorted videos.
    assert held_out_indices(NAMES, 1) == [8]
    assert held_out_indices(NAMES, 2) == [4, 12]
    assert held_out_indices(NAMES, 4) == [2, 6, 10, 14]
    # Sorted by name, whatever order the dataset lists them in.
    shuffled = NAMES[8:] + NAMES[:8]
    assert {shuffled[i] for i in held_out_indices(shuffled, 2)} == {"Train005", "Train013"}


def test_names_and_the_ratio() -> None:
    assert held_out_indices(NAMES, ["Train016", "Train003"]) == [2, 15]
    assert held_out_indices(NAMES, "Train002") == [1]
    assert held_out_indices(NAMES, None, 0.125) == [4, 12]  # 2 of 16
    assert held_out_indices(NAMES[:2], None, 0.1) == [1]  # at least one
    assert held_out_indices(NAMES[:2], None, 0.9) == [1]  # at least one trained on


@pytest.mark.parametrize(
    ("videos", "ratio", "message"),
    [
        (0, 0.5, "at least 1 and at most 15"),
        (16, 0.5, "at least 1 and at most 15"),
        (["Train099"], 0.5, "Train099, which are not training videos"),
        (["Train001", "Train001"], 0.5, "distinct"),
        (NAMES, 0.5, "at most 15"),
        (None, 1.0, "val_split_ratio must be between 0 and 1"),
        (True, 0.5, "a number of videos or a list"),
    ],
)
def test_bad_choices_are_refused_in_one_line(videos, ratio, message) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        held_out_indices(NAMES, videos, ratio)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- datamodules
def clip_videos(dataset) -> set[str]:
    """Names of the videos the dataset's clips come from."""
    indexer = dataset.indexer
    return {Path(indexer.video_paths[indexer.get_clip_location(i)[0]]).stem for i in range(len(dataset))}


def check_split(datamodule, held: set[str], all_train: set[str]) -> None:
    train, val = clip_videos(datamodule.train_data), clip_videos(datamodule.val_data)
    assert val == held == set(datamodule.held_out_videos)
    assert train == all_train - held
    assert not train & val  # no held-out video is ever trained on
    item = datamodule.val_data[0]
    assert item.gt_label is None  # training videos: normal, no masks (the model labels them normal)


@pytest.mark.parametrize("options", [{}, {"cache_frames": True}, {"cache_frames": True, "device_clips": True}])
def test_ucsd_holds_out_whole_videos(tmp_path: Path, options: dict) -> None:
    from anomalib_vadproto import LocalUCSDped
    from anomalib_vadproto.data import make_synthetic_ucsd

    make_synthetic_ucsd(tmp_path, n_train=4, n_test=2, n_frames=12, height=32, width=48)
    datamodule = LocalUCSDped(
        root=tmp_path, category="synthetic", val_split_mode="from_train", val_videos=1, **CLIP, **options
    )
    datamodule.prepare_data()
    datamodule.setup()
    names = {f"Train{i:03d}" for i in range(1, 5)}
    check_split(datamodule, {"Train003"}, names)
    # 8 clips of 5 frames in each 12-frame video.
    assert len(datamodule.val_data) == 8
    assert len(datamodule.train_data) == 24
    if options.get("device_clips"):
        # The device tensor is built from the training split alone.
        batch = next(iter(datamodule.train_dataloader()))
        batch = datamodule.transfer_batch_to_device(batch, torch.device("cpu"), 0)
        assert {Path(p).stem for p in batch.video_path} <= names - {"Train003"}


def test_avenue_and_shanghaitech_hold_out_named_videos(tmp_path: Path) -> None:
    from anomalib_vadproto import LocalAvenue, LocalShanghaiTech

    size = {"n_frames": 12, "height": 32, "width": 48, "codec": "ffv1"}
    avenue_root = make_synthetic_avenue(tmp_path / "avenue", **size)
    gt_dir = avenue_root / "ground_truth_demo"
    avenue = LocalAvenue(root=avenue_root, gt_dir=gt_dir, val_split_mode="from_train", val_videos=["02"], **CLIP)
    avenue.setup()
    check_split(avenue, {"02"}, {"01", "02"})

    sht_root = make_synthetic_shanghaitech(tmp_path / "sht", scenes=(1, 2), **size)
    sht = LocalShanghaiTech(root=sht_root, scene="all", val_split_mode="FROM_TRAIN", val_videos=1, **CLIP)
    sht.setup()
    names = {Path(p).stem for p in sht.train_data.samples.image_path} | set(sht.held_out_videos)
    assert len(names) == 4
    check_split(sht, set(sht.held_out_videos), names)


def test_same_as_test_is_unchanged(synthetic_root: Path) -> None:
    from tests.conftest import clip_datamodule

    datamodule = clip_datamodule(synthetic_root)
    datamodule.setup()
    assert datamodule.held_out_videos == ()
    assert clip_videos(datamodule.val_data) == clip_videos(datamodule.test_data)


def test_a_bad_choice_fails_at_setup(synthetic_root: Path) -> None:
    from anomalib_vadproto import LocalUCSDped

    datamodule = LocalUCSDped(
        root=synthetic_root, category="synthetic", val_split_mode="from_train", val_videos=["Train009"], **CLIP
    )
    with pytest.raises(InvalidArgumentError, match="Train009"):
        datamodule.setup()
