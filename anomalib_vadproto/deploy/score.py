"""Score a video, frame folder, stream or camera with an exported model: ``anomalib-vadproto score``.

One code path for files and live sources: frames are decoded lazily (:mod:`.video_io`), buffered
into clips and scored (:class:`~.inferencer.ClipInferencer`; clips batched for files, one at a time
for live sources), and each scored frame's raw cues are fused into a score by the chosen
normaliser (:mod:`.normalization`). Outputs: ``scores.csv``, ``scores.json``, ``score_curve.png`` and
with ``--overlay`` ``overlay.mp4`` (anomaly map blended over each frame, score burnt in).

    anomalib-vadproto score model.xml video.mp4 --output out/ --normalization offline --overlay
    anomalib-vadproto score model.xml rtsp://camera/stream --normalization running --max-frames 1000
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
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
from .video_io import FrameFolderSource, VideoSource, VideoWriter, open_source

logger = logging.getLogger(__name__)

VALIDATION_THRESHOLD = 0.5  # anomalib's post-processor maps its threshold to 0.5


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

    Args:
        model: A loaded clip model or the path of ``model.xml`` / ``model.onnx`` / ``model.pt``.
        source: A video file, frame folder, stream URL or device, or an opened source.
        normalization: One of ``offline``, ``running``, ``running-std``, ``validation``; ``None``
            picks ``offline`` for files and folders, ``running`` for live sources.
        batch_size: Clips per model call for files (live sources score one clip at a time).
        overlay: Write an overlay video there (``.mp4``).
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
        ValueError: Unreadable video (:class:`~.video_io.VideoReadError`), a source shorter than a clip,
            a frame-size or clip-length mismatch, or offline normalisation on a live source.

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
    writer = VideoWriter(overlay, fps=src.fps or 25) if in_loop_overlay else None
    stored_maps: list[np.ndarray | None] = []

    times: list[float] = []
    rows: dict[str, list[float]] = {name: [] for name in ("pred_score", "pred_label", "score", *cue_names)}
    normalizer.reset()

    def frames() -> Iterator[np.ndarray]:
        for frame in src:
            if max_frames is not None and frame.index >= max_frames:
                break
            times.append(math.nan if frame.time is None else frame.time)
            yield frame.image

    from tqdm.auto import tqdm

    total = min(filter(None, (src.num_frames, max_frames)), default=None)
    bar = tqdm(total=total, unit="frame", desc=str(src.name), disable=None if progress else True, leave=False)
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

    count = len(rows["score"])
    if count < meta.clip_length:
        msg = (
            f"{src.name} has {count} frame(s); the model ({meta.model}) scores clips of {meta.clip_length} frames,"
            " so nothing was scored."
        )
        raise ValueError(msg)
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in rows.items()}
    scored = np.isfinite(arrays["pred_score"])
    if not normalizer.causal:
        arrays["score"][scored] = normalizer.normalize(
            {name: arrays[name][scored] for name in cue_names}, arrays["pred_score"][scored]
        )
    seconds = time.perf_counter() - start
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
        extra={"threshold": threshold},
    )
    if overlay is not None and writer is None:  # offline scores exist only now: a second pass over the source
        again = open_source(src.path, fps=float(src.fps) if src.fps else None)
        with VideoWriter(overlay, fps=again.fps or 25) as second:
            for frame, heat in zip(again, stored_maps, strict=False):
                heat_map = None if heat is None else heat.astype(np.float32) / 255
                label = f"frame {frame.index}"
                second.write(render_overlay(frame.image, heat_map, result.score[frame.index], label, threshold))
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


def write_outputs(
    result: ScoreResult,
    output_dir: str | Path,
    labels: np.ndarray | None = None,
    model_path: str | None = None,
) -> dict[str, Path]:
    """Write ``scores.csv``, ``scores.json`` and ``score_curve.png`` for a result.

    Args:
        result: The per-frame results.
        output_dir: Folder (created).
        labels: Optional 0/1 ground truth per frame: shaded in the curve; the JSON gets the AUC.
        model_path: Recorded in the JSON.

    Returns:
        Output name -> path.

    Raises:
        ValueError: If ``labels`` is shorter than the scored frames.

    """
    from anomalib_vadproto.visualization.curves import plot_score_curve

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = result.columns()
    names = list(columns)
    rows = [
        dict(zip(names, (_cell(columns[name][i]) for name in names), strict=True)) for i in range(len(result.score))
    ]
    paths = {
        "csv": output_dir / "scores.csv",
        "json": output_dir / "scores.json",
        "curve": output_dir / "score_curve.png",
    }
    with paths["csv"].open("w", newline="") as handle:
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
        "rows": rows,
    }
    paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    title = f"{result.source} - {result.metadata.model} - {result.normalization}"
    if auc is not None:
        title += f" - AUC {auc:.3f}"
    plot_score_curve(
        result.frames[valid],
        result.score[valid],
        None if labels is None else labels[valid],
        title=title,
        path=paths["curve"],
        threshold=result.extra.get("threshold"),
    )
    summary_auc = f", AUC {auc:.3f}" if auc is not None else ""
    logger.debug("Wrote %s%s", ", ".join(str(p) for p in paths.values()), summary_auc)
    return paths


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
        ),
        epilog=(
            "Normalisations: offline = the papers' per-video min-max of each cue over the whole video, fused with"
            " the model's weights (files only); running = min-max over the frames seen so far; running-std ="
            " mean +- 3 std of the frames seen so far; validation = anomalib's pred_score (bounds from validation)."
        ),
    )
    parser.add_argument("model", help="exported model: model.xml, model.onnx or model.pt")
    parser.add_argument("source", metavar="VIDEO", help="video file, frame folder, stream URL or device (/dev/video0)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="output folder (default: scores/<source name>)")
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
    parser.add_argument("--labels", type=Path, default=None, help="0/1 per frame (.npy or text): curve shading, AUC")
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
    """Run ``anomalib-vadproto score``; returns the exit status (errors: one line on stderr, status 1)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    if args.trust_remote_code:
        import os

        os.environ["TRUST_REMOTE_CODE"] = "1"
    output = args.output or Path("scores") / _safe_name(str(args.source))
    try:
        labels = read_labels(args.labels) if args.labels else None
        result = score_source(
            args.model,
            args.source,
            normalization=args.normalization,
            batch_size=args.batch_size,
            overlay=output / "overlay.mp4" if args.overlay else None,
            device=args.device,
            precision=None if args.precision == "auto" else args.precision,
            threshold=args.threshold,
            warmup=args.warmup,
            window=args.window,
            max_frames=args.max_frames,
            fps=args.fps,
            input_format=args.input_format,
            options=_options(args.option),
            resize=not args.no_resize,
            progress=not args.no_progress,
        )
        paths = write_outputs(result, output, labels=labels, model_path=str(args.model))
    except (OSError, ValueError, RuntimeError) as error:
        if args.debug:
            raise
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        print(f"anomalib-vadproto score: error: {message}", file=sys.stderr)
        return 1
    valid = np.isfinite(result.score)
    peak = int(np.nanargmax(np.where(valid, result.score, -np.inf))) if valid.any() else None
    written = ", ".join(p.name for p in paths.values()) + (", overlay.mp4" if args.overlay else "")
    print(
        f"Scored {int(result.scored.sum())} of {len(result.score)} frames of {result.source} with"
        f" {result.metadata.model} ({result.normalization} normalisation, {result.frames_per_second:.1f} frames/s)"
        + (f"; highest score {result.score[peak]:.3f} at frame {peak}" if peak is not None else "")
        + f". Wrote {written} to {output}."
    )
    return 0
