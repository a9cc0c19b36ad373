"""CUHK Avenue, decoded with PyAV: no torchcodec, no download.

anomalib 2.7's ``Avenue`` reads ``.avi`` files through torchvision's ``VideoClips``, which needs
torchcodec and system FFmpeg libraries under torchvision 0.29. :class:`LocalAvenue` is the same
datamodule (a subclass: same arguments, layout and ``VideoBatch`` clips) with the files decoded by
PyAV (:mod:`.video_io`), which bundles its own FFmpeg. It also fixes two sharp edges of anomalib's
reader:

* ``.mat`` masks are returned as tensors (anomalib's indexer returns NumPy arrays, which crash the
  dataset unless the masks were converted to PNG folders after a download);
* the ``root/**/*.avi`` search counts ``ground_truth_demo/testing_videos`` (inside the default
  ``gt_dir``) as a second copy of every test video; duplicates are dropped.

A missing dataset raises ``FileNotFoundError`` naming what is expected (nothing is downloaded); a
video file that cannot be decoded raises :class:`~.video_io.VideoReadError` naming the file. Frames
are numbered as torchcodec numbers them, so clips cover the same frames as with anomalib's class.

Example:
    >>> from anomalib_vadproto import LocalAvenue  # doctest: +SKIP
    >>> avenue = LocalAvenue(root="datasets/avenue", gt_dir="datasets/avenue/ground_truth_demo",
    ...                      clip_length_in_frames=5, num_workers=0)  # doctest: +SKIP

"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anomalib.data import Avenue
from anomalib.data.datasets.base.video import AnomalibVideoDataset, VideoTargetFrame
from anomalib.data.datasets.video.avenue import make_avenue_dataset
from anomalib.data.utils import Split, ValSplitMode
from torchvision.transforms.v2 import Transform

from anomalib_vadproto.data.clips import (
    FrameLabelsMixin,
    PyAVClipsIndexer,
    check_mask_count,
    enum_arguments,
    fill_caches_for_workers,
    read_image_files,
)
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.data.validation import HeldOutVideosMixin
from anomalib_vadproto.errors import DatasetLayoutError

__all__ = [
    "AvenueVideoClipsIndexer",
    "LocalAvenue",
    "LocalAvenueDataset",
    "check_avenue_layout",
    "load_avenue_mat_masks",
    "make_local_avenue_samples",
]

#: How to make synthetic data in a layout, for the layout errors.
SYNTHETIC_HINT = "For synthetic data in this layout: python -m anomalib_vadproto.data.synthetic_video {} <root>."


def load_avenue_mat_masks(path: str | Path) -> torch.Tensor:
    """Read an Avenue ``N_label.mat`` (``volLabel``, a cell array of ``(H, W)`` masks) as bool ``(N, H, W)``.

    Raises:
        ValueError: If the file cannot be read or holds no ``volLabel`` cell array.

    """
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except (NotImplementedError, ValueError, OSError, TypeError) as exc:
        msg = f"Cannot read Avenue masks {path}: {exc}"
        raise ValueError(msg) from exc
    volume = content.get("volLabel")
    if not isinstance(volume, np.ndarray) or volume.dtype.kind != "O" or volume.size == 0:
        msg = f"{path} holds no `volLabel` cell array of per-frame masks"
        raise ValueError(msg)
    return torch.from_numpy(np.stack([np.asarray(mask) for mask in volume.reshape(-1)]) > 0)


class AvenueVideoClipsIndexer(PyAVClipsIndexer):
    """Avenue clips from ``.avi`` files (PyAV) with masks from ``N_label/`` PNG folders or ``N_label.mat``.

    As anomalib's ``AvenueClipsIndexer``, a PNG folder next to the ``.mat`` file (anomalib's
    conversion) is preferred, its files taken in sorted order; masks are ``> 0`` of what is stored,
    returned as tensors in both cases. A ``.mat`` volume is loaded once per video and kept (the
    whole dataset's with ``cache_frames``, else the last one read).
    """

    _last_masks: tuple[str, torch.Tensor] | None = None

    def _mask_folder_files(self, folder: Path) -> list[Path]:
        return sorted(folder.glob("*"))

    def _mat_volume(self, path: Path) -> torch.Tensor:
        if self.cache is not None:
            return self.cached(("masks", str(path)), functools.partial(load_avenue_mat_masks, path))
        if self._last_masks is None or self._last_masks[0] != str(path):
            self._last_masks = (str(path), load_avenue_mat_masks(path))
        return self._last_masks[1]

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the clip's masks (``(T, H, W)`` bool or 0/1)."""
        mat = Path(self.mask_paths[video_idx])
        folder = mat.with_suffix("")
        video = self.video_paths[video_idx]
        if folder.is_dir():
            files = self._mask_folder_files(folder)
            check_mask_count(folder, len(files), video, frames)
            if self.cache is not None:
                volume = self.cached(("masks", str(folder)), lambda: read_image_files(files, "L")[:, 0])
                return volume[frames]
            return read_image_files([files[int(i)] for i in frames], "L")[:, 0]
        if mat.is_file():
            volume = self._mat_volume(mat)
            check_mask_count(mat, len(volume), video, frames)
            return volume[frames]
        msg = f"No ground-truth masks for {video}: expected {mat} or the PNG folder {folder}/"
        raise FileNotFoundError(msg)


def check_avenue_layout(root: Path | str, gt_dir: Path | str) -> tuple[Path, Path]:
    """Check that ``root`` and ``gt_dir`` hold the CUHK Avenue layout anomalib reads; return them.

    Expected: ``root/training_videos/NN.avi``, ``root/testing_videos/NN.avi`` and, per test video
    ``NN.avi``, ``gt_dir/testing_label_mask/N_label.mat`` or a ``N_label/`` folder of PNG masks.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming what is missing.

    """
    root, gt_dir = Path(root), Path(gt_dir)
    expected = (
        f"expected {root}/training_videos/01.avi ..., {root}/testing_videos/01.avi ... and, per test video,"
        f" {gt_dir}/testing_label_mask/1_label.mat (or a 1_label/ folder of PNG masks)"
    )
    how = (
        "Unpack CUHK Avenue (Avenue_Dataset.zip and ground_truth_demo.zip from the authors' page) there. "
        + SYNTHETIC_HINT.format("avenue")
    )
    if not root.is_dir():
        msg = f"No Avenue dataset at {root}: {expected}. {how}"
        raise DatasetLayoutError(msg)
    for folder in ("training_videos", "testing_videos"):
        if not any((root / folder).glob("*.avi")):
            msg = f"{root / folder} has no .avi videos: {expected}. {how}"
            raise DatasetLayoutError(msg)
    labels = gt_dir / "testing_label_mask"
    missing = []
    for video in sorted((root / "testing_videos").glob("*.avi")):
        stem = video.stem.lstrip("0") + "_label"  # anomalib's naming: 01.avi -> 1_label.mat
        if not ((labels / f"{stem}.mat").is_file() or (labels / stem).is_dir()):
            missing.append(f"{stem}.mat")
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        msg = f"No ground-truth masks in {labels} for {len(missing)} test video(s) ({shown}): {expected}. {how}"
        raise DatasetLayoutError(msg)
    return root, gt_dir


def make_local_avenue_samples(root: Path, gt_dir: Path, split: Split | str | None = None) -> pd.DataFrame:
    """Return anomalib's Avenue samples without the duplicates its ``root/**/*.avi`` search can produce."""
    samples = make_avenue_dataset(root, gt_dir, split)
    task = samples.attrs.get("task")
    samples = samples.drop_duplicates(subset="image_path").reset_index(drop=True)
    samples.attrs["task"] = task
    return samples


class LocalAvenueDataset(FrameLabelsMixin, AnomalibVideoDataset):
    """CUHK Avenue clips decoded with PyAV (anomalib's ``AvenueDataset`` layout and items).

    Each frame is labelled from its full-resolution mask, not from the mask resized by the augmentations
    (:class:`~anomalib_vadproto.data.clips.FrameLabelsMixin`).

    Args:
        split: ``Split.TRAIN`` or ``Split.TEST``.
        root: Dataset root (holds ``training_videos/`` and ``testing_videos/``).
        gt_dir: Ground-truth root (holds ``testing_label_mask/``).
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        augmentations: Augmentations applied to the clips.
        target_frame: Frame of the clip whose label and mask are returned.
        cache_frames: Decode each video once and keep it in memory.

    """

    def __init__(
        self,
        split: Split,
        root: Path | str,
        gt_dir: Path | str,
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        augmentations: Transform | None = None,
        target_frame: VideoTargetFrame = VideoTargetFrame.LAST,
        cache_frames: bool = False,
    ) -> None:
        super().__init__(
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            target_frame=target_frame,
            augmentations=augmentations,
        )
        self.root, self.gt_dir, self.split = Path(root), Path(gt_dir), split
        self.indexer_cls = functools.partial(AvenueVideoClipsIndexer, cache_frames=cache_frames)
        self.samples = make_local_avenue_samples(self.root, self.gt_dir, self.split)


class LocalAvenue(HeldOutVideosMixin, DeviceClipsMixin, Avenue):
    """anomalib's :class:`~anomalib.data.Avenue` decoded with PyAV, for data already on disk.

    Same arguments, layout and batches as ``Avenue``; needs no torchcodec, never downloads
    (``prepare_data`` raises ``FileNotFoundError`` naming what is missing), reads ``.mat`` masks as
    tensors and ignores the copies of the test videos under ``ground_truth_demo/testing_videos``.

    Args:
        cache_frames: Decode each video once and keep it in memory (full-resolution Avenue: about
            10 GB per split, so for small data or reduced copies). With ``num_workers > 0`` every
            video is decoded at setup and the workers share the frames (``fill_caches_for_workers``).
        device_clips: Keep the training videos' frames as one ``uint8`` tensor on the training device
            and assemble each training batch there by index (:mod:`~anomalib_vadproto.data.device_clips`):
            same batches as the frame cache under the same seed, no per-clip Python work, no copy of
            pixels per step; the train loader yields clip indices and runs without workers.
            Validation and test are unchanged. Full-resolution Avenue training frames take about 10 GB
            of device memory.
        val_split_mode: How the validation set is made (a ``ValSplitMode``, its value or name): ``"from_train"``
            validates on whole held-out training videos, never trained on (:mod:`~anomalib_vadproto.data.validation`).
        val_videos: With ``from_train``, how many training videos to hold out, or their names.
        target_frame: Frame of the clip whose label and mask are used: a ``VideoTargetFrame``, its value
            (``"last"``) or its name.
        **kwargs: ``Avenue``'s other arguments (``root``, ``gt_dir``, ``clip_length_in_frames``, ...).

    """

    def __init__(
        self,
        cache_frames: bool = False,
        device_clips: bool = False,
        target_frame: VideoTargetFrame | str = VideoTargetFrame.LAST,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        val_videos: int | list[str] | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(**enum_arguments(target_frame, val_split_mode), **kwargs)
        self.cache_frames = cache_frames
        self.device_clips = device_clips
        self.val_videos = val_videos

    def prepare_data(self) -> None:
        """Check the local layout (no download)."""
        check_avenue_layout(self.root, self.gt_dir)

    def _setup(self, _stage: str | None = None) -> None:
        check_avenue_layout(self.root, self.gt_dir)
        common = {
            "root": self.root,
            "gt_dir": self.gt_dir,
            "clip_length_in_frames": self.clip_length_in_frames,
            "frames_between_clips": self.frames_between_clips,
            "target_frame": self.target_frame,
            "cache_frames": self.cache_frames,
        }
        self.train_data = LocalAvenueDataset(split=Split.TRAIN, **common)
        self.test_data = LocalAvenueDataset(split=Split.TEST, **common)
        fill_caches_for_workers(self)
