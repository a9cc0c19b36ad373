"""Plots for video anomaly detection results: per-video score curves and prediction-error maps.

matplotlib is imported inside the functions, never at module import, so importing the package
(and the models) stays fast. Figures are created with :class:`matplotlib.figure.Figure` on an
Agg canvas: nothing is displayed, pyplot's global figure registry is not touched, and a returned
figure is freed by the garbage collector once it is no longer referenced (there is nothing to
close).

Functions:
    - :func:`plot_score_curve`: anomaly score over frames, ground-truth anomalous intervals shaded.
    - :func:`plot_protocol_result`: one score-curve PNG per video of a
      :class:`~anomalib_vadproto.metrics.protocol.ProtocolResult`.
    - :func:`plot_error_map`: target frame, predicted frame and their squared-error map.

Example:
    >>> import numpy as np
    >>> from anomalib_vadproto.visualization import plot_score_curve
    >>> frames = np.arange(100)
    >>> labels = (frames >= 40) & (frames < 70)
    >>> fig = plot_score_curve(frames, labels * 0.8 + 0.1, labels, title="Test003")
    >>> len(fig.axes[0].patches)  # one shaded interval
    1

"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["anomalous_intervals", "plot_error_map", "plot_protocol_result", "plot_score_curve"]

#: Label attached to the shaded ground-truth spans (the legend shows it once).
GT_SPAN_LABEL = "ground-truth anomaly"
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv"})


def _to_numpy(values: Any) -> np.ndarray:  # noqa: ANN401
    """Convert a tensor / array / sequence to a numpy array (tensors are detached and moved to CPU).

    Args:
        values (Any): ``torch.Tensor``, ``numpy.ndarray`` or sequence.

    Returns:
        np.ndarray: The values as an array.

    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """Create a stand-alone figure on an Agg canvas (no pyplot, no display).

    Args:
        figsize (tuple[float, float]): Figure size in inches.

    Returns:
        Figure: The new figure.

    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path | None, dpi: int = 100) -> None:
    """Save ``figure`` as PNG to ``path`` (parent folders are created); do nothing if ``path`` is None.

    Args:
        figure (Figure): Figure to save.
        path (str | Path | None): Destination file.
        dpi (int, optional): Resolution. Defaults to ``100``.

    """
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    logger.debug("Saved %s", path)


def anomalous_intervals(frames: Any, labels: Any) -> list[tuple[float, float]]:  # noqa: ANN401
    """Return the ``(start, end)`` frame spans of runs of anomalous labels.

    Frames are sorted first. A run is a maximal sequence of consecutive *samples* (in sorted order)
    labelled anomalous; each span covers its frames plus half a frame on either side, so a single
    anomalous frame ``f`` gives ``(f - 0.5, f + 0.5)``. Gaps in the frame indices inside a run
    (frames that were not scored) do not split it.

    Args:
        frames (Any): Frame indices, shape ``(N,)``.
        labels (Any): Frame labels, shape ``(N,)``; non-zero / ``True`` means anomalous.

    Returns:
        list[tuple[float, float]]: Spans in increasing frame order (empty if nothing is anomalous).

    Raises:
        ValueError: If ``frames`` and ``labels`` differ in length.

    """
    frames = _to_numpy(frames).reshape(-1).astype(np.float64)
    labels = _to_numpy(labels).reshape(-1).astype(bool)
    if len(frames) != len(labels):
        msg = f"frames and labels differ in length: {len(frames)} vs {len(labels)}."
        raise ValueError(msg)
    order = np.argsort(frames, kind="stable")
    frames, labels = frames[order], labels[order]
    edges = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(frames[a] - 0.5, frames[b] + 0.5) for a, b in zip(starts, stops, strict=True)]


def plot_score_curve(
    frames: Any,  # noqa: ANN401
    scores: Any,  # noqa: ANN401
    labels: Any = None,  # noqa: ANN401
    title: str = "",
    path: str | Path | None = None,
    threshold: float | None = None,
) -> Figure:
    """Plot one video's anomaly score over its frames.

    Ground-truth anomalous intervals (see :func:`anomalous_intervals`) are shaded with one
    ``axvspan`` each, so ``len(figure.axes[0].patches)`` equals the number of intervals; the score is
    drawn as a line over the sorted frames, and ``threshold`` (if given) as a dashed horizontal line.
    Axis labels are ``"frame"`` and ``"anomaly score"``.

    Args:
        frames (Any): Frame indices, shape ``(N,)`` (tensor, array or sequence; any order).
        scores (Any): Anomaly score per frame, shape ``(N,)``; higher = more anomalous.
        labels (Any, optional): Frame labels, shape ``(N,)``, non-zero = anomalous. Defaults to
            ``None`` (no shading).
        title (str, optional): Axes title. Defaults to ``""``.
        path (str | Path | None, optional): If given, the figure is saved there as PNG (parent
            folders are created). Defaults to ``None``.
        threshold (float | None, optional): Decision threshold to draw. Defaults to ``None``.

    Returns:
        Figure: The figure (one axes). It is not registered with pyplot; drop the reference to free
        it.

    Raises:
        ValueError: If the inputs differ in length.

    """
    frames_np = _to_numpy(frames).reshape(-1)
    scores_np = _to_numpy(scores).reshape(-1).astype(np.float64)
    if len(frames_np) != len(scores_np):
        msg = f"frames and scores differ in length: {len(frames_np)} vs {len(scores_np)}."
        raise ValueError(msg)
    order = np.argsort(frames_np, kind="stable")

    figure = _new_figure((8.0, 3.0))
    axes = figure.add_subplot(1, 1, 1)
    if labels is not None:
        for index, (start, end) in enumerate(anomalous_intervals(frames_np, labels)):
            axes.axvspan(
                start, end, color="tab:red", alpha=0.2, linewidth=0, label=GT_SPAN_LABEL if index == 0 else None
            )
    axes.plot(frames_np[order], scores_np[order], color="tab:blue", linewidth=1.2, label="anomaly score")
    if threshold is not None:
        axes.axhline(
            float(threshold), color="black", linestyle="--", linewidth=1.0, label=f"threshold = {float(threshold):.3g}"
        )
    axes.set_xlabel("frame")
    axes.set_ylabel("anomaly score")
    if title:
        axes.set_title(title)
    if len(frames_np):
        axes.set_xlim(float(frames_np.min()) - 0.5, float(frames_np.max()) + 0.5)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", fontsize="small", framealpha=0.8)
    _save(figure, path)
    return figure


def _first_attr(obj: Any, names: Sequence[str]) -> Any:  # noqa: ANN401
    """Return the first attribute of ``obj`` named in ``names`` that exists.

    Args:
        obj (Any): Object to read.
        names (Sequence[str]): Candidate attribute names, in order of preference.

    Returns:
        Any: The attribute value.

    Raises:
        AttributeError: If none of the names exists.

    """
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    msg = f"{type(obj).__name__} has none of the attributes {list(names)}."
    raise AttributeError(msg)


def _per_video(values: Any, video: str, index: int) -> Any:  # noqa: ANN401
    """Pick one video's entry from a sequence aligned with the videos or a mapping keyed by name.

    Args:
        values (Any): Sequence / array aligned with the video list, or mapping ``name -> value``.
        video (str): Video name.
        index (int): Position of the video in the video list.

    Returns:
        Any: The video's entry.

    """
    return values[video] if isinstance(values, Mapping) else values[index]


def _file_stem(video: str) -> str:
    """Turn a video name or path into a file-name stem (last path component, no video extension).

    Args:
        video (str): Video name or path, e.g. ``".../testing/frames/Test003"`` or ``"01_0014.avi"``.

    Returns:
        str: A stem safe to use as a file name.

    """
    path = Path(str(video).rstrip("/\\"))
    stem = path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".")
    return stem or "video"


def plot_protocol_result(result: Any, out_dir: str | Path) -> list[Path]:  # noqa: ANN401
    """Write one score-curve PNG per video of a protocol evaluation result.

    ``result`` is read duck-typed. The contract (satisfied by
    :class:`anomalib_vadproto.metrics.protocol.ProtocolResult`):

    - ``video_names`` (or ``videos``): sequence of video names/paths, sorted.
    - ``frame_indices`` (or ``frames``): per video, the scored frame indices.
    - ``labels``: per video, the frame labels (1 = anomalous).
    - ``scores``: per video, the fused anomaly scores (higher = more anomalous).
    - ``video_auc``: per video, the AUC (NaN where a video has a single class).
    - optional ``micro``: the pooled frame-level AUC, shown in every title.

    The per-video fields may be sequences aligned with the video list or mappings keyed by video
    name. Each PNG is ``<out_dir>/<video>.png``, where ``<video>`` is the last path component of the
    video name without a video-file extension (a numeric suffix is added on name clashes); its title
    shows the video name and its AUC.

    Args:
        result (Any): A ``ProtocolResult`` (or any object with the attributes above).
        out_dir (str | Path): Output folder (created if missing).

    Returns:
        list[Path]: The written PNG paths, in video order.

    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = [str(video) for video in _first_attr(result, ("video_names", "videos"))]
    frames = _first_attr(result, ("frame_indices", "frames"))
    labels = getattr(result, "labels", None)
    scores = result.scores
    video_auc = getattr(result, "video_auc", None)
    micro = getattr(result, "micro", None)

    paths: list[Path] = []
    used: set[str] = set()
    for index, video in enumerate(videos):
        stem = base = _file_stem(video)
        suffix = 1
        while stem in used:
            suffix += 1
            stem = f"{base}_{suffix}"
        used.add(stem)

        title = _file_stem(video)
        auc = float(_per_video(video_auc, video, index)) if video_auc is not None else float("nan")
        title += f" - AUC {auc:.3f}" if math.isfinite(auc) else " - AUC n/a (single class)"
        if micro is not None and math.isfinite(float(micro)):
            title += f" (all videos: {float(micro):.3f})"
        path = out_dir / f"{stem}.png"
        plot_score_curve(
            _per_video(frames, video, index),
            _per_video(scores, video, index),
            _per_video(labels, video, index) if labels is not None else None,
            title=title,
            path=path,
        )
        paths.append(path)
    logger.info("Wrote %d score curves to %s", len(paths), out_dir)
    return paths


def _to_hwc_image(image: Any) -> np.ndarray:  # noqa: ANN401
    """Convert an image to a float ``(H, W, C)`` (or ``(H, W)``) array.

    Accepts ``(C, H, W)`` with ``C`` in {1, 3} (torch layout), ``(H, W, C)`` or ``(H, W)``; a leading
    singleton batch/time dimension is dropped.

    Args:
        image (Any): Tensor / array image.

    Returns:
        np.ndarray: ``float64`` array, channels last (single-channel images become ``(H, W)``).

    Raises:
        ValueError: If the shape is not an image shape.

    """
    array = _to_numpy(image).astype(np.float64)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        msg = f"Expected an image of shape (C, H, W), (H, W, C) or (H, W); got {_to_numpy(image).shape}."
        raise ValueError(msg)
    return array


def plot_error_map(target: Any, prediction: Any, path: str | Path | None = None) -> Figure:  # noqa: ANN401
    """Show a target frame, the predicted frame and their squared-error map side by side.

    Both frames are displayed with the same intensity mapping: unchanged if their values lie in
    ``[0, 1]``, ``(x + 1) / 2`` if they lie in ``[-1, 1]``, joint min-max scaling otherwise. The error
    map is the per-pixel squared difference of the frames *as given* (mean over channels), drawn
    with the ``inferno`` colour map from 0 to its maximum; the panel title gives its mean and maximum
    (no colour bar, so the figure has exactly three axes).

    Args:
        target (Any): Ground-truth frame, ``(C, H, W)``, ``(H, W, C)`` or ``(H, W)``.
        prediction (Any): Predicted / reconstructed frame, same shape as ``target``.
        path (str | Path | None, optional): If given, the figure is saved there as PNG.
            Defaults to ``None``.

    Returns:
        Figure: The 1x3 figure.

    Raises:
        ValueError: If the two frames differ in shape or are not images.

    """
    target_np, prediction_np = _to_hwc_image(target), _to_hwc_image(prediction)
    if target_np.shape != prediction_np.shape:
        msg = f"target and prediction differ in shape: {target_np.shape} vs {prediction_np.shape}."
        raise ValueError(msg)
    error = (target_np - prediction_np) ** 2
    if error.ndim == 3:
        error = error.mean(axis=-1)

    low = min(target_np.min(), prediction_np.min())
    high = max(target_np.max(), prediction_np.max())
    if low >= 0.0 and high <= 1.0:
        shown = (target_np, prediction_np)
    elif low >= -1.0 and high <= 1.0:
        shown = ((target_np + 1.0) / 2.0, (prediction_np + 1.0) / 2.0)
    else:
        scale = max(high - low, 1e-12)
        shown = ((target_np - low) / scale, (prediction_np - low) / scale)

    height, width = error.shape
    panel_width = 3.2
    figure = _new_figure((3 * panel_width, panel_width * height / max(width, 1) + 0.6))
    axes = figure.subplots(1, 3)
    for ax, image, name in zip(axes[:2], shown, ("target", "prediction"), strict=True):
        ax.imshow(np.clip(image, 0.0, 1.0), cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.set_title(name)
    axes[2].imshow(error, cmap="inferno", vmin=0.0, vmax=max(float(error.max()), 1e-12))
    axes[2].set_title(f"squared error\nmean {error.mean():.3g}, max {error.max():.3g}", fontsize="small")
    for ax in axes:
        ax.set_axis_off()
    _save(figure, path)
    return figure
