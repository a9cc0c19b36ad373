"""Score a video, frame folder, stream or camera with an exported model: ``anomalib-vadproto score``.

One code path for files and live sources: frames are decoded lazily (:mod:`.video_io`), buffered
into clips and scored (:class:`~.inferencer.ClipInferencer`; clips batched for files, one at a time
for live sources), and each scored frame's raw cues are fused into a score by the chosen
normaliser (:mod:`.normalization`). Outputs: ``scores.csv``, ``scores.json``, ``score_curve.png`` and
with ``--overlay`` ``overlay.mp4`` (anomaly map blended over each frame, score burnt in).

    anomalib-vadproto score model.xml video.mp4 --output out/ --normalization offline --overlay
    anomalib-vadproto score model.xml rtsp://camera/stream --normalization running --max-frames 1000

Results are never mixed or silently replaced: the default folder is ``scores/<name>-<hash>`` (the hash:
8 hex digits of the SHA-1 of the input's absolute path or URL, so two inputs of one name get two
folders, and a rerun of one input finds its earlier folder); a folder that already holds score
outputs is refused unless ``--overwrite`` is given, which also removes the outputs of the earlier run
that this run does not write (an old ``overlay.mp4``). Every file is written under a temporary name in
the folder and renamed when all outputs are complete, so a failed run leaves the folder as it was.

Labels of the wrong length fail before scoring when the source's length is known (files, folders).
A source that breaks off with a read error after some frames (a stream that drops, a damaged frame)
keeps the frames read so far: they are scored and written, the error says where it stopped, and the
command exits with :data:`EXIT_SOURCE_FAILED` (3) instead of 0. Other errors exit with 1, one line
on stderr, nothing written; a file that decodes clearly fewer frames than its header announces
(a file cut short) is scored with a warning.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .clip_model import ClipModel, load_clip_model
from .inferencer import ClipInferencer
from .metadata import ModelMetadata
from .normalization import NORMALIZATIONS, make_normalizer
from .overlay import render_overlay
from .video_io import FrameFolderSource, VideoReadError, VideoSource, VideoWriter, open_source

logger = logging.getLogger(__name__)

VALIDATION_THRESHOLD = 0.5  # anomalib's post-processor maps its threshold to 0.5
#: The files one run writes into its output folder (``overlay.mp4`` only with an overlay).
SCORE_OUTPUTS = ("scores.csv", "scores.json", "score_curve.png", "overlay.mp4")
EXIT_ERROR = 1
"""Exit status of ``score`` on an error: one line on stderr, nothing written."""
EXIT_SOURCE_FAILED = 3
"""Exit status when the source broke off with a read error: the frames read before it were scored and written."""


class OutputExistsError(FileExistsError):
    """Raised when an output folder already holds score outputs and overwriting was not asked for."""


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


def _cell(value: Any) -> Any:  # noqa: ANN401
    """Return a JSON/CSV-friendly scalar: ints stay ints, NaN becomes ``None``."""
    if isinstance(value, (np.integer, int)):
        return int(value)
    value = float(value)
    return None if not math.isfinite(value) else value


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


def read_labels(path: str | Path) -> np.ndarray:
    """Read per-frame 0/1 labels from ``.npy`` or a text file (one value per line or comma-separated)."""
    path = Path(path)
    if not path.is_file():
        msg = f"No labels file at {path}."
        raise FileNotFoundError(msg)
    if path.suffix == ".npy":
        return np.load(path).reshape(-1).astype(np.int64)
    return np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None).reshape(-1).astype(np.int64)


def check_labels(
    labels: np.ndarray, num_frames: int | None, name: str, max_frames: int | None = None, path: str | Path | None = None
) -> None:
    """Check, before scoring, that per-frame labels fit a source whose length is known (files, frame folders).

    Args:
        labels: The labels.
        num_frames: The source's frame count (``None``: unknown, nothing to check).
        name: The source's name, for the message.
        max_frames: Frames that will be scored at most; then longer labels are fine.
        path: The labels file, for the message.

    Raises:
        ValueError: Unless there is one label per frame (or at least one per frame scored with ``max_frames``).

    """
    if num_frames is None:
        return
    needed = num_frames if max_frames is None else min(num_frames, max_frames)
    if len(labels) == num_frames or (max_frames is not None and len(labels) >= needed):
        return
    where = f"--labels {path}" if path is not None else "the labels"
    msg = f"{where} has {len(labels)} labels but {name} has {num_frames} frames; give one 0/1 label per frame."
    raise ValueError(msg)


def existing_outputs(output_dir: str | Path) -> list[str]:
    """Names of the score outputs (:data:`SCORE_OUTPUTS`) that ``output_dir`` already holds."""
    output_dir = Path(output_dir)
    return [name for name in SCORE_OUTPUTS if (output_dir / name).exists()]


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse a folder that already holds score outputs unless ``overwrite``.

    Raises:
        OutputExistsError: Naming the folder, the files and the ``--overwrite`` flag.
        NotADirectoryError: If ``output_dir`` is a file.

    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        msg = f"The output {output_dir} is a file, not a folder."
        raise NotADirectoryError(msg)
    found = existing_outputs(output_dir)
    if found and not overwrite:
        msg = (
            f"{output_dir} already holds score outputs ({', '.join(found)}); pass --overwrite to replace them,"
            " or choose another --output."
        )
        raise OutputExistsError(msg)


def default_output_dir(source: str | Path, input_format: str | None = None) -> Path:
    """Return ``scores/<name>-<hash>``: the default output folder of one input.

    ``<hash>`` is the first 8 hex digits of the SHA-1 of the input's absolute path (URLs, devices with an
    input format and other non-paths: of their text), so two inputs of the same name in different folders
    get different folders, and the same input always gets the same one.
    """
    text = str(source)
    local = input_format is None and "://" not in text
    key = str(Path(text).expanduser().resolve()) if local else text
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:8]
    return Path("scores") / f"{_safe_name(text)}-{digest}"


def write_outputs(
    result: ScoreResult,
    output_dir: str | Path,
    labels: np.ndarray | None = None,
    model_path: str | None = None,
    overlay: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``scores.csv``, ``scores.json`` and ``score_curve.png`` (and ``overlay.mp4``) for a result, atomically.

    Every file is written under a temporary name in ``output_dir`` and renamed onto its name
    (``os.replace``) only when all of them are complete; on any error the temporary files are removed
    and the folder is left as it was. With ``overwrite``, the score outputs of an earlier run that this
    run does not write (an old ``overlay.mp4``) are removed after the rename, so no file of another run
    stays beside the new scores.

    Args:
        result: The per-frame results.
        output_dir: Folder (created).
        labels: Optional 0/1 ground truth per frame: shaded in the curve; the JSON gets the AUC.
        model_path: Recorded in the JSON.
        overlay: An overlay video written for this result (e.g. by :func:`score_source` to a
            :func:`temporary_path` in ``output_dir``); it is moved in as ``overlay.mp4`` with the other files.
        overwrite: Replace the score outputs an earlier run left in ``output_dir``; without it such a
            folder is refused.

    Returns:
        Output name -> path.

    Raises:
        OutputExistsError: If the folder holds score outputs and ``overwrite`` is off.
        ValueError: If ``labels`` is shorter than the scored frames.

    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": output_dir / "scores.csv",
        "json": output_dir / "scores.json",
        "curve": output_dir / "score_curve.png",
    }
    if overlay is not None:
        paths["overlay"] = output_dir / "overlay.mp4"
    staged = {key: temporary_path(path) for key, path in paths.items()}
    try:
        _write_staged(result, staged, labels, model_path)
        if overlay is not None:
            shutil.move(overlay, staged["overlay"])
        for key, path in paths.items():
            os.replace(staged[key], path)
    except BaseException:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        raise
    written = {path.name for path in paths.values()}
    for name in SCORE_OUTPUTS:  # only reached with overwrite when an earlier run left files
        if name not in written:
            (output_dir / name).unlink(missing_ok=True)
    logger.debug("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def _write_staged(
    result: ScoreResult,
    staged: dict[str, Path],
    labels: np.ndarray | None,
    model_path: str | None,
) -> None:
    """Write the CSV, JSON and curve of :func:`write_outputs` to their temporary paths."""
    from anomalib_vadproto.visualization.curves import plot_score_curve

    columns = result.columns()
    names = list(columns)
    rows = [
        dict(zip(names, (_cell(columns[name][i]) for name in names), strict=True)) for i in range(len(result.score))
    ]
    with staged["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)

    valid = np.isfinite(result.score)
    auc = None
    if labels is not None:
        if len(labels) < len(result.score):
            msg = f"the labels cover {len(labels)} frames, the source has {len(result.score)}."
            raise ValueError(msg)
        labels = labels[: len(result.score)]
        picked = labels[valid]
        if picked.min(initial=1) == 0 and picked.max(initial=0) == 1:
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(picked, result.score[valid]))
    failure = result.failure
    failure_record = None
    if failure is not None:
        time_read = None if failure.time is None else _cell(failure.time)
        failure_record = {"frames": failure.frames, "time": time_read, "error": failure.error}
    summary = {
        "source": result.source,
        "model": model_path,
        "metadata": json.loads(result.metadata.to_json()),
        "normalization": result.normalization,
        "batch_size": result.batch_size,
        "frames": len(result.score),
        "scored_frames": int(valid.sum()),
        "fps": result.fps,
        "seconds": round(result.seconds, 3),
        "frames_per_second": round(result.frames_per_second, 2),
        "threshold": result.extra.get("threshold"),
        "auc": auc,
        "source_failure": failure_record,
        "warnings": list(result.extra.get("warnings", [])),
        "rows": rows,
    }
    staged["json"].write_text(json.dumps(summary, indent=1) + "\n")
    title = f"{result.source} - {result.metadata.model} - {result.normalization}"
    if auc is not None:
        title += f" - AUC {auc:.3f}"
    plot_score_curve(
        result.frames[valid],
        result.score[valid],
        None if labels is None else labels[valid],
        title=title,
        path=staged["curve"],
        threshold=result.extra.get("threshold"),
    )


def _options(pairs: Sequence[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            msg = f"--option takes KEY=VALUE, got {pair!r}."
            raise ValueError(msg)
        options[key] = value
    return options


def build_parser() -> argparse.ArgumentParser:
    """Build the ``anomalib-vadproto score`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="anomalib-vadproto score",
        description=(
            "Score every frame of a video file, frame folder, stream URL or camera with an exported video model"
            " (OpenVINO model.xml / model.onnx, or anomalib's torch model.pt). Writes scores.csv, scores.json and"
            " score_curve.png (and overlay.mp4 with --overlay). The first T-1 frames of a source get no score."
            " Outputs are written under temporary names and renamed when all are complete, so a failed run leaves"
            " the output folder as it was."
        ),
        epilog=(
            "Normalisations: offline = the papers' per-video min-max of each cue over the whole video, fused with"
            " the model's weights (files only); running = min-max over the frames seen so far; running-std ="
            " mean +- 3 std of the frames seen so far; validation = anomalib's pred_score (bounds from validation)."
            " Exit status: 0 = scored; 1 = error (one line on stderr, nothing written); 3 = the source broke off"
            " with a read error (a stream that dropped, a damaged frame): the frames read before it were scored and"
            " written, and the error line says where it stopped. A file that decodes clearly fewer frames than its"
            " header announces (cut short) is scored with a warning."
        ),
    )
    parser.add_argument("model", help="exported model: model.xml, model.onnx or model.pt")
    parser.add_argument("source", metavar="VIDEO", help="video file, frame folder, stream URL or device (/dev/video0)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=(
            "output folder (default: scores/<name>-<hash>, <hash> = the first 8 hex digits of the SHA-1 of the"
            " input's absolute path or URL: inputs of one name in different folders get different folders, a"
            " rerun of one input the same folder); a folder that already holds score outputs needs --overwrite"
        ),
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the score outputs in the output folder and remove those of the earlier run that this run"
        " does not write (e.g. an old overlay.mp4); the old files stay until this run has written all of its own",
    )
    parser.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=None,
        help="score normalisation (default: offline for files and folders, running for streams)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="clips per model call for files (default: 8)")
    parser.add_argument("--overlay", action="store_true", help="also write overlay.mp4 (map and score on each frame)")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (CPU, GPU, AUTO) or torch device for .pt")
    parser.add_argument(
        "--precision",
        choices=("f32", "bf16", "f16", "auto"),
        default="f32",
        help="OpenVINO inference precision of unquantised layers (default f32; auto: the device's choice)",
    )
    parser.add_argument("--threshold", type=float, default=None, help="flag overlay frames from this score")
    parser.add_argument("--warmup", type=int, default=10, help="frames without a score for running normalisers")
    parser.add_argument("--window", type=int, default=None, help="frames that set the running min-max (default: all)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="0/1 per frame (.npy or text): curve shading, AUC; checked against the frame count before scoring"
        " when the source's length is known (files, frame folders)",
    )
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder (default: 25)")
    parser.add_argument(
        "--input-format", default=None, help="FFmpeg input format for cameras: v4l2, avfoundation, dshow"
    )
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="FFmpeg input option")
    parser.add_argument("--no-resize", action="store_true", help="fail instead of resizing frames to the input size")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow loading a .pt export (a pickle; TRUST_REMOTE_CODE=1)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _safe_name(text: str) -> str:
    stem = Path(text.rstrip("/\\")).stem if "://" not in text else text.split("://", 1)[1]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "source"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``anomalib-vadproto score``; returns the exit status.

    Errors end with one line on stderr and :data:`EXIT_ERROR` (1), nothing written. A source that broke
    off with a read error after some frames gets its outputs written and :data:`EXIT_SOURCE_FAILED` (3).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    if args.trust_remote_code:
        os.environ["TRUST_REMOTE_CODE"] = "1"
    output = args.output or default_output_dir(args.source, args.input_format)
    created = not output.exists()
    source = overlay = None
    try:
        check_output_dir(output, args.overwrite)  # before any work
        labels = read_labels(args.labels) if args.labels else None
        source = open_source(args.source, fps=args.fps, input_format=args.input_format, options=_options(args.option))
        if labels is not None:
            check_labels(labels, source.num_frames, str(source.name), args.max_frames, path=args.labels)
        overlay = temporary_path(output / "overlay.mp4") if args.overlay else None
        result = score_source(
            args.model,
            source,
            normalization=args.normalization,
            batch_size=args.batch_size,
            overlay=overlay,
            device=args.device,
            precision=None if args.precision == "auto" else args.precision,
            threshold=args.threshold,
            warmup=args.warmup,
            window=args.window,
            max_frames=args.max_frames,
            resize=not args.no_resize,
            progress=not args.no_progress,
        )
        paths = write_outputs(
            result, output, labels=labels, model_path=str(args.model), overlay=overlay, overwrite=args.overwrite
        )
    except (OSError, ValueError, RuntimeError) as error:
        if overlay is not None:
            overlay.unlink(missing_ok=True)
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # a folder this run made and left empty
        if args.debug:
            raise
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        print(f"anomalib-vadproto score: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if isinstance(source, VideoSource):
            source.close()
    valid = np.isfinite(result.score)
    peak = int(np.nanargmax(np.where(valid, result.score, -np.inf))) if valid.any() else None
    written = ", ".join(p.name for p in paths.values())
    print(
        f"Scored {int(result.scored.sum())} of {len(result.score)} frames of {result.source} with"
        f" {result.metadata.model} ({result.normalization} normalisation, {result.frames_per_second:.1f} frames/s)"
        + (f"; highest score {result.score[peak]:.3f} at frame {peak}" if peak is not None else "")
        + f". Wrote {written} to {output}."
    )
    if result.failure is not None:
        print(
            f"anomalib-vadproto score: error: {result.failure.describe()}; the {len(result.score)} frames read"
            f" before it were scored and written to {output} (exit status {EXIT_SOURCE_FAILED}).",
            file=sys.stderr,
        )
        return EXIT_SOURCE_FAILED
    return 0
