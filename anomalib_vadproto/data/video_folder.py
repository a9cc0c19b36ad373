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
when its mask has an anomalous pixel. Masks also give the pixel metrics when every test video has
them (when only some have, their frame labels are taken from them and no pixel metric is computed).
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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anomalib.data.datamodules.base.video import AnomalibVideoDataModule
from anomalib.data.datasets.base.video import AnomalibVideoDataset, VideoTargetFrame
from anomalib.data.utils import Split, ValSplitMode
from anomalib.data.utils.video import ClipsIndexer
from torchvision.transforms.v2 import InterpolationMode, Transform
from torchvision.transforms.v2.functional import resize

from anomalib_vadproto.data.camera_options import (
    folder_frame_times,
    keep_frames,
    roi_fits,
    roi_slices,
    video_frame_times,
)
from anomalib_vadproto.data.clips import (
    ClipReaderMixin,
    enum_arguments,
    fill_caches_for_workers,
    read_image_files,
)
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.data.validation import HeldOutVideosMixin
from anomalib_vadproto.data.video_io import VideoIndex, VideoReader, VideoReadError, index_video
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
    "parse_frame_ranges",
    "scan_video_folder",
]

#: Suffixes of frame images (a folder holding them is one video).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Files never taken for videos (ground truth, notes, metadata that may sit beside them).
NOT_VIDEO_SUFFIXES = (".txt", ".csv", ".json", ".md", ".npy", ".npz", ".mat", ".yaml", ".yml", ".xml", ".log")
#: Lossy image formats: their masks are thresholded at 128 instead of 0.
_LOSSY = (".jpg", ".jpeg")
_HOW = "For an example of the layout: python -m anomalib_vadproto.data.synthetic_video video_folder <root>."
_RANGE = re.compile(r"^(\d+)(?:\s*[-,;\s]\s*(\d+))?$")


# ============================================================================================ sources
@dataclass(frozen=True)
class VideoSource:
    """One video of the folder, as found at setup.

    Attributes:
        path: The video file or frame folder.
        files: The frame images of a frame folder (in order), empty for a video file.
        index: The :class:`~anomalib_vadproto.data.video_io.VideoIndex` of a video file, ``None`` for a folder.
        num_frames: Frames as recorded.
        size: ``(height, width)`` as recorded.
        kept: The recorded frames kept (``fps`` subsampling), ascending; all frames without ``fps``.

    """

    path: str
    files: tuple[str, ...]
    index: VideoIndex | None
    num_frames: int
    size: tuple[int, int]
    kept: tuple[int, ...]

    @property
    def name(self) -> str:
        """The video's name: its file's stem or its folder's name."""
        return Path(self.path).stem if self.index is not None else Path(self.path).name


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth found for one test video.

    Attributes:
        labels: Frame labels as recorded (``bool`` ``(num_frames,)``), or ``None``.
        labels_path: The file they came from (for messages), or ``""``.
        masks: The mask source (a mask video, a folder of images, ``.npy`` or ``.mat``), or ``""``.
        mask_kind: ``"video"``, ``"folder"``, ``"npy"``, ``"mat"`` or ``""``.

    """

    labels: np.ndarray | None = None
    labels_path: str = ""
    masks: str = ""
    mask_kind: str = ""

    @property
    def empty(self) -> bool:
        """Whether the video has no ground truth at all."""
        return self.labels is None and not self.masks


def _natural_key(path: Path) -> list[Any]:
    """Sort key comparing numbers as numbers: ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)


def _probe(path: str) -> tuple[Fraction | None, tuple[int, int]]:
    """Return a video file's stream time base and ``(height, width)`` (nothing decoded)."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            base = Fraction(stream.time_base) if stream.time_base else None
            return base, (int(stream.codec_context.height), int(stream.codec_context.width))
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:  # index_video read it: unlikely
        msg = f"{path} is not a video PyAV can decode ({exc}); remove it or convert it. {_HOW}"
        raise DatasetLayoutError(msg) from exc


def _is_video_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() not in NOT_VIDEO_SUFFIXES


def scan_video_folder(folder: Path, what: str, fps: float | None = None, folder_fps: float = 25.0) -> list[VideoSource]:
    """List and index the videos of one folder (files and frame folders), sorted by name.

    Args:
        folder: The folder (``root/train``, ``root/test``).
        what: ``"training"`` or ``"test"`` (for messages).
        fps: Target frame rate (``None``: every frame).
        folder_fps: Frame rate of frame folders.

    Returns:
        list[VideoSource]: One per video.

    Raises:
        DatasetLayoutError: For a missing or empty folder, image files lying loose in it, a file PyAV
            cannot decode, or two videos of one name.

    """
    if not folder.is_dir():
        msg = f"No {what} folder {folder}: put the {what} videos there (video files or folders of frames). {_HOW}"
        raise DatasetLayoutError(msg)
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=_natural_key)
    loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        msg = (
            f"{folder} holds image files ({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}): put each"
            f" video's frames in a folder of its own ({folder}/<video>/000.png, ...). {_HOW}"
        )
        raise DatasetLayoutError(msg)
    sources: list[VideoSource] = []
    for path in entries:
        if path.is_dir():
            files = _image_files(path)
            if not files:
                continue  # not a video (e.g. an empty folder); an all-empty folder is reported below
            from PIL import Image

            with Image.open(files[0]) as image:
                width, height = image.size
            times = folder_frame_times(len(files), folder_fps)
            sources.append(
                VideoSource(
                    path=str(path),
                    files=tuple(str(f) for f in files),
                    index=None,
                    num_frames=len(files),
                    size=(height, width),
                    kept=keep_frames(times, fps),
                )
            )
        elif _is_video_candidate(path):
            try:
                index = index_video(path)
            except VideoReadError as exc:
                msg = f"{path} is not a video PyAV can decode ({exc}); remove it from {folder} or convert it."
                raise DatasetLayoutError(msg) from exc
            time_base, size = _probe(str(path))
            sources.append(
                VideoSource(
                    path=str(path),
                    files=(),
                    index=index,
                    num_frames=index.num_frames,
                    size=size,
                    kept=keep_frames(video_frame_times(index, time_base, folder_fps), fps),
                )
            )
    if not sources:
        msg = f"{folder} holds no {what} videos (video files, or folders of png/jpg/tif/bmp frames). {_HOW}"
        raise DatasetLayoutError(msg)
    names: dict[str, str] = {}
    for source in sources:
        if source.name in names:
            msg = (
                f"Two {what} videos are named {source.name!r} ({names[source.name]} and {source.path}): videos are"
                " told apart (and matched to their ground truth) by name; rename one."
            )
            raise DatasetLayoutError(msg)
        names[source.name] = source.path
    return sources


# ============================================================================================ ground truth
def parse_frame_ranges(text: str, num_frames: int, source: str = "ranges") -> np.ndarray:
    """Frame labels from anomalous frame ranges written by hand: ``120-180``, ``120,180``, ``120 180`` or ``120``.

    One range per line; frames are numbered from 0 and both ends are included. Empty lines and ``#``
    comments are skipped, and so is a first line holding letters (a CSV header such as ``start,end``).

    Args:
        text: The file's text.
        num_frames: The video's frame count.
        source: The file, for messages.

    Returns:
        np.ndarray: ``bool`` ``(num_frames,)``, ``True`` on the anomalous frames.

    Raises:
        DatasetLayoutError: For a line that is not a range, a range that ends before it starts, or a
            frame beyond the video.

    """
    labels = np.zeros(num_frames, dtype=bool)
    seen_content = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first, seen_content = not seen_content, True
        match = _RANGE.match(line)
        if match is None:
            if first and re.search(r"[A-Za-z]", line):
                continue  # a header row
            msg = (
                f"{source}, line {number}: {raw.strip()!r} is not a frame range; write one range per line as"
                " 120-180, 120,180 or a single frame 120 (frames numbered from 0, both ends included)"
            )
            raise DatasetLayoutError(msg)
        start, end = int(match.group(1)), int(match.group(2) or match.group(1))
        if end < start:
            msg = f"{source}, line {number}: the range {start}-{end} ends before it starts"
            raise DatasetLayoutError(msg)
        if end >= num_frames:
            msg = (
                f"{source}, line {number}: frame {end} is beyond the video's {num_frames} frames (0 to"
                f" {num_frames - 1}; frames are numbered from 0 as recorded, before fps subsampling)"
            )
            raise DatasetLayoutError(msg)
        labels[start : end + 1] = True
    return labels


def _label_array(path: Path, array: np.ndarray, video: VideoSource) -> np.ndarray:
    values = np.asarray(array)
    if values.dtype.kind not in "biuf" or not np.isin(values, (0, 1)).all():
        msg = f"{path} must hold 0/1 frame labels (1 = anomalous), one per frame; it holds other values"
        raise DatasetLayoutError(msg)
    if len(values) != video.num_frames:
        msg = (
            f"{path} holds {len(values)} frame labels, but {video.path} has {video.num_frames} frames: one label"
            " per frame as recorded (before fps subsampling)"
        )
        raise DatasetLayoutError(msg)
    return values.astype(bool)


def _check_mask_shape(path: Path | str, count: int, size: tuple[int, int], video: VideoSource) -> None:
    if count != video.num_frames:
        msg = (
            f"{path} holds {count} masks, but {video.path} has {video.num_frames} frames: one mask per frame as"
            " recorded (before fps subsampling)"
        )
        raise DatasetLayoutError(msg)
    if tuple(size) != tuple(video.size):
        msg = (
            f"{path} holds masks of {size[0]}x{size[1]} (height x width), but {video.path} is"
            f" {video.size[0]}x{video.size[1]}: masks must have the recording's frame size"
        )
        raise DatasetLayoutError(msg)


def load_mat_masks(path: str | Path, video: VideoSource) -> np.ndarray:
    """Read masks from a ``.mat`` file: Avenue's ``volLabel`` cell array, or one 3-D array.

    The array may be ``(frames, H, W)`` or MATLAB's ``(H, W, frames)``; it is returned as ``bool``
    ``(frames, H, W)``.

    Raises:
        DatasetLayoutError: If the file cannot be read or holds neither form.

    """
    import scipy.io

    from anomalib_vadproto.data.avenue import load_avenue_mat_masks

    try:
        content = scipy.io.loadmat(str(path))
    except (NotImplementedError, ValueError, OSError, TypeError) as exc:
        msg = f"Cannot read the masks {path}: {exc}"
        raise DatasetLayoutError(msg) from exc
    if "volLabel" in content:
        try:
            return load_avenue_mat_masks(path).numpy()
        except ValueError as exc:
            raise DatasetLayoutError(str(exc)) from exc
    arrays = [v for k, v in content.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 3]
    if len(arrays) != 1 or arrays[0].dtype.kind not in "biuf":
        msg = f"{path} must hold one 3-D array of masks ((frames, H, W) or (H, W, frames)) or Avenue's volLabel"
        raise DatasetLayoutError(msg)
    volume = arrays[0]
    if volume.shape[0] != video.num_frames and volume.shape[2] == video.num_frames:
        volume = np.moveaxis(volume, 2, 0)
    return volume > 0


def _mask_source(gt_dir: Path, stem: str, video: VideoSource) -> tuple[str, str]:
    """Find and check the masks of one test video: ``(path, kind)``, or ``("", "")`` for none."""
    candidates: list[tuple[Path, str]] = []
    folder = gt_dir / f"{stem}_mask"
    if folder.is_dir():
        candidates.append((folder, "folder"))
    for suffix, kind in ((".npy", "npy"), (".mat", "mat")):
        if (gt_dir / f"{stem}_mask{suffix}").is_file():
            candidates.append((gt_dir / f"{stem}_mask{suffix}", kind))
    candidates += [
        (p, "video")
        for p in sorted(gt_dir.glob(f"{_glob_escape(stem)}_mask.*"))
        if _is_video_candidate(p) and p.suffix.lower() not in IMAGE_SUFFIXES
    ]
    plain = gt_dir / f"{stem}.npy"
    if plain.is_file() and np.load(plain, mmap_mode="r").ndim == 3:
        candidates.append((plain, "npy"))
    if not candidates:
        return "", ""
    if len(candidates) > 1:
        msg = f"{len(candidates)} mask sources for {video.path}: {', '.join(str(p) for p, _ in candidates)}; keep one"
        raise DatasetLayoutError(msg)
    path, kind = candidates[0]
    if kind == "folder":
        files = _image_files(path)
        if not files:
            msg = f"The mask folder {path} holds no images (one png/jpg/tif/bmp mask per frame of {video.path})"
            raise DatasetLayoutError(msg)
        from PIL import Image

        with Image.open(files[0]) as image:
            width, height = image.size
        _check_mask_shape(path, len(files), (height, width), video)
    elif kind == "npy":
        volume = np.load(path, mmap_mode="r")
        if volume.ndim != 3:
            msg = f"{path} must hold masks of shape (frames, H, W), got shape {volume.shape}"
            raise DatasetLayoutError(msg)
        _check_mask_shape(path, volume.shape[0], volume.shape[1:], video)
    elif kind == "mat":
        volume = load_mat_masks(path, video)
        _check_mask_shape(path, volume.shape[0], volume.shape[1:], video)
    else:
        try:
            index = index_video(path)
        except VideoReadError as exc:
            msg = f"The mask video {path} is not a video PyAV can decode ({exc})"
            raise DatasetLayoutError(msg) from exc
        _check_mask_shape(path, index.num_frames, _probe(str(path))[1], video)
    return str(path), kind


def _glob_escape(text: str) -> str:
    """Escape ``glob`` wildcards in a file name."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def find_ground_truth(gt_dir: Path, video: VideoSource) -> GroundTruth:
    """Find, read and check the ground truth of one test video (see the module's docstring for the forms).

    Raises:
        DatasetLayoutError: For two label files of one video, unreadable or mismatched labels or masks.

    """
    stem = video.name
    label_files = [gt_dir / f"{stem}{suffix}" for suffix in (".csv", ".txt")]
    plain = gt_dir / f"{stem}.npy"
    if plain.is_file() and np.load(plain, mmap_mode="r").ndim == 1:
        label_files.append(plain)
    label_files = [p for p in label_files if p.is_file()]
    if len(label_files) > 1:
        msg = f"Two frame-label files for {video.path}: {label_files[0]} and {label_files[1]}; keep one"
        raise DatasetLayoutError(msg)
    labels, labels_path = None, ""
    if label_files:
        path = label_files[0]
        labels_path = str(path)
        if path.suffix == ".npy":
            labels = _label_array(path, np.load(path), video)
        else:
            labels = parse_frame_ranges(path.read_text(encoding="utf-8-sig"), video.num_frames, str(path))
    masks, kind = _mask_source(gt_dir, stem, video)
    return GroundTruth(labels=labels, labels_path=labels_path, masks=masks, mask_kind=kind)


# ============================================================================================ frames
@dataclass(frozen=True)
class FrameTransform:
    """What happens to every recorded frame (and mask): crop to ``roi``, grey, resize to ``size``.

    Attributes:
        roi: ``(x, y, w, h)`` in the recording's pixels, or ``None``.
        grayscale: Keep one grey channel (PIL's ``convert("L")`` luma).
        size: ``(height, width)`` of the stored frames, or ``None`` to keep the (cropped) size.

    """

    roi: tuple[int, int, int, int] | None = None
    grayscale: bool = False
    size: tuple[int, int] | None = None

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Return the stored frame size of a recording of ``size`` (``(height, width)``)."""
        if self.size is not None:
            return self.size
        if self.roi is not None:
            return (self.roi[3], self.roi[2])
        return size

    def _crop(self, frames: torch.Tensor) -> torch.Tensor:
        if self.roi is None:
            return frames
        rows, columns = roi_slices(self.roi)
        return frames[..., rows, columns]

    def frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Transform ``uint8`` frames ``(N, C, H, W)`` (3 RGB or 1 grey channels) into stored frames."""
        frames = self._crop(frames)
        if self.grayscale and frames.shape[1] == 3:
            weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
            luma = (frames.to(torch.int32) * weights).sum(1, keepdim=True) + 32768
            frames = (luma >> 16).to(torch.uint8)  # PIL's integer ITU-R 601-2 luma, bit for bit
        if self.size is not None and tuple(frames.shape[-2:]) != self.size:
            frames = resize(frames, list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=True)
        return frames.contiguous()

    def masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Transform boolean masks ``(N, H, W)`` as the frames (nearest-neighbour resize)."""
        masks = self._crop(masks)
        if self.size is not None and tuple(masks.shape[-2:]) != self.size:
            masks = resize(masks[:, None].to(torch.uint8), list(self.size), interpolation=InterpolationMode.NEAREST)
            masks = masks[:, 0] > 0
        return masks.contiguous()


class VideoFolderClipsIndexer(ClipReaderMixin, ClipsIndexer):
    """Clips of the folder's videos: files decoded with PyAV, frame folders read with PIL.

    Frame ``i`` of a video is its ``i``-th kept frame (``fps`` subsampling); frames are cropped, made
    grey and resized by the :class:`FrameTransform` before they are cached or returned.

    Args:
        video_paths: The videos (files or frame folders).
        mask_paths: Per video, its mask source, or ``""`` for none.
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        sources: Every video's :class:`VideoSource`, by path.
        truths: Every test video's :class:`GroundTruth`, by path.
        transform: The frame transform.
        cache_frames: Decode each video once and keep its (transformed) frames in memory.

    """

    def __init__(
        self,
        video_paths: list[str],
        mask_paths: list[str],
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        sources: Mapping[str, VideoSource] | None = None,
        truths: Mapping[str, GroundTruth] | None = None,
        transform: FrameTransform | None = None,
        cache_frames: bool = False,
    ) -> None:
        self.sources = dict(sources or {})
        self.truths = dict(truths or {})
        self.transform = transform or FrameTransform()
        self._readers: dict[str, VideoReader] = {}
        self._mat: tuple[str, np.ndarray] | None = None
        super().__init__(
            video_paths=video_paths,
            mask_paths=mask_paths,
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            cache_frames=cache_frames,
        )

    def _compute_frame_pts(self) -> None:
        """Give each video's kept frames the numbers ``0 .. len(kept) - 1`` (nothing is read here)."""
        self.video_pts = [torch.arange(len(self.sources[path].kept)) for path in self.video_paths]
        self.video_fps = [None] * len(self.video_paths)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deep-copy) without open readers."""
        state = super().__getstate__()
        state["_readers"] = {}
        state["_mat"] = None
        return state

    def _recorded(self, video_idx: int, frames: torch.Tensor) -> tuple[VideoSource, list[int]]:
        source = self.sources[self.video_paths[video_idx]]
        return source, [source.kept[int(i)] for i in frames]

    def _reader(self, index: VideoIndex, step: int) -> VideoReader:
        """Return the open reader of ``index`` (one file open at a time, as the other indexers)."""
        reader = self._readers.get(index.path)
        if reader is None:
            for old in self._readers.values():
                old.close()
            self._readers.clear()
            window = max(2 * self.num_frames, 16)
            reader = VideoReader(index, window=window, max_skip=window * max(step, 1))
            self._readers[index.path] = reader
        return reader

    def _whole(self, source: VideoSource) -> torch.Tensor:
        """Every kept frame of a video, transformed (for the cache)."""
        if source.index is None:
            mode = "L" if self.transform.grayscale else "RGB"
            return self.transform.frames(read_image_files([source.files[i] for i in source.kept], mode))
        return read_video_frames(source.index, source.kept, self.transform.frames)

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Return kept frames ``frames`` of video ``video_idx``, transformed: ``uint8`` ``(T, 3, h, w)``."""
        source, recorded = self._recorded(video_idx, frames)
        if self.cache is not None:
            clip = self.cached(("video", source.path), functools.partial(self._whole, source))[frames]
        elif source.index is None:
            mode = "L" if self.transform.grayscale else "RGB"
            clip = self.transform.frames(read_image_files([source.files[i] for i in recorded], mode))
        else:
            step = max((b - a for a, b in zip(source.kept, source.kept[1:], strict=False)), default=1)
            clip = self.transform.frames(self._reader(source.index, step).read(recorded))
        return clip.expand(-1, 3, -1, -1) if clip.shape[1] == 1 else clip

    # ---------------------------------------------------------------------------------------- masks
    def _all_masks(self, path: str) -> torch.Tensor:
        source = self.sources[path]
        return self.transform.masks(read_mask_frames(self.truths[path], source, source.kept))

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Return the masks of kept frames ``frames`` of video ``video_idx``: ``bool`` ``(T, h, w)``."""
        path = self.video_paths[video_idx]
        if self.cache is not None:
            return self.cached(("masks", path), functools.partial(self._all_masks, path))[frames]
        source, recorded = self._recorded(video_idx, frames)
        truth = self.truths[path]
        if truth.mask_kind == "mat":  # one volume per file: keep the last one read
            if self._mat is None or self._mat[0] != truth.masks:
                self._mat = (truth.masks, load_mat_masks(truth.masks, source))
            return self.transform.masks(torch.from_numpy(self._mat[1][recorded]))
        if truth.mask_kind == "video":
            masks = self._reader(index_video(truth.masks), 1).read(recorded)[:, 0] > MASK_VIDEO_THRESHOLD
            return self.transform.masks(masks)
        return self.transform.masks(read_mask_frames(truth, source, recorded))

    def clip_labels(self, idx: int) -> torch.Tensor | None:
        """Frame labels of clip ``idx`` (``int`` ``(T,)``), or ``None`` when its video has none."""
        video_idx, clip_idx = self.get_clip_location(idx)
        truth = self.truths.get(self.video_paths[video_idx])
        if truth is None or truth.labels is None:
            return None
        _, recorded = self._recorded(video_idx, self.clips[video_idx][clip_idx])
        return torch.from_numpy(truth.labels[recorded].astype(np.int32))


#: Frames decoded at a time when a whole video is read (bounds the memory held at the recording's size).
CHUNK = 64
#: A mask video's pixel is anomalous from this value on (white; lossy codecs blur the edges a little).
MASK_VIDEO_THRESHOLD = 127


def read_video_frames(index: VideoIndex, recorded: Sequence[int], convert: Any) -> torch.Tensor:  # noqa: ANN401
    """Decode the frames ``recorded`` (ascending) of a video file, :data:`CHUNK` at a time, and convert each chunk.

    Only one chunk is held at the recording's size: ``convert`` (the frame transform) shrinks it
    before the next is decoded.
    """
    reader = VideoReader(index, window=CHUNK, max_skip=index.num_frames)
    try:
        parts = [convert(reader.read(recorded[i : i + CHUNK])) for i in range(0, len(recorded), CHUNK)]
    finally:
        reader.close()
    return torch.cat(parts)


def read_mask_frames(truth: GroundTruth, source: VideoSource, recorded: Sequence[int]) -> torch.Tensor:
    """Read the masks of the recorded frames ``recorded`` of a test video: ``bool`` ``(T, H, W)``, before the transform.

    Non-zero is anomalous, but for mask videos and JPEG masks (lossy) where it is ``> 127``.
    """
    path, kind, recorded = truth.masks, truth.mask_kind, list(recorded)
    if kind == "npy":
        return torch.from_numpy(np.asarray(np.load(path, mmap_mode="r")[recorded]) > 0)
    if kind == "mat":
        return torch.from_numpy(load_mat_masks(path, source)[recorded])
    if kind == "folder":
        files = [_image_files(Path(path))[i] for i in recorded]
        threshold = MASK_VIDEO_THRESHOLD if files and files[0].suffix.lower() in _LOSSY else 0
        return read_image_files(files, "L")[:, 0] > threshold
    if kind == "video":
        return read_video_frames(index_video(path), recorded, lambda f: f[:, 0] > MASK_VIDEO_THRESHOLD)
    msg = f"No masks for {source.path}"
    raise ValueError(msg)


# ============================================================================================ dataset
class VideoFolderDataset(AnomalibVideoDataset):
    """The clips of one split of a :class:`VideoFolder` (anomalib's ``VideoItem``s).

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

    def __getitem__(self, index: int) -> Any:  # noqa: ANN401
        """Return anomalib's clip item, with ``gt_label`` from the frame labels where the video has them."""
        item = super().__getitem__(index)
        labels = self.indexer.clip_labels(index) if self.indexer is not None else None  # type: ignore[attr-defined]
        if labels is not None:
            if self.clip_length_in_frames > 1 and self.target_frame != VideoTargetFrame.ALL:
                idx = {VideoTargetFrame.FIRST: 0, VideoTargetFrame.LAST: -1}.get(
                    VideoTargetFrame(self.target_frame), int(self.clip_length_in_frames / 2)
                )
                labels = labels[idx]
            item.gt_label = labels.squeeze(0) if labels.ndim == 1 and len(labels) == 1 else labels
        return item


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

    @staticmethod
    def _labels_from_masks(path: str, truth: GroundTruth, tests: Sequence[VideoSource]) -> GroundTruth:
        """Frame labels only: a video's own, else read from its masks (when not every test video has masks)."""
        if truth.labels is not None:
            return GroundTruth(labels=truth.labels, labels_path=truth.labels_path)
        source = next(s for s in tests if s.path == path)
        masks = read_mask_frames(truth, source, range(source.num_frames))
        return GroundTruth(labels=masks.flatten(1).any(1).numpy(), labels_path=truth.masks)

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
