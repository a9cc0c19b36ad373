"""Score every frame of a video, frame folder, stream or camera with an exported clip model.

One code path for files and live sources: frames are decoded lazily (:mod:`.video_io`), buffered
into clips and scored (:class:`~.inferencer.ClipInferencer`; clips batched for files, one at a time
for live sources), and each scored frame's raw cues are fused into a score by the chosen
normaliser (:mod:`.normalization`). :func:`score_source` returns a :class:`ScoreResult`;
:mod:`.writers` writes it to a folder and ``anomalib-vadproto score`` (:mod:`.score`) runs both.

A model trained with camera options (``VideoFolder``'s ``fps`` and ``roi``, carried by its export) gets
each source subsampled and cropped as in training (:class:`~.video_io.CameraSource`) unless
``camera_options=False``; every per-frame result then names its frame in the recording
(:attr:`ScoreResult.frames`).

A source that breaks off with a read error after some frames (a stream that drops, a damaged frame)
keeps the frames read so far: they are scored, and :attr:`ScoreResult.failure` says where the source
stopped. A file that decodes clearly fewer frames than its header announces (a file cut short) is
scored with a warning in :attr:`ScoreResult.extra`.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_vadproto.components.metadata import ModelMetadata

from .clip_model import ClipModel
from .inferencer import ClipInferencer
from .loader import load_clip_model
from .normalization import make_normalizer
from .overlay import render_overlay
from .video_io import (
    CameraOptions,
    CameraSource,
    FrameFolderSource,
    VideoReadError,
    VideoSource,
    VideoWriter,
    open_source,
)

logger = logging.getLogger(__name__)

VALIDATION_THRESHOLD = 0.5  # anomalib's post-processor maps its threshold to 0.5


@dataclass(frozen=True)
class SourceFailure:
    """Where a source broke off with a read error (the frames read before it were kept).

    Attributes:
        frames: Frames read before the error (so the failing frame has this index).
        time: Presentation time of the last frame read in seconds, or ``None`` if unknown.
        error: The read error's message.

    """

    frames: int
    time: float | None
    error: str

    def describe(self) -> str:
        """One line: where the source stopped and why."""
        last = f"frame {self.frames - 1}" if self.frames else "no frame"
        if self.time is not None and math.isfinite(self.time):
            last += f" at {self.time:.3f} s"
        reason = self.error.strip().splitlines()[0] if self.error.strip() else "read error"
        return f"the source failed after {self.frames} frame(s) (last read: {last}): {reason}"


@dataclass
class ScoreResult:
    """Per-frame results of one source; unscored frames (the first ``T - 1``, warm-up) hold NaN.

    Attributes:
        source: The source's name (file stem, folder name or URL).
        metadata: The model's metadata.
        normalization: The normaliser that produced :attr:`score`.
        times: Presentation time per frame in seconds (NaN when unknown).
        cues: Cue name -> raw value per frame.
        pred_score: anomalib's ``pred_score`` per frame (normalised with the validation bounds).
        pred_label: anomalib's ``pred_label`` per frame (1 = anomalous at the validation threshold).
        score: Fused, normalised anomaly score per frame.
        fps: The frame rate of the frames scored (the export's ``fps`` when it subsampled a faster
            recording), if known.
        seconds: Wall time of decoding, buffering, inference and normalisation (and of the overlay when a
            causal normaliser writes it on the fly; no other output).
        batch_size: Clips per model call.
        failure: Where the source broke off with a read error, if it did (the results cover the frames
            read before it).
        extra: Further facts: the overlay ``threshold`` and ``warnings`` (e.g. a file that ended early).
        source_frames: Each row's frame index in the recording (``None``: ``0 .. N - 1``); with the
            export's ``fps`` applied, the recorded frames kept (``0, 3, 6, ...`` for 30 fps at 10).
        camera_options: The export's camera options and whether they were applied (``applied``), or
            ``None`` when the export has none.

    """

    source: str
    metadata: ModelMetadata
    normalization: str
    times: np.ndarray
    cues: dict[str, np.ndarray]
    pred_score: np.ndarray
    pred_label: np.ndarray
    score: np.ndarray
    fps: float | None = None
    seconds: float = 0.0
    batch_size: int = 1
    failure: SourceFailure | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source_frames: np.ndarray | None = None
    camera_options: dict[str, Any] | None = None

    @property
    def frames(self) -> np.ndarray:
        """Each row's frame index in the recording: ``0 .. N - 1``, or the frames kept by the export's ``fps``."""
        if self.source_frames is None:
            return np.arange(len(self.score))
        return np.asarray(self.source_frames, dtype=np.int64)

    @property
    def scored(self) -> np.ndarray:
        """Mask of frames the model scored (frame ``T - 1`` on)."""
        return np.isfinite(self.pred_score)

    @property
    def frames_per_second(self) -> float:
        """Frames processed per second of :attr:`seconds`."""
        return len(self.score) / self.seconds if self.seconds > 0 else float("nan")

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> per-frame values, in the CSV's order."""
        return {
            "frame": self.frames,
            "time": self.times,
            **{f"cue_{name}": values for name, values in sorted(self.cues.items())},
            "pred_score": self.pred_score,
            "pred_label": self.pred_label,
            "score": self.score,
        }


def temporary_path(path: str | Path) -> Path:
    """Return an unused temporary name beside ``path``, with its suffix (writers pick formats by suffix).

    The name starts with a dot and holds ``.partial``; the folder is created. Nothing is written yet.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")


def _apply_camera_options(
    src: FrameFolderSource | VideoSource | CameraSource, options: CameraOptions | None, apply: bool
) -> tuple[FrameFolderSource | VideoSource | CameraSource, dict[str, Any] | None]:
    """Wrap ``src`` in the export's camera options (when it has any and ``apply``); log one line saying what."""
    if isinstance(src, CameraSource):  # already seen through options (the caller's own)
        return src, {**src.options.as_dict(), "applied": True}
    if options is None:
        return src, None
    record = {**options.as_dict(), "applied": bool(apply)}
    if not apply:
        logger.info(
            "%s: the model's camera options (%s) are not applied (--no-camera-options): every frame is scored whole.",
            src.name,
            options.describe(),
        )
        return src, record
    camera = CameraSource(src, options)
    kept = f"; {camera.num_frames} of its {camera.recorded_frames} frames kept" if camera.kept is not None else ""
    logger.info(
        "%s: applying the model's camera options from training: %s%s (--no-camera-options scores the input as it is).",
        src.name,
        options.describe(),
        kept,
    )
    return camera, record


def _expected_frames(src: FrameFolderSource | VideoSource | CameraSource, max_frames: int | None) -> int | None:
    """Frames the source will yield before ``max_frames`` recorded frames (for the progress bar), if known."""
    kept = getattr(src, "kept", None)
    if kept is not None and max_frames is not None:
        return sum(1 for frame in kept if frame < max_frames)
    return min(filter(None, (src.num_frames, max_frames)), default=None)


def score_source(
    model: ClipModel | str | Path,
    source: str | Path | FrameFolderSource | VideoSource | CameraSource,
    normalization: str | None = None,
    batch_size: int = 8,
    overlay: str | Path | None = None,
    device: str = "CPU",
    precision: str | None = "f32",
    threshold: float | None = None,
    warmup: int = 10,
    window: int | None = None,
    max_frames: int | None = None,
    fps: float | None = None,
    input_format: str | None = None,
    options: Mapping[str, str] | None = None,
    resize: bool = True,
    progress: bool = False,
    camera_options: bool = True,
) -> ScoreResult:
    """Score every frame of a source with an exported model.

    A read error after some frames (a stream that drops, a damaged frame) does not discard them: the
    frames read so far are scored, the error is logged and recorded in :attr:`ScoreResult.failure`.

    Args:
        model: A loaded clip model or the path of ``model.xml`` / ``model.onnx`` / ``model.pt``.
        source: A video file, frame folder, stream URL or device, or an opened source.
        normalization: One of ``offline``, ``running``, ``running-std``, ``validation``; ``None``
            picks ``offline`` for files and folders, ``running`` for live sources.
        batch_size: Clips per model call for files (live sources score one clip at a time).
        overlay: Write an overlay video there (``.mp4``), atomically: under a temporary name beside it,
            renamed when the video is complete (a failed run leaves an earlier file there untouched).
        device: Inference device (``CPU``, ``GPU``, ``AUTO``; torch names for ``.pt``).
        precision: OpenVINO inference precision (``f32``, ``bf16``, ``f16``; ``None``: the device's choice).
        threshold: Score from which overlay frames are flagged (default: 0.5 for ``validation``).
        warmup: Frames without a score at the start of the streaming normalisers.
        window: Frames that set the ``running`` bounds (``None``: all frames so far).
        max_frames: Stop after this many frames of the source (recorded frames, before the export's ``fps``).
        fps: Frame rate of a frame folder (timestamps, overlay).
        input_format: FFmpeg input format for devices (``v4l2``, ``avfoundation``, ``dshow``).
        options: FFmpeg options for streams and devices.
        resize: Resize frames to the model's input size when they differ (else raise).
        progress: Show a progress bar.
        camera_options: Apply the camera options the model's export carries (``fps``: the frames kept by
            timestamps as in training; ``roi``: each frame cropped before the model's resize); ``False``
            scores every frame whole (footage already subsampled and cropped). Without options: no effect.

    Returns:
        The per-frame results.

    Raises:
        FileNotFoundError: Missing model or source.
        ValueError: Unreadable video (:class:`~.video_io.VideoReadError`) or model, a source shorter than a
            clip (also when it broke off that early), a frame-size or clip-length mismatch, or offline
            normalisation on a live source.

    """
    clip_model = load_clip_model(model, device, precision) if isinstance(model, (str, Path)) else model
    src = source if isinstance(source, (FrameFolderSource, VideoSource, CameraSource)) else None
    if src is None:
        src = open_source(source, fps=fps, input_format=input_format, options=options)
    meta = clip_model.metadata
    src, camera_record = _apply_camera_options(src, CameraOptions.of(meta), camera_options)
    normalization = normalization or ("running" if src.live else "offline")
    normalizer = make_normalizer(normalization, meta, warmup=warmup, window=window)
    if src.live and not normalizer.causal:
        msg = f"{src.name} is a live source: offline normalisation needs the whole video; use running or validation."
        raise ValueError(msg)
    if src.live and batch_size != 1:
        logger.info("Live source: scoring one clip per frame (batch size 1) instead of %d.", batch_size)
        batch_size = 1
    if threshold is None and normalization == "validation":
        threshold = VALIDATION_THRESHOLD
    cue_names = sorted(meta.cue_weights)
    keep = {"pred_score", "pred_label", *(f"cue_{name}" for name in cue_names)}
    if overlay is not None:
        keep.add("anomaly_map")
    inferencer = ClipInferencer(clip_model, resize=resize, outputs=keep)
    in_loop_overlay = overlay is not None and normalizer.causal
    partial_overlay = None if overlay is None else temporary_path(overlay)
    stored_maps: list[np.ndarray | None] = []

    times: list[float] = []
    indices: list[int] = []  # each frame's index in the recording
    rows: dict[str, list[float]] = {name: [] for name in ("pred_score", "pred_label", "score", *cue_names)}
    failures: list[SourceFailure] = []
    normalizer.reset()

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in src:
                if max_frames is not None and frame.index >= max_frames:
                    break
                times.append(math.nan if frame.time is None else frame.time)
                indices.append(frame.index)
                yield frame.image
        except VideoReadError as error:  # keep what was read: the inferencer scores the frames buffered so far
            failures.append(SourceFailure(len(times), times[-1] if times else None, str(error)))
            logger.warning("%s: %s; scoring the frames read before it.", src.name, failures[0].describe())

    from tqdm.auto import tqdm

    total = _expected_frames(src, max_frames)
    bar = tqdm(total=total, unit="frame", desc=str(src.name), disable=None if progress else True, leave=False)
    try:
        writer = VideoWriter(partial_overlay, fps=src.fps or 25) if in_loop_overlay else None
        start = time.perf_counter()
        try:
            for result in inferencer.run(frames(), batch_size=batch_size, keep_images=in_loop_overlay):
                out = result.outputs
                if result.scored:
                    cues = {name: np.asarray([out[f"cue_{name}"]]) for name in cue_names}
                    score = normalizer.update(cues, [out["pred_score"]])[0] if normalizer.causal else math.nan
                else:
                    cues, score = {name: [math.nan] for name in cue_names}, math.nan
                for name in cue_names:
                    rows[name].append(float(cues[name][0]))
                rows["pred_score"].append(float(out.get("pred_score", math.nan)))
                rows["pred_label"].append(float(out.get("pred_label", math.nan)))
                rows["score"].append(float(score))
                anomaly_map = out.get("anomaly_map")
                if writer is not None:
                    label = f"frame {indices[result.index]}"
                    writer.write(render_overlay(result.image, anomaly_map, score, label, threshold))
                elif overlay is not None:
                    stored_maps.append(
                        None if anomaly_map is None else np.round(np.clip(anomaly_map, 0, 1) * 255).astype(np.uint8)
                    )
                bar.update(1)
        except KeyboardInterrupt:
            logger.warning("Interrupted: keeping the %d frames read so far.", len(rows["score"]))
        finally:
            bar.close()
            if writer is not None:
                writer.close()

        failure = failures[0] if failures else None
        count = len(rows["score"])
        if count < meta.clip_length:
            kept = " kept by the model's fps" if isinstance(src, CameraSource) and src.options.fps else ""
            msg = (
                f"{src.name} has {count} frame(s){kept}; the model ({meta.model}) scores clips of"
                f" {meta.clip_length} frames, so nothing was scored" + (f" ({failure.describe()})." if failure else ".")
            )
            raise ValueError(msg)
        arrays = {name: np.asarray(values, dtype=np.float64) for name, values in rows.items()}
        scored = np.isfinite(arrays["pred_score"])
        if not normalizer.causal:
            arrays["score"][scored] = normalizer.normalize(
                {name: arrays[name][scored] for name in cue_names}, arrays["pred_score"][scored]
            )
        seconds = time.perf_counter() - start
        ended_early = getattr(src, "ended_early", None)
        result = ScoreResult(
            source=str(src.name),
            metadata=meta,
            normalization=normalization,
            times=np.asarray(times[:count], dtype=np.float64),
            cues={name: arrays[name] for name in cue_names},
            pred_score=arrays["pred_score"],
            pred_label=arrays["pred_label"],
            score=arrays["score"],
            fps=None if src.fps is None else float(src.fps),
            seconds=seconds,
            batch_size=batch_size,
            failure=failure,
            extra={"threshold": threshold, "warnings": [ended_early] if ended_early else []},
            source_frames=np.asarray(indices[:count], dtype=np.int64),
            camera_options=camera_record,
        )
        if overlay is not None and writer is None:  # offline scores exist only now: a second pass over the source
            if isinstance(src, CameraSource):
                again = src.reopen()
            else:
                again = open_source(src.path, fps=float(src.fps) if src.fps else None)
            with VideoWriter(partial_overlay, fps=again.fps or 25) as second:
                # the stored maps first: the pass stops after the frames scored, before a frame that failed
                for row, (heat, frame) in enumerate(zip(stored_maps, again, strict=False)):
                    heat_map = None if heat is None else heat.astype(np.float32) / 255
                    label = f"frame {frame.index}"
                    second.write(render_overlay(frame.image, heat_map, result.score[row], label, threshold))
        if partial_overlay is not None:
            os.replace(partial_overlay, overlay)
    except BaseException:
        if partial_overlay is not None:
            partial_overlay.unlink(missing_ok=True)
        raise
    return result
