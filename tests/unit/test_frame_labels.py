"""Frame labels come from the full-resolution masks, not from the masks resized to the model's input.

anomalib's ``AnomalibVideoDataset.__getitem__`` labels a frame after the augmentations (which end with the
model's ``Resize``): at a small ``image_size`` a small anomaly vanishes from the resized mask and its frame
was labelled normal. Every datamodule of the plugin that derives labels from masks is checked here with a
test video whose masks hold a single-pixel anomaly (lost by nearest-neighbour resizing to 8x8), a large one
(kept) and empty frames.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data.datasets.base.video import VideoTargetFrame
from PIL import Image
from torchvision.transforms.v2 import Resize

N_FRAMES, HEIGHT, WIDTH = 10, 32, 48
#: The single pixel: nearest-neighbour resizing to 8x8 samples rows 0, 4, ... and columns 0, 6, ...
PIXEL_FRAME, PIXEL = 3, (5, 7)
BLOB_FRAMES = (6, 7)
SMALL = (8, 8)


def anomaly_masks() -> np.ndarray:
    """``uint8`` 0/1 ``(N_FRAMES, HEIGHT, WIDTH)``: one frame with a single anomalous pixel, two with a blob."""
    masks = np.zeros((N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8)
    masks[PIXEL_FRAME][PIXEL] = 1
    for frame in BLOB_FRAMES:
        masks[frame, 10:20, 12:24] = 1
    return masks


EXPECTED = {frame: int(anomaly_masks()[frame].any()) for frame in range(N_FRAMES)}


def labels_by_frame(dataset) -> dict[int, int]:
    """Per target frame number: its label, over every clip of ``dataset`` (every frame of ``all`` clips)."""
    found: dict[int, int] = {}
    for i in range(len(dataset)):
        item = dataset[i]
        assert item.gt_label is not None
        for frame, label in zip(item.frames.reshape(-1).tolist(), item.gt_label.reshape(-1).tolist(), strict=True):
            assert found.setdefault(frame, label) == label, frame
    return found


def check_labels(dataset, covered: set[int] | None = None) -> None:
    """The labels of ``dataset`` (augmented to 8x8) are those of the full-resolution masks; the masks stay resized."""
    dataset.augmentations = Resize(SMALL)
    found = labels_by_frame(dataset)
    assert set(found) == (covered if covered is not None else set(range(N_FRAMES)))
    assert found == {frame: EXPECTED[frame] for frame in found}
    assert found[PIXEL_FRAME] == 1  # the single pixel, gone from the 8x8 mask
    item = dataset[0]
    assert item.gt_mask.shape[-2:] == SMALL  # gt_mask as anomalib gives it: resized, for the pixel metrics


# ---------------------------------------------------------------------------------------------- UCSD
@pytest.fixture(scope="module")
def ucsd_root(tmp_path_factory) -> Path:
    """A hand-written UCSDped layout: one training and one test video of 10 frames, the test masks above."""
    root = tmp_path_factory.mktemp("ucsd")
    rng = np.random.default_rng(0)
    for split, name in (("Train", "Train001"), ("Test", "Test001")):
        folder = root / "tiny" / split / name
        folder.mkdir(parents=True)
        for t in range(N_FRAMES):
            Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)).save(folder / f"{t + 1:03d}.tif")
    gt = root / "tiny" / "Test" / "Test001_gt"
    gt.mkdir()
    for t, mask in enumerate(anomaly_masks()):
        Image.fromarray(mask * 255).save(gt / f"{t + 1:03d}.bmp")
    return root


def ucsd(root: Path, **options):
    from anomalib_vadproto import LocalUCSDped

    datamodule = LocalUCSDped(root=root, category="tiny", **{"frames_between_clips": 1, "num_workers": 0, **options})
    datamodule.setup()
    return datamodule


def test_anomalib_loses_the_single_pixel_label(ucsd_root) -> None:
    """The bug this guards against: anomalib's own dataset labels the frame normal at 8x8 (normal at full size)."""
    from anomalib.data.datasets import UCSDpedDataset
    from anomalib.data.utils import Split

    dataset = UCSDpedDataset(root=ucsd_root, category="tiny", split=Split.TEST, clip_length_in_frames=1,
                             frames_between_clips=1)  # fmt: skip
    assert labels_by_frame(dataset) == EXPECTED
    dataset.augmentations = Resize(SMALL)
    assert labels_by_frame(dataset)[PIXEL_FRAME] == 0


@pytest.mark.parametrize("cache_frames", [False, True])
@pytest.mark.parametrize(
    ("clip_length", "target", "covered"),
    [
        (1, "last", set(range(N_FRAMES))),
        (3, "last", set(range(2, N_FRAMES))),
        (3, "first", set(range(N_FRAMES - 2))),
        (3, "mid", set(range(1, N_FRAMES - 1))),
        (3, "all", set(range(N_FRAMES))),
    ],
)
def test_ucsd_labels_come_from_full_resolution_masks(ucsd_root, cache_frames, clip_length, target, covered) -> None:
    datamodule = ucsd(ucsd_root, cache_frames=cache_frames, clip_length_in_frames=clip_length, target_frame=target)
    check_labels(datamodule.test_data, covered)
    check_labels(datamodule.val_data, covered)  # same_as_test: a deep copy of the test split
    if target == "all" and clip_length > 1:
        assert datamodule.test_data[0].gt_label.shape == (clip_length,)
    else:
        assert datamodule.test_data[0].gt_label.ndim == 0


def test_ucsd_labels_through_the_model_transform(ucsd_root) -> None:
    """The bug's path: ``setup`` appends the model's ``Resize`` (its pre-processor's transform) to the augmentations."""
    datamodule = ucsd(ucsd_root, clip_length_in_frames=3)
    model = SimpleNamespace(pre_processor=SimpleNamespace(transform=Resize(SMALL)))
    datamodule.trainer = SimpleNamespace(model=model)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.gt_mask.shape[-2:] == SMALL
    labels = dict(zip(batch.frames.tolist(), batch.gt_label.tolist(), strict=True))
    assert labels == {frame: EXPECTED[frame] for frame in labels} and labels[PIXEL_FRAME] == 1


def test_ucsd_labels_match_anomalibs_at_full_resolution(synthetic_root) -> None:
    """Without a resize, every item's label (shape, dtype, value) is anomalib's, for every target frame."""
    from anomalib.data.datasets import UCSDpedDataset
    from anomalib.data.utils import Split

    for target in VideoTargetFrame:
        ours = ucsd_datamodule(synthetic_root, target).test_data
        theirs = UCSDpedDataset(root=synthetic_root, category="synthetic", split=Split.TEST, clip_length_in_frames=4,
                                frames_between_clips=2, target_frame=target)  # fmt: skip
        assert len(ours) == len(theirs) > 0
        labels = [(ours[i].gt_label, theirs[i].gt_label) for i in range(len(ours))]
        assert all(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) for a, b in labels), target
        assert any(int(a.max()) == 1 for a, _ in labels)


def ucsd_datamodule(root: Path, target: VideoTargetFrame):
    from anomalib_vadproto import LocalUCSDped

    datamodule = LocalUCSDped(root=root, category="synthetic", clip_length_in_frames=4, frames_between_clips=2,
                              target_frame=target, num_workers=0)  # fmt: skip
    datamodule.setup()
    return datamodule


def test_labels_are_computed_once_per_video_and_filled_for_workers(ucsd_root) -> None:
    from anomalib_vadproto.data.clips import ClipReaderMixin

    datamodule = ucsd(ucsd_root, cache_frames=True, clip_length_in_frames=3, num_workers=1)
    indexer = datamodule.test_data.indexer
    assert isinstance(indexer, ClipReaderMixin)
    assert set(indexer._video_labels) == {0}  # filled at setup: the workers inherit them
    assert indexer._video_labels[0].tolist() == [bool(EXPECTED[f]) for f in range(N_FRAMES)]
    assert datamodule.train_data.indexer._video_labels == {0: None}  # training videos have no masks


# ---------------------------------------------------------------------------------------------- Avenue
@pytest.mark.parametrize(("mask_format", "cache_frames"), [("mat", False), ("png", False), ("mat", True)])
def test_avenue_labels_come_from_full_resolution_masks(tmp_path, mask_format, cache_frames) -> None:
    from anomalib_vadproto import LocalAvenue
    from anomalib_vadproto.data.synthetic_video import _write_mat_masks, make_synthetic_avenue

    root = make_synthetic_avenue(tmp_path / "avenue", n_train=1, n_test=1, n_frames=N_FRAMES, height=HEIGHT,
                                 width=WIDTH, mask_format=mask_format)  # fmt: skip
    labels = root / "ground_truth_demo" / "testing_label_mask"
    if mask_format == "mat":
        _write_mat_masks(labels / "1_label.mat", anomaly_masks())
    else:
        for t, mask in enumerate(anomaly_masks()):
            Image.fromarray(mask).save(labels / "1_label" / f"{t:03d}.png")
    datamodule = LocalAvenue(root=root, gt_dir=root / "ground_truth_demo", clip_length_in_frames=2,
                             frames_between_clips=1, num_workers=0, cache_frames=cache_frames)  # fmt: skip
    datamodule.setup()
    check_labels(datamodule.test_data, set(range(1, N_FRAMES)))


# ---------------------------------------------------------------------------------------------- ShanghaiTech
@pytest.mark.parametrize("cache_frames", [False, True])
def test_shanghaitech_labels_come_from_full_resolution_masks(tmp_path, cache_frames) -> None:
    from anomalib_vadproto import LocalShanghaiTech
    from anomalib_vadproto.data.synthetic_video import make_synthetic_shanghaitech

    root = make_synthetic_shanghaitech(tmp_path / "sht", scenes=(1,), n_train=1, n_test=1, n_frames=N_FRAMES,
                                       height=HEIGHT, width=WIDTH)  # fmt: skip
    np.save(root / "testing" / "test_pixel_mask" / "01_0001.npy", anomaly_masks())
    datamodule = LocalShanghaiTech(root=root, scene=1, clip_length_in_frames=1, frames_between_clips=1,
                                   num_workers=0, cache_frames=cache_frames)  # fmt: skip
    datamodule.setup()
    check_labels(datamodule.test_data)


# ---------------------------------------------------------------------------------------------- VideoFolder
@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> Path:
    """A ``VideoFolder`` whose one test video has masks only (``test_01_mask.npy``): the masks above."""
    from anomalib_vadproto.data.synthetic_video import make_synthetic_video_folder

    root = make_synthetic_video_folder(tmp_path_factory.mktemp("folder"), n_train=2, n_frames=N_FRAMES, height=HEIGHT,
                                       width=WIDTH, label_forms=("mask_npy",))  # fmt: skip
    np.save(root / "ground_truth" / "test_01_mask.npy", anomaly_masks())
    return root


def video_folder(root: Path, **options):
    from anomalib_vadproto import VideoFolder

    datamodule = VideoFolder(root=root, **{"num_workers": 0, "frames_between_clips": 1, **options})
    datamodule.setup()
    return datamodule


@pytest.mark.parametrize("cache_frames", [False, True])
def test_video_folder_labels_come_from_full_resolution_masks(folder_root, cache_frames) -> None:
    datamodule = video_folder(folder_root, clip_length_in_frames=3, cache_frames=cache_frames)
    assert datamodule.test_data.task.value == "segmentation"
    check_labels(datamodule.test_data, set(range(2, N_FRAMES)))


def test_video_folder_image_size_keeps_the_recorded_labels(folder_root) -> None:
    """``image_size`` resizes the stored frames and masks (nearest), the labels stay the recording's."""
    datamodule = video_folder(folder_root, clip_length_in_frames=1, image_size=[8, 8], cache_frames=True)
    dataset = datamodule.test_data
    assert dataset[PIXEL_FRAME].gt_mask.shape[-2:] == SMALL and not dataset[PIXEL_FRAME].gt_mask.any()
    check_labels(dataset)


def test_video_folder_roi_labels_from_the_cropped_masks(folder_root, tmp_path) -> None:
    """With a ``roi`` the masks' labels are the cropped masks', whether or not every test video has masks."""
    roi = [8, 0, 40, 32]  # x from 8: the single pixel (column 7) is outside
    expected = {**EXPECTED, PIXEL_FRAME: 0}
    masks_only = labels_by_frame(video_folder(folder_root, clip_length_in_frames=1, roi=roi).test_data)
    assert masks_only == expected
    # a second test video with frame labels only: the masks give frame labels at setup instead
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(folder_root, mixed)
    shutil.copy(mixed / "test" / "test_01.mp4", mixed / "test" / "test_02.mp4")
    (mixed / "ground_truth" / "test_02.csv").write_text("start,end\n")
    dataset = video_folder(mixed, clip_length_in_frames=1, roi=roi).test_data
    assert dataset.task.value == "classification"
    items = [dataset[i] for i in range(len(dataset))]
    first = {int(item.frames): int(item.gt_label) for item in items if Path(item.video_path).stem == "test_01"}
    assert first == expected
    full = video_folder(mixed, clip_length_in_frames=1).test_data
    first = {int(full[i].frames): int(full[i].gt_label) for i in range(len(full)) if "test_01" in full[i].video_path}
    assert first == EXPECTED
