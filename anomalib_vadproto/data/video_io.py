"""Read and write video files with PyAV (FFmpeg's libraries), without torchcodec.

torchvision 0.29 decodes video only through torchcodec, which needs system FFmpeg libraries;
anomalib's ``Avenue`` and ``ShanghaiTech`` datamodules inherit that requirement. PyAV ships its own
FFmpeg, so this module gives the plugin's datamodules a decoder that works wherever ``pip install av``
does.

Frames are numbered as torchcodec numbers them (and so as anomalib's clips see them): the video
stream's packets are listed once (:func:`index_video`, no decoding), sorted by presentation time,
and frame ``i`` is the ``i``-th of them. :class:`VideoReader` decodes the frames a clip needs,
continuing from where it stopped when the next request lies a little ahead (clips read in order
decode every frame once) and seeking to the nearest key frame otherwise. Frames come back as
``uint8`` RGB tensors ``(T, 3, H, W)``.

Every failure to open, index or decode a file raises :class:`VideoReadError`, whose message names
the file.

Example:
    >>> from anomalib_vadproto.data.video_io import VideoReader, index_video  # doctest: +SKIP
    >>> index = index_video("datasets/avenue/testing_videos/01.avi")  # doctest: +SKIP
    >>> clip = VideoReader(index).read(range(10, 15))  # (5, 3, 360, 640) uint8  # doctest: +SKIP

"""

from __future__ import annotations

import itertools
import os
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from anomalib_vadproto.errors import check_choice

if TYPE_CHECKING:
    import torch

__all__ = ["VideoIndex", "VideoReadError", "VideoReader", "index_video", "read_video", "write_video"]

#: Codecs :func:`write_video` can write, with the pixel format used for each. ``ffv1`` is lossless
#: (RGB stored as ``bgr0``); ``mjpeg`` is Avenue's and the dataset generators' default; ``mpeg4``
#: (Xvid-like, with inter frames) exercises seeking.
WRITE_PIXEL_FORMATS = {"mjpeg": "yuvj420p", "mpeg4": "yuv420p", "ffv1": "bgr0"}


#: Readers with an open file. They are closed before the process forks (DataLoader workers): a child
#: must never free a decoder it inherited, whose threads do not exist there (freeing it deadlocks).
_OPEN_READERS: weakref.WeakSet[VideoReader] = weakref.WeakSet()
#: Decoders inherited by a forked child from a reader opened without the fork hook: kept, never freed.
_INHERITED: list[Any] = []


def _close_open_readers() -> None:
    for reader in list(_OPEN_READERS):
        reader.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_open_readers)


class VideoReadError(ValueError):
    """A video could not be opened, indexed or decoded; the message names the file or stream.

    Shared by the datamodules and the deployment sources (:mod:`anomalib_vadproto.deploy.video_io`).
    """


@dataclass(frozen=True)
class VideoIndex:
    """The frames of one video file, listed from its packets (nothing decoded).

    Attributes:
        path: The video file.
        num_frames: Number of frames (packets of the first video stream that carry data).
        pts: Presentation timestamp of every frame in display order, or ``None`` when some packet
            has none or two share one (frames are then found by decoding from the start and counting).
        fps: Average frame rate, if the container states one.

    """

    path: str
    num_frames: int
    pts: tuple[int, ...] | None
    fps: float | None


def _error(path: str, what: str, exc: BaseException | None = None) -> VideoReadError:
    detail = f": {exc}" if exc is not None else ""
    return VideoReadError(f"Cannot read video file {path} ({what}){detail}")


def _open(path: str) -> tuple[Any, Any]:
    """Open ``path`` and return ``(container, first video stream)``."""
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _error(path, "not a readable video", exc) from exc
    if not container.streams.video:
        container.close()
        raise _error(path, "no video stream")
    return container, container.streams.video[0]


def index_video(path: str | os.PathLike[str]) -> VideoIndex:
    """List the frames of ``path`` by demuxing its first video stream (no decoding).

    Args:
        path: Video file.

    Returns:
        VideoIndex: Frame count, per-frame timestamps and frame rate.

    Raises:
        VideoReadError: If the file cannot be opened or read, or has no video frames.

    """
    path = str(path)
    if not Path(path).is_file():
        raise _error(path, "no such file")
    container, stream = _open(path)
    timestamps: list[int | None] = []
    try:
        with container:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                timestamps.append(packet.pts)
            rate = stream.average_rate or stream.guessed_rate
    except av.FFmpegError as exc:
        raise _error(path, "damaged container", exc) from exc
    if not timestamps:
        raise _error(path, "no video frames")
    pts = None
    if all(t is not None for t in timestamps):
        ordered = sorted(timestamps)  # type: ignore[type-var]
        if len(set(ordered)) == len(ordered):
            pts = tuple(int(t) for t in ordered)  # type: ignore[arg-type]
    return VideoIndex(path=path, num_frames=len(timestamps), pts=pts, fps=float(rate) if rate else None)


class VideoReader:
    """Decode frames of one video file by index, reusing the open decoder between calls.

    The reader keeps the file open and remembers the last frame it decoded. A request that starts a
    little after it (at most ``max_skip`` frames) continues decoding; any other request seeks to the
    key frame before its first frame (or, for files without timestamps, decodes again from the
    start). The last ``window`` decoded frames are kept, so overlapping clips read in order decode
    every frame once. A reader that finds itself in a different process than the one that opened
    the file (a forked data-loader worker) reopens it.

    Args:
        index: The video's :class:`VideoIndex`.
        window: Number of recently decoded frames kept (at least the clip length).
        max_skip: Largest forward jump that is decoded through instead of seeking.

    """

    def __init__(self, index: VideoIndex, window: int = 32, max_skip: int = 32) -> None:
        self.index = index
        self.window = max(int(window), 1)
        self.max_skip = max(int(max_skip), 0)
        self._frame_of_pts = {p: i for i, p in enumerate(index.pts)} if index.pts is not None else None
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[Any] | None = None
        self._position: int | None = None  # index of the last decoded frame (None: unknown, after a seek)
        self._pid = os.getpid()
        self._recent: OrderedDict[int, torch.Tensor] = OrderedDict()

    @property
    def path(self) -> str:
        """The video file."""
        return self.index.path

    def close(self) -> None:
        """Close the file (the next :meth:`read` reopens it)."""
        if self._container is not None:
            if self._pid == os.getpid():
                self._container.close()
            else:
                _INHERITED.append(self._container)
        _OPEN_READERS.discard(self)
        self._container = self._stream = self._frames = None
        self._position = None
        self._pid = os.getpid()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - nothing useful to do at interpreter shutdown
            pass

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the open file (it is reopened on the next read)."""
        state = self.__dict__.copy()
        state.update(_container=None, _stream=None, _frames=None, _position=None, _recent=OrderedDict())
        return state

    def _restart(self, frame: int) -> None:
        """Position the decoder before ``frame``: seek when timestamps allow it, else reopen at the start."""
        if self._pid != os.getpid():  # a forked copy: never free (or use) the parent's decoder
            if self._container is not None:
                _INHERITED.append(self._container)
            self._container = self._stream = self._frames = None
            self._pid = os.getpid()
        if self._frame_of_pts is None or frame == 0 or self._container is None:
            self.close()
            self._container, self._stream = _open(self.path)
            _OPEN_READERS.add(self)
            self._frames = iter(self._container.decode(self._stream))
            self._position = -1
            if self._frame_of_pts is None or frame == 0:
                return
        try:
            self._container.seek(self.index.pts[frame], stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise _error(self.path, f"seeking to frame {frame} failed", exc) from exc
        self._frames = iter(self._container.decode(self._stream))
        self._position = None

    def _frame_number(self, frame: Any) -> int | None:  # noqa: ANN401
        if self._frame_of_pts is None:
            return -1 if self._position is None else self._position + 1
        return self._frame_of_pts.get(frame.pts)

    def _decode(self, wanted: set[int], last: int) -> bool:
        """Decode forward until frame ``last``, keeping the ``wanted`` frames; tell whether all were found.

        ``False`` means the decoder passed (or never reached) a wanted frame: after a seek that landed
        too late (B-frames make key-frame seeking inexact in some containers), or at the end of the file.
        """
        import torch  # here, not at module level: the deployment path imports this module for its errors

        assert self._frames is not None  # noqa: S101 - set by _restart
        try:
            for frame in self._frames:
                number = self._frame_number(frame)
                if number is None:  # a timestamp the index does not list: not one of the video's frames
                    continue
                self._position = number
                if number in wanted:
                    array = frame.to_ndarray(format="rgb24")
                    self._recent[number] = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
                    self._recent.move_to_end(number)
                    while len(self._recent) > self.window:
                        self._recent.popitem(last=False)
                if number >= last:
                    break
        except av.FFmpegError as exc:
            raise _error(self.path, f"decoding failed near frame {self._position}", exc) from exc
        return all(f in self._recent for f in wanted)

    def read(self, frames: Iterable[int]) -> torch.Tensor:
        """Return the given frames (0-based indices) as a ``uint8`` tensor ``(T, 3, H, W)``, RGB.

        Args:
            frames: Frame indices, typically a clip's consecutive frames.

        Returns:
            torch.Tensor: The frames in the order asked for.

        Raises:
            IndexError: If an index is outside ``[0, num_frames)``.
            VideoReadError: If decoding fails.

        """
        frames = [int(f) for f in frames]
        if not frames:
            msg = f"No frames requested from {self.path}"
            raise ValueError(msg)
        if min(frames) < 0 or max(frames) >= self.index.num_frames:
            msg = f"Frames {min(frames)}..{max(frames)} out of range: {self.path} has {self.index.num_frames} frames"
            raise IndexError(msg)
        if len(set(frames)) > self.window:
            msg = f"Reader window ({self.window} frames) is smaller than the {len(set(frames))} frames requested"
            raise ValueError(msg)
        for frame in frames:  # keep the frames already decoded through this request
            if frame in self._recent:
                self._recent.move_to_end(frame)
        missing = sorted({f for f in frames if f not in self._recent})
        if missing:
            first, last = missing[0], missing[-1]
            position, sequential = self._position, self._frame_of_pts is None
            ahead = position is not None and position < first and (sequential or first - position <= self.max_skip)
            wanted = set(missing)
            if self._frames is None or self._pid != os.getpid() or not ahead:
                self._restart(first)
            start = first
            while not self._decode(wanted, last):
                if start == 0 and self._frame_of_pts is not None:
                    # decoded timestamps do not match the listed ones: number frames by decoding order
                    self._frame_of_pts = None
                    self._recent.clear()
                    wanted, last = set(frames), max(frames)
                elif start == 0:
                    msg = f"decoding ended before frame {last}; the file lists {self.index.num_frames} frames"
                    raise _error(self.path, msg)
                start = max(0, start - max(2 * (first - start), self.window))  # seek further back
                self._restart(start)
        import torch

        return torch.stack([self._recent[f] for f in frames])


def read_video(index: VideoIndex | str | os.PathLike[str]) -> torch.Tensor:
    """Decode every frame of a video: ``uint8`` RGB tensor ``(N, 3, H, W)``.

    Args:
        index: A :class:`VideoIndex`, or the path of the file (indexed first).

    Returns:
        torch.Tensor: All frames in display order, numbered as :func:`index_video` numbers them.

    Raises:
        VideoReadError: If the file cannot be decoded or yields fewer frames than it lists.

    """
    if not isinstance(index, VideoIndex):
        index = index_video(index)
    reader = VideoReader(index, window=index.num_frames, max_skip=index.num_frames)
    try:
        return reader.read(range(index.num_frames))
    finally:
        reader.close()


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: int = 25,
    codec: str = "mjpeg",
    quality: int = 2,
) -> Path:
    """Encode RGB frames into a video file (the container follows the suffix, e.g. ``.avi``).

    Args:
        path: Output file; parent folders are created.
        frames: ``uint8`` arrays ``(H, W, 3)`` (RGB) or ``(H, W)`` (grey), all of one size.
        fps: Frame rate.
        codec: ``"mjpeg"``, ``"mpeg4"`` (key frame every 6 frames) or ``"ffv1"`` (lossless).
        quality: Quantiser scale for ``mjpeg``/``mpeg4`` (1 = best, 31 = worst).

    Returns:
        Path: ``path``.

    Raises:
        ValueError: For an unknown codec, no frames, or frames of different sizes.

    """
    check_choice("codec", codec, sorted(WRITE_PIXEL_FORMATS))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        msg = "write_video needs at least one frame"
        raise ValueError(msg) from None
    height, width = first.shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, WRITE_PIXEL_FORMATS[codec]
        if codec in ("mjpeg", "mpeg4"):
            stream.codec_context.qmin = stream.codec_context.qmax = int(quality)
        if codec == "mpeg4":
            stream.codec_context.gop_size = 6
        for frame in _frames_rgb(first, iterator, (height, width)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _frames_rgb(first: np.ndarray, rest: Iterator[np.ndarray], size: tuple[int, int]) -> Iterator[np.ndarray]:
    for frame in itertools.chain([first], rest):
        array = np.asarray(frame, dtype=np.uint8)
        if array.shape[:2] != size:
            msg = f"All frames must be {size[0]}x{size[1]}, got {array.shape[:2]}"
            raise ValueError(msg)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        yield np.ascontiguousarray(array[..., :3])
