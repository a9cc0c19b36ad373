"""Frame sources (video files, streams, cameras, frame folders) and an MP4 writer, on PyAV.

Every source yields RGB ``uint8`` frames ``(H, W, 3)`` lazily, in order. Frames are converted the
way training reads them: image files through Pillow's ``convert("RGB")`` (as anomalib's
``read_image`` and the UCSD loaders do), video frames through FFmpeg's ``rgb24`` conversion. For
grey video stored as full-range ``yuvj420p`` (the shared UCSD Ped2 mp4 files), the ``rgb24`` frame is
exactly the Y plane repeated in three channels, so a video and its frames as ``.tif`` files give the
same arrays.

A model trained on :class:`~anomalib_vadproto.VideoFolder` with ``fps`` or ``roi`` carries them in its
export (:class:`CameraOptions`); :class:`CameraSource` applies them to any of these sources with
VideoFolder's own functions (:mod:`anomalib_vadproto.data.camera_options`): the same frames kept by
timestamps, each cropped to the region, and every frame keeping its index in the recording.

Example:
    >>> source = open_source("Test004.mp4")  # doctest: +SKIP
    >>> for frame in source:  # doctest: +SKIP
    ...     frame.image.shape, frame.time
    ((240, 360, 3), 0.0)

"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from anomalib_vadproto.data.camera_options import (
    FrameRateSampler,
    folder_frame_times,
    keep_frames,
    roi_fits,
    roi_slices,
    video_frame_times,
)
from anomalib_vadproto.data.video_io import VideoReadError, index_video

__all__ = [
    "CameraOptions",
    "CameraSource",
    "Frame",
    "FrameFolderSource",
    "VideoReadError",
    "VideoSource",
    "VideoWriter",
    "open_source",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"})
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
#: FFmpeg input formats that capture live video (cameras, screens, generated test sources).
CAPTURE_FORMATS = frozenset(
    {
        "v4l2",
        "video4linux2",
        "avfoundation",
        "dshow",
        "vfwcap",
        "gdigrab",
        "x11grab",
        "kmsgrab",
        "android_camera",
        "lavfi",
    }
)


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: Position in the source, from 0.
        image: RGB ``uint8`` array ``(H, W, 3)``.
        time: Presentation time in seconds, or ``None`` when unknown (frame folders).

    """

    index: int
    image: np.ndarray
    time: float | None = None


def _natural_key(path: Path) -> list[int | str]:
    """Sort ``2.png`` before ``10.png`` (zero-padded names sort the same either way)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class FrameFolderSource:
    """The image files of a folder (``.tif``, ``.png``, ``.jpg``, ``.bmp``), in natural name order.

    Args:
        folder: The folder.
        fps: Frame rate reported for timestamps and written videos (frames carry no time of their own).

    Raises:
        FileNotFoundError: If the folder does not exist or holds no image file.

    """

    live = False

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        self.path = Path(folder)
        if not self.path.is_dir():
            msg = f"No frame folder at {self.path}."
            raise FileNotFoundError(msg)
        self.files = sorted(
            (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), key=_natural_key
        )
        if not self.files:
            msg = f"{self.path} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})."
            raise FileNotFoundError(msg)
        self.fps = Fraction(fps).limit_denominator(1001) if fps else None
        self.num_frames: int | None = len(self.files)
        self.name = self.path.name

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames."""
        from PIL import Image, UnidentifiedImageError

        for index, file in enumerate(self.files):
            try:
                with Image.open(file) as image:
                    array = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                msg = f"Cannot read frame {file}: {error}"
                raise VideoReadError(msg) from error
            yield Frame(index, array, None if self.fps is None else float(index / self.fps))


class VideoSource:
    """A video file, stream URL or capture device, decoded with PyAV (FFmpeg).

    Args:
        source: A file path, a URL (``rtsp://``, ``http(s)://``, ...) or a device (``/dev/video0`` with
            ``input_format="v4l2"``, which is the default for ``/dev/video*``).
        input_format: FFmpeg input format (demuxer) to force, e.g. ``v4l2``, ``avfoundation``, ``dshow``.
            URLs and :data:`CAPTURE_FORMATS` make the source *live*: it cannot be read twice, so only
            causal normalisers apply.
        options: FFmpeg format options, e.g. ``{"rtsp_transport": "tcp"}`` or ``{"video_size": "640x480"}``.
        timeout: Seconds to wait for a stream to open and for each read (streams only).

    Raises:
        FileNotFoundError: If ``source`` is a local path that does not exist.
        VideoReadError: If FFmpeg cannot open it or it has no video stream.

    """

    def __init__(
        self,
        source: str | Path,
        input_format: str | None = None,
        options: Mapping[str, str] | None = None,
        timeout: float | None = 10.0,
    ) -> None:
        import av

        text = str(source)
        is_url = text.lower().startswith(STREAM_PREFIXES) or "://" in text
        if text.startswith("/dev/video") and input_format is None:
            input_format = "v4l2"
        self.live = is_url or input_format in CAPTURE_FORMATS
        self.path = None if self.live else Path(text)
        if not self.live and not Path(text).is_file():
            msg = f"No video file at {text}." if not Path(text).is_dir() else f"{text} is a folder, not a video file."
            raise FileNotFoundError(msg)
        options = dict(options or {})
        if text.lower().startswith("rtsp") and "rtsp_transport" not in options:
            options["rtsp_transport"] = "tcp"
        try:
            self.container = av.open(
                text, mode="r", format=input_format, options=options, timeout=timeout if self.live else None
            )
        except av.error.FileNotFoundError as error:
            raise FileNotFoundError(f"No video at {text}.") from error
        except (av.error.FFmpegError, OSError) as error:
            msg = f"Cannot read {text} as video: {_ffmpeg_reason(error)}."
            raise VideoReadError(msg) from error
        if not self.container.streams.video:
            self.container.close()
            msg = f"{text} has no video stream."
            raise VideoReadError(msg)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.fps: Fraction | None = self.stream.average_rate or self.stream.guessed_rate or None
        self.num_frames = int(self.stream.frames) or None
        self.name = self.path.stem if self.path is not None else text
        self.source = text
        self.ended_early: str | None = None  # set when a file decodes clearly fewer frames than it announces

    def __iter__(self) -> Iterator[Frame]:
        """Decode and yield the frames; the container is closed when the iteration ends."""
        import av

        index = 0
        try:
            for decoded in self.container.decode(self.stream):
                time = float(decoded.time) if decoded.time is not None else None
                yield Frame(index, decoded.to_ndarray(format="rgb24"), time)
                index += 1
        except av.error.FFmpegError as error:
            msg = f"Cannot decode {self.source} after {index} frame(s): {_ffmpeg_reason(error)}."
            raise VideoReadError(msg) from error
        else:
            self._check_complete(index)
        finally:
            self.container.close()

    def announced_frames(self) -> tuple[int, str] | None:
        """Frames the file's header announces, or ``None`` (live sources, or a header without them).

        The stream's frame count when the container stores one (MP4, AVI), else the duration times the
        frame rate (Matroska, WebM): the stream's, or the container's when the video is its only stream
        (an audio track may outlast the video).

        Returns:
            ``(count, note)``: ``note`` is empty for a stored count, else says which duration gave it.

        """
        if self.live:
            return None
        if self.num_frames:
            return self.num_frames, ""
        seconds = None
        if self.stream.duration and self.stream.time_base:
            seconds = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration and len(self.container.streams) == 1:
            import av

            seconds = self.container.duration / av.time_base
        if not seconds or not self.fps:
            return None
        rate = float(self.fps)
        return round(seconds * rate), f" (from its duration, {seconds:.2f} s at {rate:g} fps)"

    def _check_complete(self, decoded: int) -> None:
        """Warn once when a file ended clearly before the frames its header announces (a file cut short).

        Headers and decoders may disagree by a frame or two (edit lists, a duration that includes the
        last frame's display time); a shortfall of more than ``max(2, 2 %)`` frames is a truncated file.
        The message is kept in :attr:`ended_early`.
        """
        announced = self.announced_frames()
        if announced is None or self.ended_early is not None:
            return
        count, note = announced
        if count - decoded > max(2, count // 50):
            self.ended_early = f"the file ended early: {decoded} of {count} announced frames decoded{note}"
            logger.warning("%s: %s; it was cut short or is damaged.", self.source, self.ended_early)

    def close(self) -> None:
        """Close the container (iterating to the end closes it too)."""
        self.container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ffmpeg_reason(error: BaseException) -> str:
    """FFmpeg's own words for an error, without the errno and path decoration."""
    reason = getattr(error, "strerror", None) or str(error)
    return f"{reason} (not a video FFmpeg can decode, or a damaged file)" if "Invalid data" in reason else reason


def open_source(
    source: str | Path,
    fps: float | None = None,
    input_format: str | None = None,
    options: Mapping[str, str] | None = None,
) -> FrameFolderSource | VideoSource:
    """Open a frame folder, video file, stream URL or capture device.

    Args:
        source: A folder of image files, a video file, a URL, or a device.
        fps: Frame rate for frame folders (ignored for video, which carries its own).
        input_format: FFmpeg input format for devices (``v4l2``, ``avfoundation``, ``dshow``).
        options: FFmpeg format options.

    Returns:
        An iterable of :class:`Frame` with ``name``, ``fps``, ``num_frames`` (``None`` if unknown)
        and ``live`` (``True`` for URLs and devices, which cannot be read twice).

    """
    if input_format is None and Path(str(source)).is_dir():
        return FrameFolderSource(source, fps=fps)
    return VideoSource(source, input_format=input_format, options=options)


@dataclass(frozen=True)
class CameraOptions:
    """The camera options an export carries: what training did to each recording before the model saw it.

    Attributes:
        fps: Keep the first frame of every ``1/fps`` seconds, by the frames' timestamps (``None``: every frame).
        roi: Crop each frame to ``(x, y, w, h)`` in the recording's pixels (``None``: the whole frame).
        folder_fps: Frame rate of frame folders (they carry no timestamps), unless the source states one; also
            the rate of a video file without timestamps or a stated rate, as in training.

    """

    fps: float | None = None
    roi: tuple[int, int, int, int] | None = None
    folder_fps: float = 25.0

    @classmethod
    def of(cls, metadata: object) -> CameraOptions | None:
        """Return the camera options of a model's metadata (a ``ModelMetadata``), or ``None`` when it has none."""
        options = getattr(metadata, "camera_options", None)
        if not options:
            return None
        roi = options.get("roi")
        return cls(
            fps=options.get("fps"),
            roi=None if roi is None else tuple(int(v) for v in roi),
            folder_fps=float(options.get("folder_fps") or 25.0),
        )

    def describe(self) -> str:
        """One phrase: what is applied (``fps 10 (...), roi [x=0, y=8, w=64, h=40]``)."""
        parts = []
        if self.fps is not None:
            parts.append(f"fps {self.fps:g} (the first frame of every 1/{self.fps:g} s, by timestamps)")
        if self.roi is not None:
            x, y, w, h = self.roi
            parts.append(f"roi [x={x}, y={y}, w={w}, h={h}] (a {w}x{h} crop)")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        """``{"fps", "roi", "folder_fps"}`` for JSON (``roi`` as a list)."""
        return {
            "fps": self.fps,
            "roi": None if self.roi is None else list(self.roi),
            "folder_fps": self.folder_fps if self.fps is not None else None,
        }


class CameraSource:
    """A source seen through an export's camera options: frames kept at ``fps`` by timestamps, cropped to ``roi``.

    The frames kept are those :class:`~anomalib_vadproto.VideoFolder` keeps of the same recording: for a
    video file they are chosen ahead from its packets' timestamps (:func:`~anomalib_vadproto.data.video_io.index_video`,
    nothing decoded), for a frame folder from its rate (the source's ``fps``, else ``folder_fps``), and for a
    live source frame by frame from the decoded timestamps. Each yielded :class:`Frame` keeps its
    ``index`` in the recording, so per-frame outputs name the recorded frames.

    Args:
        source: An opened frame folder, video file, stream or camera.
        options: The camera options to apply.

    Attributes:
        kept: The recorded frames kept, ascending, when known ahead (files and folders with ``fps``), else
            ``None`` (every frame, or decided frame by frame for a live source).
        num_frames: Frames this source yields, when known.
        recorded_frames: Frames of the recording (the source's own ``num_frames``).
        fps: The rate of the frames yielded (``fps`` when the recording is faster), if known.

    """

    def __init__(self, source: FrameFolderSource | VideoSource, options: CameraOptions) -> None:
        self.source, self.options = source, options
        self.live = source.live
        self.name = source.name
        self.path = source.path
        self.recorded_frames = source.num_frames
        own = float(source.fps) if source.fps else None
        is_folder = isinstance(source, FrameFolderSource)
        #: The rate of the recording's frames used to choose them (a folder's: the source's own, else folder_fps).
        self.recorded_fps = (own or options.folder_fps) if is_folder else own
        self.kept = self._kept_ahead()
        if self.kept is not None:
            self.num_frames: int | None = len(self.kept)
        else:
            self.num_frames = None if options.fps is not None else source.num_frames
        rates = [rate for rate in (self.recorded_fps, options.fps) if rate]
        self.fps: float | None = min(rates) if options.fps is not None and rates else own

    def _kept_ahead(self) -> tuple[int, ...] | None:
        fps = self.options.fps
        if fps is None or self.live:
            return None
        if isinstance(self.source, FrameFolderSource):
            return keep_frames(folder_frame_times(len(self.source.files), self.recorded_fps), fps)
        base = self.source.stream.time_base
        index = index_video(self.source.path)
        times = video_frame_times(index, Fraction(base) if base else None, self.options.folder_fps)
        return keep_frames(times, fps)

    @property
    def ended_early(self) -> str | None:
        """The source's note when a file ended clearly before the frames its header announces."""
        return getattr(self.source, "ended_early", None)

    def _crop(self, image: np.ndarray) -> np.ndarray:
        roi = self.options.roi
        if roi is None:
            return image
        if not roi_fits(roi, image.shape[:2]):
            x, y, w, h = roi
            msg = (
                f"The model's roi [x={x}, y={y}, w={w}, h={h}] (from its training camera) reaches beyond {self.name},"
                f" whose frames are {image.shape[1]}x{image.shape[0]} (width x height): score footage of the camera"
                " it was trained on, or pass --no-camera-options for footage that is already cropped."
            )
            raise ValueError(msg)
        rows, columns = roi_slices(roi)
        return np.ascontiguousarray(image[rows, columns])

    def __iter__(self) -> Iterator[Frame]:
        """Yield the kept frames, cropped, each with its index and time in the recording."""
        kept = None if self.kept is None else set(self.kept)
        sampler = FrameRateSampler(self.options.fps) if kept is None and self.options.fps is not None else None
        rate = Fraction(self.recorded_fps or self.options.folder_fps).limit_denominator(1_000_000)
        for frame in self.source:
            if kept is not None and frame.index not in kept:
                continue
            if sampler is not None:
                time = Fraction(frame.time) if frame.time is not None else frame.index / rate
                if not sampler.keep(time):
                    continue
            yield Frame(frame.index, self._crop(frame.image), frame.time)

    def reopen(self) -> CameraSource:
        """Open the same recording again with the same options (a second pass over a file or folder)."""
        fps = float(self.source.fps) if isinstance(self.source, FrameFolderSource) and self.source.fps else None
        return CameraSource(open_source(self.path, fps=fps), self.options)

    def close(self) -> None:
        """Close the underlying source."""
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


class VideoWriter:
    """Write RGB ``uint8`` frames to a video file with PyAV (H.264 via libx264, else MPEG-4 Part 2).

    Odd frame sizes are padded by one edge pixel (the 4:2:0 encoders need even sizes).

    Args:
        path: Output file (``.mp4``).
        fps: Frame rate.
        codec: Encoder name; ``None`` picks ``libx264`` if this FFmpeg has it, else ``mpeg4``.
        quality: x264 constant rate factor (lower is better; MPEG-4 gets a generous bit rate instead).

    """

    def __init__(self, path: str | Path, fps: float | Fraction = 25, codec: str | None = None, quality: int = 20):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.quality = int(quality)
        self.container = av.open(str(self.path), mode="w")
        self.stream = None
        self.frames = 0

    def _open_stream(self, height: int, width: int) -> None:
        self.stream = self.container.add_stream(self.codec, rate=self.fps)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self.stream.options = {"crf": str(self.quality), "preset": "veryfast"}
        else:
            self.stream.bit_rate = int(max(1_000_000, 0.5 * width * height * float(self.fps)))

    def write(self, image: np.ndarray) -> None:
        """Append one RGB ``uint8`` frame ``(H, W, 3)``; all frames must have the first frame's size."""
        import av

        height, width = image.shape[:2]
        if self.stream is None:
            self._open_stream(height, width)
        if (height + height % 2, width + width % 2) != (self.stream.height, self.stream.width):
            msg = (
                f"frame {self.frames} has size {(height, width)}, the video {(self.stream.height, self.stream.width)}."
            )
            raise ValueError(msg)
        if height % 2 or width % 2:
            image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.fps
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self.stream is not None:
            self.container.mux(self.stream.encode(None))
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
