"""Finding the videos of a :class:`~anomalib_vadproto.data.video_folder.VideoFolder` and reading their frames.

:func:`scan_video_folder` lists and indexes one folder's videos (video files and folders of frame images), one
:class:`VideoSource` each, with the frames that ``fps`` keeps; :func:`read_video_frames` decodes a video file's
frames a chunk at a time. The layout is described in :mod:`~anomalib_vadproto.data.video_folder`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from anomalib_vadproto.data.camera_options import folder_frame_times, keep_frames, video_frame_times
from anomalib_vadproto.data.video_io import VideoIndex, VideoReader, VideoReadError, index_video
from anomalib_vadproto.errors import DatasetLayoutError

__all__ = ["VideoSource", "read_video_frames", "scan_video_folder"]

#: Suffixes of frame images (a folder holding them is one video).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Files never taken for videos (ground truth, notes, metadata that may sit beside them).
NOT_VIDEO_SUFFIXES = (".txt", ".csv", ".json", ".md", ".npy", ".npz", ".mat", ".yaml", ".yml", ".xml", ".log")
_HOW = "For an example of the layout: python -m anomalib_vadproto.data.synthetic_video video_folder <root>."


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


#: Frames decoded at a time when a whole video is read (bounds the memory held at the recording's size).
CHUNK = 64


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
