"""Reading the ground truth of a :class:`~anomalib_vadproto.data.video_folder.VideoFolder`'s test videos.

:func:`find_ground_truth` finds, reads and checks one test video's frame labels (hand-written ranges,
:func:`parse_frame_ranges`, or a ``.npy`` array) and its pixel masks (a mask video, a folder of mask images,
``.npy`` or ``.mat``) as a :class:`GroundTruth`; :func:`read_mask_frames` reads the masks of some frames and
:func:`read_mask_labels` the frame labels they give. The forms are described in
:mod:`~anomalib_vadproto.data.video_folder`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anomalib_vadproto.data.camera_options import roi_slices
from anomalib_vadproto.data.clips import read_image_files
from anomalib_vadproto.data.video_folder_layout import (
    CHUNK,
    IMAGE_SUFFIXES,
    VideoSource,
    _image_files,
    _is_video_candidate,
    _probe,
    read_video_frames,
)
from anomalib_vadproto.data.video_io import VideoReadError, index_video
from anomalib_vadproto.errors import DatasetLayoutError

__all__ = [
    "GroundTruth",
    "find_ground_truth",
    "load_mat_masks",
    "parse_frame_ranges",
    "read_mask_frames",
    "read_mask_labels",
]

#: Lossy image formats: their masks are thresholded at 128 instead of 0.
_LOSSY = (".jpg", ".jpeg")
_RANGE = re.compile(r"^(\d+)(?:\s*[-,;\s]\s*(\d+))?$")
#: A mask video's pixel is anomalous from this value on (white; lossy codecs blur the edges a little).
MASK_VIDEO_THRESHOLD = 127


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
    """Find, read and check the ground truth of one test video (the forms: :mod:`~anomalib_vadproto.data.video_folder`).

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


def read_mask_labels(
    truth: GroundTruth, source: VideoSource, recorded: Sequence[int], roi: Sequence[int] | None = None
) -> torch.Tensor:
    """Frame labels of the recorded frames ``recorded`` from their masks: ``bool`` ``(T,)``.

    A frame is anomalous when its mask (thresholded as :func:`read_mask_frames` does), cropped to ``roi``
    (``(x, y, w, h)``, as the frames are) but never resized, has an anomalous pixel: at the recording's
    resolution, so no anomaly vanishes in a resize. Masks are read :data:`CHUNK` frames at a time.
    """
    rows, columns = roi_slices(roi) if roi is not None else (slice(None), slice(None))

    def labels(masks: torch.Tensor) -> torch.Tensor:
        return masks[..., rows, columns].reshape(len(masks), -1).any(1)

    recorded = list(recorded)
    if truth.mask_kind == "video":
        return read_video_frames(index_video(truth.masks), recorded, lambda f: labels(f[:, 0] > MASK_VIDEO_THRESHOLD))
    if truth.mask_kind == "mat":  # one volume per file
        return labels(torch.from_numpy(load_mat_masks(truth.masks, source)[recorded]))
    parts = [labels(read_mask_frames(truth, source, recorded[i : i + CHUNK])) for i in range(0, len(recorded), CHUNK)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)
