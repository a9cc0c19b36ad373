"""The camera options that training and deployment apply alike: frame-rate subsampling and the region of interest.

:class:`~anomalib_vadproto.VideoFolder` trains on a recording subsampled to ``fps`` and cropped to
``roi``; the export records both (:class:`~anomalib_vadproto.components.metadata.ModelMetadata`) and
``anomalib-vadproto score`` (:class:`~anomalib_vadproto.deploy.video_io.CameraSource`) applies them to new
footage with the functions below, so training and deployment keep the same frames and the same pixels.

* Frame rate: the first frame of every ``1/fps`` seconds is kept, chosen by the frames' timestamps
  (:func:`keep_frames` over a whole recording, :class:`FrameRateSampler` frame by frame for streams; one
  rule). A video file's times are its packets' timestamps (:func:`video_frame_times`); frame folders carry
  none, so theirs are their numbers over ``folder_fps`` (:func:`folder_frame_times`).
* Region of interest ``(x, y, w, h)`` in the recording's pixels: :func:`roi_slices` gives the rows and
  columns to keep.

This module imports nothing heavy (no torch, no PyAV).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anomalib_vadproto.data.video_io import VideoIndex

__all__ = [
    "FrameRateSampler",
    "folder_frame_times",
    "keep_frames",
    "roi_fits",
    "roi_slices",
    "video_frame_times",
]

#: A millionth of a slot: forgives times given as floats (9 / 30 s is a hair below 0.3 s).
SLOT_TOLERANCE = Fraction(1, 1_000_000)


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1_000_000)


class FrameRateSampler:
    """Keep the first frame of every ``1/fps`` seconds, deciding one frame at a time (a stream, a camera).

    Slots of ``1/fps`` seconds count from the first frame's time; a frame is kept when it opens a slot
    other than the last kept frame's. Times are compared exactly (as fractions).

    Args:
        fps: Target frame rate; ``None`` keeps every frame.

    Example:
        >>> sampler = FrameRateSampler(10)
        >>> [sampler.keep(i / 30) for i in range(7)]
        [True, False, False, True, False, False, True]

    """

    def __init__(self, fps: float | None) -> None:
        self.rate = None if fps is None else _rate(fps)
        self._start: Fraction | None = None
        self._last_slot: int | None = None

    def keep(self, time: float | Fraction) -> bool:
        """Whether the frame shown at ``time`` seconds (any origin) is kept; call once per frame, in order."""
        if self.rate is None:
            return True
        time = Fraction(time)
        if self._start is None:
            self._start = time
        slot = int(((time - self._start) * self.rate + SLOT_TOLERANCE) // 1)
        if slot == self._last_slot:
            return False
        self._last_slot = slot
        return True


def keep_frames(times: Sequence[float | Fraction], fps: float | None) -> tuple[int, ...]:
    """Return the frames kept to subsample a video to ``fps``: the first frame of every ``1/fps`` seconds.

    Args:
        times: Each frame's time in seconds, in display order (any origin).
        fps: Target frame rate; ``None`` keeps every frame.

    Returns:
        tuple[int, ...]: Ascending frame indices; frame 0 is always kept. A 30 fps video at
        ``fps=10`` keeps 0, 3, 6, ...; at or above the video's own rate every frame is kept.

    """
    sampler = FrameRateSampler(fps)
    return tuple(i for i, time in enumerate(times) if sampler.keep(time))


def video_frame_times(index: VideoIndex, time_base: Fraction | None, fallback_fps: float) -> list[Fraction]:
    """Each frame's time in seconds: its timestamp, else its number over the container's (or the fallback) rate.

    Args:
        index: The video file's :class:`~anomalib_vadproto.data.video_io.VideoIndex`.
        time_base: Its video stream's time base (``None``: unknown).
        fallback_fps: The rate used when neither timestamps nor the container's rate are known.

    Returns:
        list[Fraction]: One time per frame of the index.

    """
    if index.pts is not None and time_base is not None:
        return [pts * time_base for pts in index.pts]
    rate = _rate(index.fps or fallback_fps)
    return [Fraction(i) / rate for i in range(index.num_frames)]


def folder_frame_times(count: int, folder_fps: float) -> list[Fraction]:
    """Return the times in seconds of the ``count`` frames of a frame folder, which runs at ``folder_fps``."""
    rate = _rate(folder_fps)
    return [Fraction(i) / rate for i in range(count)]


def roi_slices(roi: Sequence[int]) -> tuple[slice, slice]:
    """Return the rows and columns of a region of interest ``(x, y, w, h)``: ``frames[..., rows, columns]``."""
    x, y, w, h = (int(v) for v in roi)
    return slice(y, y + h), slice(x, x + w)


def roi_fits(roi: Sequence[int], size: Sequence[int]) -> bool:
    """Whether the region of interest ``(x, y, w, h)`` lies inside frames of ``size`` ``(height, width)``."""
    x, y, w, h = (int(v) for v in roi)
    return x + w <= int(size[1]) and y + h <= int(size[0])
