"""``anomalib-vadproto score``: score a video, frame folder, stream or camera with an exported model.

The command reads the source and scores it (:func:`~.scoring.score_source`), then writes
``scores.csv``, ``scores.json``, ``score_curve.png`` and with ``--overlay`` ``overlay.mp4`` (anomaly
map blended over each frame, score burnt in) into one folder (:func:`~.writers.write_outputs`:
``scores/<name>-<hash>`` by default, an earlier run's outputs only replaced with ``--overwrite``,
all files renamed into place together).

    anomalib-vadproto score model.xml video.mp4 --output out/ --normalization offline --overlay
    anomalib-vadproto score model.xml rtsp://camera/stream --normalization running --max-frames 1000

A model trained with camera options (``VideoFolder``'s ``fps``, ``roi``) has them in its export: the source
is subsampled and cropped as in training, ``scores.csv`` names each row's frame in the recording, and
``--labels`` (one per recorded frame) are taken at the frames kept. ``--no-camera-options`` scores footage
that was already subsampled and cropped as it is.

Labels of the wrong length fail before scoring when the source's length is known (files, folders).
A source that breaks off with a read error after some frames (a stream that drops, a damaged frame)
gets the frames read so far scored and written, the error says where it stopped, and the command
exits with :data:`EXIT_SOURCE_FAILED` (3) instead of 0. Other errors exit with :data:`EXIT_ERROR`
(1), one line on stderr, nothing written; a file that decodes clearly fewer frames than its header
announces (a file cut short) is scored with a warning.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .normalization import NORMALIZATIONS
from .scoring import score_source, temporary_path
from .video_io import VideoSource, open_source
from .writers import check_output_dir, default_output_dir, write_outputs

EXIT_ERROR = 1
"""Exit status of ``score`` on an error: one line on stderr, nothing written."""
EXIT_SOURCE_FAILED = 3
"""Exit status when the source broke off with a read error: the frames read before it were scored and written."""


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
        " when the source's length is known (files, frame folders); one per recorded frame, taken at the frames"
        " kept when the model's export subsamples (fps)",
    )
    parser.add_argument(
        "--no-camera-options",
        action="store_true",
        help="do not apply the camera options the model was trained with (VideoFolder's fps and roi, carried by"
        " the export): score every frame of the input whole, for footage already subsampled and cropped",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of a frame folder (default: 25, or the training folder_fps of a model trained with fps)",
    )
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
            camera_options=not args.no_camera_options,
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
        + (f"; highest score {result.score[peak]:.3f} at frame {result.frames[peak]}" if peak is not None else "")
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
