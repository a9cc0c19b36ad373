"""Score every frame of a video, frame folder, stream or camera with an exported clip model.

One code path for files and live sources: frames are decoded lazily (:mod:`.video_io`), buffered
into clips and scored (:class:`~.inferencer.ClipInferencer`; clips batched for files, one at a time
for live sources), and each scored frame's raw cues are fused into a score by the chosen
normaliser (:mod:`.normalization`). :func:`score_source` returns a :class:`ScoreResult`;
:mod:`.writers` writes it to a folder and ``anomalib-vadproto score`` (:mod:`.score`) runs both.

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
from .video_io import FrameFolderSource, VideoReadError, VideoSource, VideoWriter, open_source

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
        fps: The source's frame rate, if known.
        seconds: Wall time of decoding, buffering, inference and normalisation (and of the overlay when a
            causal normaliser writes it on the fly; no other output).
        batch_size: Clips per model call.
        failure: Where the source broke off with a read error, if it did (the results cover the frames
            read before it).
        extra: Further facts: the overlay ``threshold`` and ``warnings`` (e.g. a file that ended early).

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

    @property
    def frames(self) -> np.ndarray:
        """Frame indices ``0 .. N - 1``."""
        return np.arange(len(self.score))

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


def score_source(
    model: ClipModel | str | Path,
    source: str | Path | FrameFolderSource | VideoSource,
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
        max_frames: Stop after this many frames (streams).
        fps: Frame rate of a frame folder (timestamps, overlay).
        input_format: FFmpeg input format for devices (``v4l2``, ``avfoundation``, ``dshow``).
        options: FFmpeg options for streams and devices.
        resize: Resize frames to the model's input size when they differ (else raise).
        progress: Show a progress bar.

    Returns:
        The per-frame results.

    Raises:
        FileNotFoundError: Missing model or source.
        ValueError: Unreadable video (:class:`~.video_io.VideoReadError`) or model, a source shorter than a
            clip (also when it broke off that early), a frame-size or clip-length mismatch, or offline
            normalisation on a live source.

    """
    clip_model = load_clip_model(model, device, precision) if isinstance(model, (str, Path)) else model
    src = source if isinstance(source, (FrameFolderSource, VideoSource)) else None
    if src is None:
        src = open_source(source, fps=fps, input_format=input_format, options=options)
    meta = clip_model.metadata
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
    rows: dict[str, list[float]] = {name: [] for name in ("pred_score", "pred_label", "score", *cue_names)}
    failures: list[SourceFailure] = []
    normalizer.reset()

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in src:
                if max_frames is not None and frame.index >= max_frames:
                    break
                times.append(math.nan if frame.time is None else frame.time)
                yield frame.image
        except VideoReadError as error:  # keep what was read: the inferencer scores the frames buffered so far
            failures.append(SourceFailure(len(times), times[-1] if times else None, str(error)))
            logger.warning("%s: %s; scoring the frames read before it.", src.name, failures[0].describe())

    from tqdm.auto import tqdm

    total = min(filter(None, (src.num_frames, max_frames)), default=None)
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
                    writer.write(render_overlay(result.image, anomaly_map, score, f"frame {result.index}", threshold))
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
            msg = (
                f"{src.name} has {count} frame(s); the model ({meta.model}) scores clips of {meta.clip_length} frames,"
                " so nothing was scored" + (f" ({failure.describe()})." if failure else ".")
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
        )
        if overlay is not None and writer is None:  # offline scores exist only now: a second pass over the source
            again = open_source(src.path, fps=float(src.fps) if src.fps else None)
            with VideoWriter(partial_overlay, fps=again.fps or 25) as second:
                # the stored maps first: the pass stops after the frames scored, before a frame that failed
                for heat, frame in zip(stored_maps, again, strict=False):
                    heat_map = None if heat is None else heat.astype(np.float32) / 255
                    label = f"frame {frame.index}"
                    second.write(render_overlay(frame.image, heat_map, result.score[frame.index], label, threshold))
        if partial_overlay is not None:
            os.replace(partial_overlay, overlay)
    except BaseException:
        if partial_overlay is not None:
            partial_overlay.unlink(missing_ok=True)
        raise
    return result
