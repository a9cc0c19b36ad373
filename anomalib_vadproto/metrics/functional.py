"""The papers' frame-level protocol as plain functions on NumPy arrays (no torch needed).

Per-video min-max normalisation, cue fusion, temporal smoothing, per-video and pooled AUCs, and the
:class:`ProtocolResult` they produce. :mod:`anomalib_vadproto.metrics.protocol` wraps them in a
torchmetrics metric for ``anomalib test``; the deployment path (:mod:`anomalib_vadproto.deploy`)
uses them directly, so scoring a video does not import torch's metric stack.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from anomalib_vadproto.errors import check_choice

SMOOTHING_MODES = ("nearest", "reflect", "hold")
"""Border handling modes accepted by :func:`smooth_per_video` (see the module docstring)."""


# ----------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------
def _as_1d(values: Any, name: str) -> np.ndarray:
    """Convert ``values`` to a 1-D numpy array, raising a ``ValueError`` for other shapes."""
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        msg = f"{name} must be 1-D, got shape {array.shape}."
        raise ValueError(msg)
    return array


def _as_1d_float(values: Any, name: str, video_index: np.ndarray | None = None) -> np.ndarray:
    """Convert ``values`` to a finite 1-D float64 array; name the first offending video if not finite."""
    array = _as_1d(values, name)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must be numeric, got dtype {array.dtype}."
        raise ValueError(msg)
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = f" (video {video_index[first].item()!r}, position {first})" if video_index is not None else ""
        msg = f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/inf), first {array[first]}{where}."
        raise ValueError(msg)
    return array


def _check_lengths(**arrays: np.ndarray) -> int:
    """Check that all arrays have the same length and return it."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        msg = f"Mismatched lengths: {lengths}."
        raise ValueError(msg)
    return next(iter(lengths.values()))


def _as_labels(labels: Any) -> np.ndarray:
    """Convert frame labels to a 1-D int64 array of 0/1, raising for any other value."""
    array = _as_1d(labels, "labels")
    if array.dtype.kind not in "biuf":
        msg = f"labels must be bool or numeric 0/1, got dtype {array.dtype}."
        raise ValueError(msg)
    if not np.isin(array, (0, 1)).all():
        bad = np.unique(array[~np.isin(array, (0, 1))])[:5]
        msg = f"labels must be binary (0 = normal, 1 = anomalous); found {bad.tolist()}."
        raise ValueError(msg)
    return array.astype(np.int64)


def _validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check that cue weights are finite, non-negative and have a positive sum."""
    if not isinstance(weights, Mapping) or not weights:
        msg = f"cue weights must be a non-empty mapping of cue name to weight, got {weights!r}."
        raise ValueError(msg)
    out: dict[str, float] = {}
    for name, weight in weights.items():
        if not isinstance(name, str):
            msg = f"cue names must be strings, got {name!r}."
            raise ValueError(msg)
        value = float(weight)
        if not np.isfinite(value) or value < 0:
            msg = f"cue weight for {name!r} must be finite and non-negative, got {weight!r}."
            raise ValueError(msg)
        out[name] = value
    if sum(out.values()) <= 0:
        msg = f"cue weights must have a positive sum, got {out}."
        raise ValueError(msg)
    return out


def _check_cue_names(given: Collection[str], expected: Collection[str], what: str = "cues") -> None:
    """Raise a ``ValueError`` listing missing/unexpected names if the two sets of cue names differ."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        msg = (
            f"The {what} do not match the cue weights: missing {missing}, unexpected {unexpected} "
            f"(weights are given for {sorted(expected)})."
        )
        raise ValueError(msg)


def _check_normal_cues(normal_cues: Collection[str], cue_names: Collection[str]) -> frozenset[str]:
    """Check that every normality cue is one of the weighted cues (catches typos such as 'PSNR')."""
    if isinstance(normal_cues, str):
        msg = f"normal_cues must be a collection of cue names, not the string {normal_cues!r}."
        raise ValueError(msg)
    normal = frozenset(normal_cues)
    unknown = sorted(normal - set(cue_names))
    if unknown:
        msg = (
            f"normal_cues {unknown} are not among the weighted cues {sorted(cue_names)}; "
            "pass normal_cues=() if every cue is anomaly-oriented."
        )
        raise ValueError(msg)
    return normal


def _video_groups(video_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group frames by video.

    Returns:
        The sorted unique video ids, the group number of each frame, and the frame count of each group.

    """
    unique, inverse = np.unique(video_index, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(unique))
    return unique, inverse, counts


# ----------------------------------------------------------------------------------------------------
# Numpy protocol functions
# ----------------------------------------------------------------------------------------------------
def _minmax_with_constant_mask(values: np.ndarray, video_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-video min-max normalisation; also returns a per-frame mask of videos with a constant cue."""
    if values.size == 0:
        return values.copy(), np.zeros(0, dtype=bool)
    unique, inverse, _ = _video_groups(video_index)
    lo = np.full(len(unique), np.inf)
    hi = np.full(len(unique), -np.inf)
    np.minimum.at(lo, inverse, values)
    np.maximum.at(hi, inverse, values)
    span = hi - lo
    constant = span <= 0
    safe_span = np.where(constant, 1.0, span)
    normalised = (values - lo[inverse]) / safe_span[inverse]
    frame_constant = constant[inverse]
    normalised[frame_constant] = 0.0
    # Guard against rounding just outside [0, 1].
    return np.clip(normalised, 0.0, 1.0), frame_constant


def minmax_per_video(values: Any, video_index: Any) -> np.ndarray:
    """Min-max normalise a cue over the frames of each video separately.

    ``g(x) = (x - min_video x) / (max_video x - min_video x)``. The frames of a video need not be
    contiguous or sorted.

    Args:
        values: Cue value per frame, shape ``(N,)``.
        video_index: Video identifier per frame (any sortable dtype), shape ``(N,)``.

    Returns:
        float64 array of shape ``(N,)`` in ``[0, 1]``. A video whose cue is constant gets 0 for all of
        its frames (not NaN).

    Raises:
        ValueError: If the inputs are not 1-D, differ in length, or ``values`` has NaN/inf.

    """
    video_index = _as_1d(video_index, "video_index")
    values = _as_1d_float(values, "values", video_index)
    _check_lengths(values=values, video_index=video_index)
    return _minmax_with_constant_mask(values, video_index)[0]


def _cue_anomalies(
    cues: Mapping[str, Any],
    video_index: Any,
    weights: Mapping[str, float],
    normal_cues: Collection[str],
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Validate the inputs of :func:`fuse_cues` and return the weights and per-cue anomaly scores."""
    weights = _validate_weights(weights)
    _check_cue_names(cues.keys(), weights.keys())
    normal = _check_normal_cues(normal_cues, weights.keys())
    video_index = _as_1d(video_index, "video_index")
    anomalies: dict[str, np.ndarray] = {}
    for name in sorted(weights):
        values = _as_1d_float(cues[name], f"cue {name!r}", video_index)
        _check_lengths(**{f"cue {name!r}": values, "video_index": video_index})
        normalised, constant = _minmax_with_constant_mask(values, video_index)
        anomaly = 1.0 - normalised if name in normal else normalised
        anomaly[constant] = 0.0
        anomalies[name] = anomaly
    return weights, anomalies


def fuse_cues(
    cues: Mapping[str, Any],
    video_index: Any,
    weights: Mapping[str, float],
    normal_cues: Collection[str] = ("psnr",),
) -> np.ndarray:
    """Fuse per-video normalised cues into one anomaly score per frame.

    ``S = sum_c w_c * a_c`` with ``a_c = 1 - g(c)`` for normality cues (high = normal, e.g. PSNR) and
    ``a_c = g(c)`` for anomaly cues (e.g. feature distances), ``g`` being :func:`minmax_per_video`.
    A cue that is constant within a video contributes 0 for that video, whatever its orientation.
    The weights are used as given (not renormalised); a global scale does not change any AUC.

    Args:
        cues: Cue name -> values per frame, each of shape ``(N,)``.
        video_index: Video identifier per frame, shape ``(N,)``.
        weights: Cue name -> non-negative weight; must name exactly the cues in ``cues``.
        normal_cues: Names of the cues where higher means normal. Must be a subset of the cue names.

    Returns:
        float64 anomaly score per frame, shape ``(N,)``; higher means more anomalous.

    Raises:
        ValueError: On mismatched cue names, bad weights, unknown normal cues, mismatched lengths or
            non-finite cue values (the message names the cue and the video).

    Example:
        >>> fuse_cues({"psnr": [30.0, 20.0], "distance": [0.0, 1.0]}, [0, 0], {"psnr": 0.6, "distance": 0.4})
        array([0., 1.])

    """
    weights, anomalies = _cue_anomalies(cues, video_index, weights, normal_cues)
    return sum(weights[name] * anomalies[name] for name in sorted(weights))


def gaussian_kernel(taps: int = 15, sigma: float = 2.0) -> np.ndarray:
    """Return a normalised, symmetric Gaussian kernel.

    Args:
        taps: Number of taps; must be a positive odd integer so that the kernel is centred.
        sigma: Standard deviation in frames; must be positive.

    Returns:
        float64 array of shape ``(taps,)`` with ``k[i] ∝ exp(-(i - taps//2)² / (2σ²))`` summing to 1.

    Raises:
        ValueError: If ``taps`` is not a positive odd integer or ``sigma`` is not positive.

    """
    if isinstance(taps, bool) or int(taps) != taps or taps < 1 or taps % 2 == 0:
        msg = f"smoothing taps must be a positive odd integer, got {taps!r}."
        raise ValueError(msg)
    if not np.isfinite(sigma) or sigma <= 0:
        msg = f"smoothing sigma must be positive, got {sigma!r}."
        raise ValueError(msg)
    offsets = np.arange(int(taps), dtype=np.float64) - int(taps) // 2
    kernel = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
    return kernel / kernel.sum()


def _smooth_1d(sequence: np.ndarray, kernel: np.ndarray, mode: str) -> np.ndarray:
    """Smooth one video's sequence with a symmetric kernel, keeping its length."""
    half = len(kernel) // 2
    if mode == "hold" and len(sequence) >= len(kernel):
        valid = np.convolve(sequence, kernel, mode="valid")
        return np.concatenate((np.full(half, valid[0]), valid, np.full(half, valid[-1])))
    padded = np.pad(sequence, half, mode="symmetric" if mode == "reflect" else "edge")
    return np.convolve(padded, kernel, mode="valid")


def smooth_per_video(
    scores: Any,
    video_index: Any,
    taps: int = 15,
    sigma: float = 2.0,
    mode: str = "nearest",
) -> np.ndarray:
    """Smooth each video's score sequence in time with a Gaussian kernel (APN's post-processing).

    Within a video, frames are taken in the order they appear in ``scores`` (sort them by frame index
    first); videos are never mixed. One vectorised convolution per video.

    Args:
        scores: Score per frame, shape ``(N,)``.
        video_index: Video identifier per frame, shape ``(N,)``.
        taps: Kernel length (positive, odd). APN: 15.
        sigma: Gaussian standard deviation in frames. APN: 2.
        mode: Border handling, one of :data:`SMOOTHING_MODES`: ``"nearest"`` (edge padding, default),
            ``"reflect"`` (``d c b a | a b c d`` padding) or ``"hold"`` (APN code: valid convolution,
            border outputs set to the nearest fully computed value; videos shorter than ``taps`` fall
            back to ``"nearest"``). All modes keep the length.

    Returns:
        float64 array of shape ``(N,)``, in the same frame order as ``scores``.

    Raises:
        ValueError: On bad shapes/lengths, non-finite scores, or invalid ``taps``/``sigma``/``mode``.

    """
    check_choice("smoothing mode", mode, SMOOTHING_MODES)
    kernel = gaussian_kernel(taps, sigma)
    video_index = _as_1d(video_index, "video_index")
    scores = _as_1d_float(scores, "scores", video_index)
    _check_lengths(scores=scores, video_index=video_index)
    if scores.size == 0 or len(kernel) == 1:
        return scores.copy()
    _, inverse, counts = _video_groups(video_index)
    order = np.argsort(inverse, kind="stable")
    out = np.empty_like(scores)
    start = 0
    for count in counts:
        frames = order[start : start + count]
        out[frames] = _smooth_1d(scores[frames], kernel, mode)
        start += count
    return out


def _binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN if only one class is present."""
    if labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def per_video_auc(labels: Any, scores: Any, video_index: Any) -> tuple[np.ndarray, np.ndarray]:
    """Compute the frame-level AUC of each video separately.

    Args:
        labels: Frame label, 1 = anomalous, shape ``(N,)``.
        scores: Anomaly score per frame (higher = more anomalous), shape ``(N,)``.
        video_index: Video identifier per frame, shape ``(N,)``.

    Returns:
        ``(videos, aucs)``: the sorted unique video ids and the AUC of each (NaN for a video whose
        frames are all one class).

    Raises:
        ValueError: On bad shapes, mismatched lengths, non-binary labels or non-finite scores.

    """
    video_index = _as_1d(video_index, "video_index")
    labels = _as_labels(labels)
    scores = _as_1d_float(scores, "scores", video_index)
    _check_lengths(labels=labels, scores=scores, video_index=video_index)
    unique, inverse, counts = _video_groups(video_index)
    order = np.argsort(inverse, kind="stable")
    aucs = np.empty(len(unique))
    start = 0
    for i, count in enumerate(counts):
        frames = order[start : start + count]
        aucs[i] = _binary_auc(labels[frames], scores[frames])
        start += count
    return unique, aucs


def _micro_macro(labels: np.ndarray, scores: np.ndarray, video_aucs: np.ndarray) -> tuple[float, float]:
    """Micro AUC of the pooled frames and mean of the defined per-video AUCs, warning on NaN."""
    micro = _binary_auc(labels, scores)
    if np.isnan(micro):
        warnings.warn(
            f"All {len(labels)} frames have label {int(labels[0])}: the frame-level AUC is undefined (NaN).",
            UserWarning,
            stacklevel=3,
        )
    defined = video_aucs[~np.isnan(video_aucs)]
    macro = float(defined.mean()) if defined.size else float("nan")
    if not defined.size and not np.isnan(micro):
        warnings.warn(
            "No video contains both normal and anomalous frames: the macro (per-video) AUC is NaN.",
            UserWarning,
            stacklevel=3,
        )
    return micro, macro


def protocol_auc(labels: Any, scores: Any, video_index: Any) -> tuple[float, float]:
    """Micro and macro frame-level AUC of already fused (and optionally smoothed) anomaly scores.

    Args:
        labels: Frame label, 1 = anomalous, shape ``(N,)``.
        scores: Anomaly score per frame (higher = more anomalous), shape ``(N,)``.
        video_index: Video identifier per frame, shape ``(N,)``.

    Returns:
        ``(micro, macro)`` as fractions in ``[0, 1]``. micro is ``roc_auc_score`` over all frames
        concatenated; NaN with a warning if all frames are one class. macro is the mean of the
        per-video AUCs over videos that contain both classes; NaN if there is none.

    Raises:
        ValueError: On empty input, bad shapes, mismatched lengths, non-binary labels or non-finite
            scores.

    """
    video_index = _as_1d(video_index, "video_index")
    labels = _as_labels(labels)
    scores = _as_1d_float(scores, "scores", video_index)
    if _check_lengths(labels=labels, scores=scores, video_index=video_index) == 0:
        msg = "protocol_auc needs at least one frame."
        raise ValueError(msg)
    _, aucs = per_video_auc(labels, scores, video_index)
    return _micro_macro(labels, scores, aucs)


def video_id(path: str) -> int:
    """Return the stable integer id of a video path (CRC-32 of its UTF-8 bytes), as stored in metric states."""
    return zlib.crc32(str(path).encode("utf-8"))


# ----------------------------------------------------------------------------------------------------
# Metric
# ----------------------------------------------------------------------------------------------------
def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ProtocolResult:
    """Per-video outcome of :class:`VideoProtocolAUC`, for plots and benchmark files.

    All arrays are read-only. Videos are sorted by name; frames within a video by frame index.

    Attributes:
        video_names: Video paths, sorted.
        frame_indices: Per video, the scored frame indices (int64).
        labels: Per video, the frame labels (int64, 1 = anomalous).
        scores: Per video, the fused anomaly scores (after smoothing if enabled).
        cue_anomaly: Cue name -> per video, the normalised anomaly-oriented cue (``1 - g`` for normality
            cues, ``g`` otherwise), before weighting and smoothing.
        video_auc: AUC of each video, NaN where the video has a single class.
        micro: Frame-level AUC over all frames concatenated (the papers' number), fraction.
        macro: Mean of the defined per-video AUCs, fraction (NaN if none is defined).

    """

    video_names: tuple[str, ...]
    frame_indices: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    scores: tuple[np.ndarray, ...]
    cue_anomaly: Mapping[str, tuple[np.ndarray, ...]]
    video_auc: np.ndarray
    micro: float
    macro: float

    @property
    def num_frames(self) -> int:
        """Total number of scored frames."""
        return int(sum(len(s) for s in self.scores))

    @property
    def all_labels(self) -> np.ndarray:
        """All frame labels concatenated in video order."""
        return np.concatenate(self.labels)

    @property
    def all_scores(self) -> np.ndarray:
        """All fused anomaly scores concatenated in video order."""
        return np.concatenate(self.scores)

    def cue_auc(self) -> dict[str, tuple[float, float]]:
        """Micro and macro AUC of each cue on its own (per-video normalised, unweighted, unsmoothed).

        A diagnostic of what each cue contributes to the fused score; the fusion weights stay the
        paper's. Fractions in ``[0, 1]``, as :func:`protocol_auc` returns them.
        """
        labels = self.all_labels
        video_index = np.concatenate([np.full(len(v), i) for i, v in enumerate(self.labels)])
        return {
            name: protocol_auc(labels, np.concatenate(values), video_index) for name, values in self.cue_anomaly.items()
        }
