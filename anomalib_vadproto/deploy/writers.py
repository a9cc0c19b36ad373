"""Write the results of :func:`~.scoring.score_source`: ``scores.csv``, ``scores.json``, ``score_curve.png``.

With an overlay video, ``overlay.mp4`` joins them. Results are never mixed or silently replaced: the
default folder is ``scores/<name>-<hash>`` (:func:`default_output_dir`; the hash: 8 hex digits of the
SHA-1 of the input's absolute path or URL, so two inputs of one name get two folders, and a rerun of
one input finds its earlier folder); a folder that already holds score outputs is refused
(:func:`check_output_dir`) unless overwriting is asked for, which also removes the outputs of the
earlier run that this run does not write (an old ``overlay.mp4``). Every file is written under a
temporary name in the folder (:func:`~.scoring.temporary_path`) and renamed when all outputs are
complete, so a failed run leaves the folder as it was.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .scoring import ScoreResult, temporary_path

logger = logging.getLogger(__name__)

#: The files one run writes into its output folder (``overlay.mp4`` only with an overlay).
SCORE_OUTPUTS = ("scores.csv", "scores.json", "score_curve.png", "overlay.mp4")


class OutputExistsError(FileExistsError):
    """Raised when an output folder already holds score outputs and overwriting was not asked for."""


def _cell(value: Any) -> Any:  # noqa: ANN401
    """Return a JSON/CSV-friendly scalar: ints stay ints, NaN becomes ``None``."""
    if isinstance(value, (np.integer, int)):
        return int(value)
    value = float(value)
    return None if not math.isfinite(value) else value


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


def _safe_name(text: str) -> str:
    stem = Path(text.rstrip("/\\")).stem if "://" not in text else text.split("://", 1)[1]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "source"


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
        labels: Optional 0/1 ground truth per frame of the recording: shaded in the curve; the JSON gets the
            AUC. Where the export's ``fps`` kept some frames, the labels of those frames are used
            (:attr:`~.scoring.ScoreResult.frames`).
        model_path: Recorded in the JSON.
        overlay: An overlay video written for this result (e.g. by :func:`~.scoring.score_source` to a
            :func:`~.scoring.temporary_path` in ``output_dir``); it is moved in as ``overlay.mp4`` with the
            other files.
        overwrite: Replace the score outputs an earlier run left in ``output_dir``; without it such a
            folder is refused.

    Returns:
        Output name -> path.

    Raises:
        OutputExistsError: If the folder holds score outputs and ``overwrite`` is off.
        ValueError: If ``labels`` do not reach the last frame scored.

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
        frames = result.frames  # the recorded frames of the rows (the kept ones with the export's fps)
        reached = int(frames[-1]) + 1 if len(frames) else 0
        if len(labels) < reached:
            msg = f"the labels cover {len(labels)} frames, the source has {reached}."
            raise ValueError(msg)
        labels = np.asarray(labels)[frames]
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
        "camera_options": result.camera_options,
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
