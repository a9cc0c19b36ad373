"""Datamodules that check local data instead of trying to download it.

anomalib's ``UCSDped`` starts a download whenever ``root/<category>`` is missing; offline, or with
a typo in the path, that surfaces as a network error. :class:`LocalUCSDped` is the same datamodule
(same arguments, same layout, same batches) that never downloads and says exactly what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from anomalib.data import UCSDped
from anomalib.data.datasets.base.video import VideoTargetFrame
from anomalib.data.datasets.video.ucsd_ped import UCSDpedClipsIndexer, UCSDpedDataset
from anomalib.data.utils import Split, ValSplitMode

from anomalib_vadproto.data.clips import (
    ClipReaderMixin,
    FrameLabelsMixin,
    enum_arguments,
    fill_caches_for_workers,
    read_image_files,
)
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.data.validation import HeldOutVideosMixin
from anomalib_vadproto.errors import DatasetLayoutError

__all__ = [
    "CachedUCSDpedClipsIndexer",
    "LocalUCSDped",
    "LocalUCSDpedDataset",
    "check_ucsd_ground_truth",
    "check_ucsd_layout",
]


def check_ucsd_layout(root: Path | str, category: str) -> Path:
    """Check ``root/category`` holds the UCSDped layout anomalib reads, and return it.

    Every test video folder (a folder of ``.tif`` frames under ``Test/``, as anomalib lists them) needs
    its ground-truth folder ``<video>_gt`` with one ``.bmp`` mask per frame: anomalib reads the mask of
    every test clip and would otherwise stop with an ``IndexError`` in the middle of testing.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming the first missing path and how to create
            the data, or the first test video whose masks are missing or do not match its frames.

    """
    folder = Path(root) / category
    how = (
        "Create synthetic data with `anomalib-vadproto make-synthetic <root>` (category 'synthetic'), or lay out"
        " UCSD Ped2 as <root>/<category>/{Train,Test}/<video>/NNN.tif frames, with one NNN.bmp mask per test"
        " frame in <root>/<category>/Test/<video>_gt/ (e.g. Test/Test001_gt/001.bmp)."
    )
    if not folder.is_dir():
        msg = f"No dataset at {folder}: expected {folder}/Train/Train001/*.tif and {folder}/Test/Test001/*.tif. {how}"
        raise DatasetLayoutError(msg)
    for split in ("Train", "Test"):
        videos = [p for p in (folder / split).glob(f"{split}*") if p.is_dir() and not p.name.endswith("_gt")]
        if not videos or not any(any(v.glob("*.tif")) for v in videos):
            msg = f"{folder / split} has no video folders of .tif frames ({split}001/001.tif, ...). {how}"
            raise DatasetLayoutError(msg)
    check_ucsd_ground_truth(folder / "Test")
    return folder


def check_ucsd_ground_truth(test_folder: Path) -> None:
    """Check every test video folder of ``test_folder`` has a ``<video>_gt`` folder with one ``.bmp`` per frame.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming the first video (in sorted order) whose
            ground-truth folder is missing or holds another number of masks than it has frames.

    """
    # The test videos as anomalib's make_ucsd_dataset lists them: every sub-folder holding .tif frames.
    videos = sorted(p for p in test_folder.iterdir() if p.is_dir() and any(p.glob("*.tif")))
    for video in videos:
        frames = sum(1 for _ in video.glob("*.tif"))
        ground_truth = video.with_name(f"{video.name}_gt")
        if not ground_truth.is_dir():
            msg = (
                f"Test video {video} has no ground-truth folder {ground_truth} (one .bmp mask per frame, {frames}"
                f" here), which anomalib needs to test. Add the masks there, or move {video.name} out of {test_folder}."
            )
            raise DatasetLayoutError(msg)
        masks = sum(1 for _ in ground_truth.glob("*.bmp"))
        if masks != frames:
            msg = (
                f"{ground_truth} holds {masks} .bmp masks for the {frames} .tif frames of {video}: every test frame"
                " needs its mask (anomalib pairs them in sorted order). Complete the masks or remove the extra ones."
            )
            raise DatasetLayoutError(msg)


class CachedUCSDpedClipsIndexer(ClipReaderMixin, UCSDpedClipsIndexer):
    """``UCSDpedClipsIndexer`` that decodes each video folder once and cuts clips from memory.

    anomalib's indexer lists the folder and decodes every frame of every clip, so with stride-1 clips
    of ``T`` frames each frame is decoded ``T`` times per epoch; on a 2-core CPU that decoding is a
    quarter of a lite training epoch. Here frames are kept as ``uint8`` (Ped2: ~1.2 GB for train and
    test) and converted exactly as :func:`anomalib.data.utils.image.read_image` does, so batches are
    bit-identical. Masks are cached the same way.
    """

    def _read(self, folder: str, pattern: str, mode: str, frames: torch.Tensor) -> torch.Tensor:
        """Read files ``frames`` of ``folder`` (sorted ``pattern``): from the cache, else only those files."""
        if self.cache is None:
            files = sorted(Path(folder).glob(pattern))
            return read_image_files([files[int(i)] for i in frames], mode)
        video = self.cached((folder, pattern), lambda: read_image_files(sorted(Path(folder).glob(pattern)), mode))
        return video[frames]

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the ``.tif`` frames of the video folder."""
        return self._read(self.video_paths[video_idx], "*.tif", "RGB", frames)

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the ``.bmp`` masks of the ``_gt`` folder."""
        return self._read(self.mask_paths[video_idx], "*.bmp", "L", frames)[:, 0]


class LocalUCSDpedDataset(FrameLabelsMixin, UCSDpedDataset):
    """anomalib's ``UCSDpedDataset``, each frame labelled from its full-resolution mask (:class:`FrameLabelsMixin`)."""


class LocalUCSDped(HeldOutVideosMixin, DeviceClipsMixin, UCSDped):
    """anomalib's :class:`~anomalib.data.UCSDped` for data already on disk: never downloads.

    Takes ``UCSDped``'s arguments. ``prepare_data`` checks the layout and raises a
    ``FileNotFoundError`` naming what is missing. Each test frame is labelled from its full-resolution
    mask (:class:`LocalUCSDpedDataset`), not from the mask resized to the model's ``image_size``.

    Args:
        cache_frames: Decode each video once and keep its frames in memory
            (:class:`CachedUCSDpedClipsIndexer`); same batches, far less decoding. With
            ``num_workers > 0`` every video is decoded at setup, in the main process, and the worker
            processes share those frames (:func:`fill_caches_for_workers`).
        device_clips: Keep the decoded frames of the training split as one ``uint8`` tensor on the
            training device and assemble each training batch there by index
            (:mod:`~anomalib_vadproto.data.device_clips`): no per-clip Python work and no copy of
            pixels from the host per step; same batches as the frame cache under the same seed. The
            train loader then yields clip indices, runs without worker processes, and Lightning's
            ``transfer_batch_to_device`` hook (this datamodule's) turns them into the ``VideoBatch``.
            Validation and test batches are unchanged. Needs every training video in one frame size
            and the training split in device memory (Ped2: 0.7 GB); random augmentations draw once
            per batch.
        target_frame: Frame of the clip whose label and mask are used: a ``VideoTargetFrame``, its value
            (``"last"``, as the shipped configs write it) or its name (``"LAST"``).
        val_split_mode: How the validation set is made (a ``ValSplitMode``, its value or name): ``"from_train"``
            validates on whole held-out training videos, never trained on (:mod:`~anomalib_vadproto.data.validation`).
        val_videos: With ``from_train``, how many training videos to hold out, or their names.
        **kwargs: ``UCSDped``'s other arguments.

    """

    def __init__(
        self,
        cache_frames: bool = False,
        target_frame: VideoTargetFrame | str = VideoTargetFrame.LAST,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        device_clips: bool = False,
        val_videos: int | list[str] | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(**enum_arguments(target_frame, val_split_mode), **kwargs)
        self.cache_frames = cache_frames
        self.device_clips = device_clips
        self.val_videos = val_videos

    def prepare_data(self) -> None:
        """Check the local layout (no download)."""
        check_ucsd_layout(self.root, self.category)

    def _setup(self, _stage: str | None = None) -> None:
        # anomalib's UCSDped._setup, with the datasets labelling frames from the full-resolution masks.
        common = {
            "clip_length_in_frames": self.clip_length_in_frames,
            "frames_between_clips": self.frames_between_clips,
            "target_frame": self.target_frame,
            "root": self.root,
            "category": self.category,
        }
        self.train_data = LocalUCSDpedDataset(split=Split.TRAIN, **common)
        self.test_data = LocalUCSDpedDataset(split=Split.TEST, **common)
        # device_clips reads whole training videos through the caching indexer (its cache is emptied
        # as the device tensor is filled).
        datasets = (self.train_data, self.test_data) if self.cache_frames else ()
        for dataset in datasets or ((self.train_data,) if self.device_clips else ()):
            dataset.indexer_cls = CachedUCSDpedClipsIndexer
            dataset._setup_clips()  # noqa: SLF001
        fill_caches_for_workers(self)
