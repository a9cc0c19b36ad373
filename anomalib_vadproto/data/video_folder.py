"""Your own recordings: a video datamodule over a plain folder of videos (:class:`VideoFolder`).

Layout (every folder name can be changed: ``train_dir``, ``test_dir``, ``gt_dir``)::

    root/
    ├── train/                    normal footage only: what the model learns as normal
    │   ├── cam1_monday.mp4       any container and codec PyAV (FFmpeg) decodes: mp4, avi, mkv, mov, ...
    │   ├── cam1_tuesday.avi
    │   └── cam1_wednesday/       or a folder of frames (png, jpg, tif, bmp), in name order
    ├── test/                     the videos to score (same forms)
    │   ├── cam1_friday.mp4
    │   └── cam1_saturday.mp4
    └── ground_truth/             optional: per test video, by its name without the extension
        ├── cam1_friday.csv       anomalous frame ranges, one per line: 120-180 or 120,180
        ├── cam1_saturday.npy     or one 0/1 label per frame
        └── cam1_saturday_mask.mp4   and/or pixel masks (see below)

**Ground truth** for a test video ``<stem>`` (``test/<stem>.mp4`` or ``test/<stem>/``):

* frame labels: ``<stem>.npy`` (a 1-D array, one 0/1 per frame), or ``<stem>.csv`` / ``<stem>.txt``
  listing the anomalous frames as ranges, one per line: ``120-180``, ``120,180`` (``start,end``
  rows; a header line such as ``start,end`` is skipped), ``120 180`` or a single frame ``120``.
  **Frames are numbered from 0 and both ends are included**: ``120-180`` marks the 61 frames 120
  to 180. Numbers are frames of the video as recorded (before ``fps`` subsampling). ``#`` starts a
  comment; an empty file marks a video with no anomaly;
* pixel masks: ``<stem>_mask.<video>`` (a mask video: white, >= 128, is anomalous), a folder
  ``<stem>_mask/`` of mask images (non-zero is anomalous; JPEGs >= 128), ``<stem>_mask.npy`` (or a
  3-D ``<stem>.npy``) of shape ``(frames, H, W)``, or ``<stem>_mask.mat`` (a ``(frames, H, W)`` or
  ``(H, W, frames)`` array, or Avenue's ``volLabel`` cell array), one mask per frame at the video's
  frame size.

Frame labels, where given, set each frame's label (``gt_label``); otherwise a frame is anomalous
when its mask has an anomalous pixel, at the recording's resolution (cropped to the ``roi``, never
resized, so no small anomaly is lost to ``image_size`` or the model's resize). Masks also give the
pixel metrics when every test video has them (when only some have, their frame labels are taken from
them and no pixel metric is computed).
Either every test video has ground truth, or none has: a test set without any runs as prediction
only (``anomalib test`` scores every frame; no AUC can be computed and none is logged).

**Options for real cameras**, applied identically to training and test videos (and to labels and
masks):

* ``fps``: the frame rate to train and score at. A 30 fps recording with ``fps: 10`` keeps frames 0,
  3, 6, ...: the first frame of every ``1/fps`` seconds, chosen by the frames' timestamps (so a
  variable-rate recording is subsampled evenly in time). Frame folders carry no timestamps: their
  rate is ``folder_fps``. A video recorded at or below ``fps`` keeps every frame;
* ``roi: [x, y, w, h]``: a region of interest in the recording's pixels (``x``, ``y`` of its top-left
  corner), cropped before anything else;
* ``grayscale``: keep one grey channel (ITU-R 601 luma, as PIL's ``convert("L")``); clips still carry
  three (equal) channels, as the models expect, but the frame cache holds one;
* ``image_size``: resize the (cropped) frames to ``[height, width]`` (bilinear, antialiased; masks
  nearest), so the frame cache stays small. The model resizes again to its own ``image_size``.

A model trained on a ``VideoFolder`` keeps its ``fps`` (with ``folder_fps``) and ``roi``
(:meth:`VideoFolder.camera_options`) in its checkpoint and its export, and ``anomalib-vadproto score``
applies them to new footage (the same frames kept, the same crop; :mod:`~anomalib_vadproto.data.camera_options`).

Every video must come out in one frame size: videos of different sizes need ``image_size`` (or a
``roi``, which has one size), else setup stops naming two of the sizes.

Clips follow anomalib's video datamodules (``clip_length_in_frames``, ``frames_between_clips``,
``target_frame``); every clip's ``video_path`` names its video, so the papers' per-video protocol
normalises each test video on its own; frame numbers (``frames``) count the kept frames.
``cache_frames``, ``device_clips`` and ``val_split_mode: from_train`` (whole held-out training
videos, :mod:`~anomalib_vadproto.data.validation`) work as in
:class:`~anomalib_vadproto.LocalUCSDped`.

Mistakes stop setup with one line (:class:`~anomalib_vadproto.errors.DatasetLayoutError`, or
:class:`~anomalib_vadproto.errors.InvalidArgumentError` for an option): a missing or empty folder, a
file PyAV cannot decode, labels or masks whose count differs from the video's frames, masks of
another size, ranges beyond the video, videos of different sizes, ground truth for only some test
videos, two videos of one name.

The code: this module holds the dataset and the datamodule;
:mod:`~anomalib_vadproto.data.video_folder_layout` finds the videos,
:mod:`~anomalib_vadproto.data.video_folder_labels` reads their ground truth and
:mod:`~anomalib_vadproto.data.video_folder_frames` holds the frame transform and the clips (their public
names can be imported from here too).

Example:
    >>> from anomalib_vadproto import VideoFolder  # doctest: +SKIP
    >>> datamodule = VideoFolder(root="my_videos", fps=10, image_size=[240, 320], cache_frames=True)  # doctest: +SKIP

Command line::

    anomalib train --model Mnad --data anomalib_vadproto.VideoFolder --data.root my_videos

"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from anomalib.data.datamodules.base.video import AnomalibVideoDataModule
from anomalib.data.datasets.base.video import AnomalibVideoDataset, VideoTargetFrame
from anomalib.data.utils import Split, ValSplitMode
from torchvision.transforms.v2 import Transform

from anomalib_vadproto.data.camera_options import keep_frames, roi_fits
from anomalib_vadproto.data.clips import FrameLabelsMixin, enum_arguments, fill_caches_for_workers
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.data.validation import HeldOutVideosMixin
from anomalib_vadproto.data.video_folder_frames import FrameTransform, VideoFolderClipsIndexer
from anomalib_vadproto.data.video_folder_labels import (
    GroundTruth,
    find_ground_truth,
    load_mat_masks,
    parse_frame_ranges,
    read_mask_frames,
    read_mask_labels,
)
from anomalib_vadproto.data.video_folder_layout import _HOW, VideoSource, read_video_frames, scan_video_folder
from anomalib_vadproto.errors import DatasetLayoutError, InvalidArgumentError

logger = logging.getLogger(__name__)

__all__ = [
    "FrameTransform",
    "GroundTruth",
    "VideoFolder",
    "VideoFolderClipsIndexer",
    "VideoFolderDataset",
    "VideoSource",
    "find_ground_truth",
    "keep_frames",
    "load_mat_masks",
    "parse_frame_ranges",
    "read_mask_frames",
    "read_video_frames",
    "scan_video_folder",
]


# ============================================================================================ dataset
class VideoFolderDataset(FrameLabelsMixin, AnomalibVideoDataset):
    """The clips of one split of a :class:`VideoFolder` (anomalib's ``VideoItem``s).

    ``gt_label`` comes from the video's frame labels where it has them, else from its masks at the
    recording's size (cropped to the ``roi``, never resized: :class:`~anomalib_vadproto.data.clips.FrameLabelsMixin`).

    Args:
        split: ``Split.TRAIN`` or ``Split.TEST``.
        sources: The split's videos.
        truths: The test videos' ground truth, by path (empty for training).
        use_masks: Return pixel masks (every test video has them).
        transform: The frame transform.
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        target_frame: Frame of the clip whose label and mask are returned.
        augmentations: Augmentations applied to the clips.
        cache_frames: Decode each video once and keep it in memory.
        root: The folder's root (the samples' ``root`` column).

    """

    def __init__(
        self,
        split: Split,
        sources: Sequence[VideoSource],
        truths: Mapping[str, GroundTruth],
        use_masks: bool,
        transform: FrameTransform,
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        target_frame: VideoTargetFrame = VideoTargetFrame.LAST,
        augmentations: Transform | None = None,
        cache_frames: bool = False,
        root: Path | str = "",
    ) -> None:
        super().__init__(
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            target_frame=target_frame,
            augmentations=augmentations,
        )
        self.split = split
        self.indexer_cls = functools.partial(
            VideoFolderClipsIndexer,
            sources={s.path: s for s in sources},
            truths=truths,
            transform=transform,
            cache_frames=cache_frames,
        )
        rows = [
            (
                str(root),
                Path(s.path).parent.name,
                s.path,
                split.value,
                truths[s.path].masks if use_masks and s.path in truths else "",
            )
            for s in sources
        ]
        samples = pd.DataFrame(rows, columns=["root", "folder", "image_path", "split", "mask_path"])
        samples.attrs["task"] = "segmentation" if use_masks else "classification"
        self.samples = samples


# ============================================================================================ datamodule
def _as_pair(name: str, value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in values):
        msg = f"{name} must be [height, width] (or one number), each at least 8; got {value!r}"
        raise InvalidArgumentError(msg)
    return (values[0], values[1])


def _as_roi(roi: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    if roi is None:
        return None
    values = list(roi) if isinstance(roi, Sequence) and not isinstance(roi, str) else []
    good = len(values) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if not good or min(values[:2]) < 0 or min(values[2:]) < 8:
        msg = f"roi must be [x, y, w, h] in the recording's pixels (x, y >= 0; w, h >= 8); got {roi!r}"
        raise InvalidArgumentError(msg)
    return (values[0], values[1], values[2], values[3])


def _as_rate(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10_000:
        msg = f"{name} must be a positive frame rate (frames per second); got {value!r}"
        raise InvalidArgumentError(msg)
    return float(value)


class VideoFolder(HeldOutVideosMixin, DeviceClipsMixin, AnomalibVideoDataModule):
    """A video datamodule over a plain folder of your own recordings (layout and options: module docstring).

    Args:
        root: The folder holding ``train/``, ``test/`` and (optionally) ``ground_truth/``.
        train_dir: Folder of the normal training videos (relative to ``root``, or absolute).
        test_dir: Folder of the test videos.
        gt_dir: Folder of the test videos' ground truth; missing or empty: prediction only.
        clip_length_in_frames: Frames per clip (5 for the models' default configs).
        frames_between_clips: Stride between clip starts.
        target_frame: Frame of the clip whose label and mask are used: a ``VideoTargetFrame``, its
            value (``"last"``) or its name.
        fps: Frame rate to subsample every video to, by timestamps (``None``: every frame).
        folder_fps: Frame rate of frame-folder videos (they carry no timestamps); used with ``fps``.
        roi: Region of interest ``[x, y, w, h]`` in the recordings' pixels, cropped first.
        grayscale: Keep one grey channel (clips still have three equal channels).
        image_size: ``[height, width]`` (or one number) the cropped frames are resized to before caching.
        train_batch_size: Training batch size.
        eval_batch_size: Validation and test batch size.
        num_workers: DataLoader worker processes.
        train_augmentations: Augmentations of the training clips.
        val_augmentations: Augmentations of the validation clips.
        test_augmentations: Augmentations of the test clips.
        augmentations: Augmentations of every split (where the split's own are unset).
        val_split_mode: How the validation set is made (a ``ValSplitMode``, its value or name): ``"from_train"``
            validates on whole held-out training videos, never trained on (:mod:`~anomalib_vadproto.data.validation`).
        val_split_ratio: Share of the training videos held out with ``from_train`` and no ``val_videos``.
        val_videos: With ``from_train``, how many training videos to hold out, or their names.
        seed: Seed of anomalib's random splits (unused by the splits here).
        cache_frames: Decode each video once and keep its transformed frames in memory.
        device_clips: Keep the training frames as one tensor on the training device
            (:mod:`~anomalib_vadproto.data.device_clips`).

    """

    def __init__(
        self,
        root: Path | str = "./datasets/video_folder",
        train_dir: Path | str = "train",
        test_dir: Path | str = "test",
        gt_dir: Path | str = "ground_truth",
        clip_length_in_frames: int = 5,
        frames_between_clips: int = 1,
        target_frame: VideoTargetFrame | str = VideoTargetFrame.LAST,
        fps: float | None = None,
        folder_fps: float = 25.0,
        roi: list[int] | None = None,
        grayscale: bool = False,
        image_size: int | list[int] | None = None,
        train_batch_size: int = 4,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        val_split_ratio: float = 0.5,
        val_videos: int | list[str] | None = None,
        seed: int | None = None,
        cache_frames: bool = False,
        device_clips: bool = False,
    ) -> None:
        enums = enum_arguments(target_frame, val_split_mode)
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_ratio=val_split_ratio,
            seed=seed,
            val_split_mode=enums["val_split_mode"],
        )
        self.root = Path(root)
        self.train_dir, self.test_dir, self.gt_dir = (self.root / folder for folder in (train_dir, test_dir, gt_dir))
        self.clip_length_in_frames = clip_length_in_frames
        self.frames_between_clips = frames_between_clips
        self.target_frame = enums["target_frame"]
        self.fps = _as_rate("fps", fps)
        self.folder_fps = _as_rate("folder_fps", folder_fps) or 25.0
        self.transform = FrameTransform(
            roi=_as_roi(roi), grayscale=bool(grayscale), size=_as_pair("image_size", image_size)
        )
        self.cache_frames = cache_frames
        self.device_clips = device_clips
        self.val_videos = val_videos
        self.category = self.root.resolve().name or "video_folder"
        #: Whether the last setup found ground truth for the test videos (``False``: prediction only).
        self.has_ground_truth: bool | None = None

    def camera_options(self) -> dict[str, Any]:
        """Return the options that deployment must apply to new footage, as training applies them to these videos.

        The models read them at the start of a fit, keep them in their checkpoint and write them into their
        export's metadata; ``anomalib-vadproto score`` then subsamples and crops new recordings alike.

        Returns:
            dict[str, Any]: ``fps`` (``None``: every frame), ``roi`` (``[x, y, w, h]`` or ``None``) and
            ``folder_fps`` (the frame rate of frame folders, which carry no timestamps).

        """
        roi = self.transform.roi
        return {"fps": self.fps, "roi": None if roi is None else list(roi), "folder_fps": self.folder_fps}

    def prepare_data(self) -> None:
        """Check that the folders exist and hold videos (nothing is downloaded)."""
        if not self.root.is_dir():
            msg = f"No video folder at {self.root}: expected {self.train_dir}/<video>.mp4 and {self.test_dir}/. {_HOW}"
            raise DatasetLayoutError(msg)
        for folder, what in ((self.train_dir, "training"), (self.test_dir, "test")):
            if not folder.is_dir():
                msg = f"No {what} folder {folder}: put the {what} videos there (files or folders of frames). {_HOW}"
                raise DatasetLayoutError(msg)

    def _check_sizes(self, sources: Sequence[VideoSource]) -> None:
        roi = self.transform.roi
        if roi is not None:
            x, y, w, h = roi
            for source in sources:
                if not roi_fits(roi, source.size):
                    msg = (
                        f"roi [x={x}, y={y}, w={w}, h={h}] reaches beyond {source.path}, which is"
                        f" {source.size[1]}x{source.size[0]} (width x height)"
                    )
                    raise InvalidArgumentError(msg)
        sizes: dict[tuple[int, int], str] = {}
        for source in sources:
            sizes.setdefault(self.transform.output_size(source.size), source.path)
        if len(sizes) > 1:
            (size_a, path_a), (size_b, path_b) = list(sizes.items())[:2]
            msg = (
                f"The videos differ in frame size ({path_a} is {size_a[1]}x{size_a[0]}, {path_b} is"
                f" {size_b[1]}x{size_b[0]}, width x height): set image_size (e.g. --data.image_size"
                f" '[{size_a[0]},{size_a[1]}]') to resize them all, or a roi"
            )
            raise DatasetLayoutError(msg)

    def _ground_truth(self, tests: Sequence[VideoSource]) -> tuple[dict[str, GroundTruth], bool]:
        """Every test video's ground truth, and whether masks are used (every test video has them)."""
        if not self.gt_dir.is_dir():
            return {}, False
        truths = {source.path: find_ground_truth(self.gt_dir, source) for source in tests}
        missing = [Path(path).name for path, truth in truths.items() if truth.empty]
        if missing and len(missing) < len(tests):
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            msg = (
                f"{len(tests) - len(missing)} of the {len(tests)} test videos have ground truth in {self.gt_dir}, but"
                f" {shown} {'has' if len(missing) == 1 else 'have'} none: give every test video its labels (an empty"
                " <name>.csv marks a video without anomalies) or none (prediction only)"
            )
            raise DatasetLayoutError(msg)
        if missing:
            return {}, False
        names = {Path(p).stem if Path(p).is_file() else Path(p).name for p in truths}
        stray = sorted(
            p.name
            for p in self.gt_dir.iterdir()
            if not p.name.startswith(".") and re.sub(r"_mask$", "", p.stem if p.is_file() else p.name) not in names
        )
        if stray:
            logger.warning(
                "VideoFolder: %s in %s name%s no test video (ignored): %s",
                "files" if len(stray) > 1 else "a file",
                self.gt_dir,
                "" if len(stray) > 1 else "s",
                ", ".join(stray[:5]) + (", ..." if len(stray) > 5 else ""),
            )
        use_masks = all(truth.masks for truth in truths.values())
        if not use_masks:
            truths = {path: self._labels_from_masks(path, truth, tests) for path, truth in truths.items()}
        return truths, use_masks

    def _labels_from_masks(self, path: str, truth: GroundTruth, tests: Sequence[VideoSource]) -> GroundTruth:
        """Frame labels only: a video's own, else read from its masks (when not every test video has masks).

        As with masks (:meth:`VideoFolderClipsIndexer.read_video_labels`), a frame is anomalous when its
        mask, cropped to the ``roi`` and not resized, has an anomalous pixel.
        """
        if truth.labels is not None:
            return GroundTruth(labels=truth.labels, labels_path=truth.labels_path)
        source = next(s for s in tests if s.path == path)
        labels = read_mask_labels(truth, source, range(source.num_frames), self.transform.roi)
        return GroundTruth(labels=labels.numpy(), labels_path=truth.masks)

    def _setup(self, _stage: str | None = None) -> None:
        self.prepare_data()
        trains = scan_video_folder(self.train_dir, "training", self.fps, self.folder_fps)
        tests = scan_video_folder(self.test_dir, "test", self.fps, self.folder_fps)
        self._check_sizes([*trains, *tests])
        truths, use_masks = self._ground_truth(tests)
        self.has_ground_truth = bool(truths)
        shown = "masks" if use_masks else "frame labels"
        logger.info(
            "VideoFolder %s: %d training and %d test videos%s, %s",
            self.root,
            len(trains),
            len(tests),
            f" at {self.fps:g} fps" if self.fps else "",
            f"ground truth: {shown}" if truths else "no ground truth (prediction only)",
        )
        common = {
            "transform": self.transform,
            "clip_length_in_frames": self.clip_length_in_frames,
            "frames_between_clips": self.frames_between_clips,
            "target_frame": self.target_frame,
            "cache_frames": self.cache_frames,
            "root": self.root,
        }
        self.train_data = VideoFolderDataset(Split.TRAIN, trains, {}, use_masks=False, **common)
        self.test_data = VideoFolderDataset(Split.TEST, tests, truths, use_masks=use_masks, **common)
        fill_caches_for_workers(self)
