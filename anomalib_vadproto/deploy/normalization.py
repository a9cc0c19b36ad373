"""Frame-score normalisation for deployment: the papers' offline protocol and streaming variants.

The papers min-max normalise each cue over the *whole* test video, then fuse the cues with the
method's weights (:func:`anomalib_vadproto.metrics.protocol.fuse_cues`). A live stream has no whole
video, so besides that ``offline`` normaliser there are normalisers that only use frames seen so far:

================  ======  =================================================================================
name              causal  score of frame ``k``
================  ======  =================================================================================
``offline``       no      the papers' protocol: per-video min-max of each cue over all frames, fused (and
                          smoothed in time when the model's protocol smooths, e.g. APN)
``running``       yes     each cue min-max normalised between its minimum and maximum over frames
                          ``0..k`` (or the last ``window`` frames), fused with the same weights
``running-std``   yes     each cue normalised between ``mean ± k_sigma * std`` of frames ``0..k``
                          (clipped to ``[0, 1]``), fused with the same weights
``validation``    yes     anomalib's ``pred_score``: the raw score normalised by the bounds the
                          post-processor fitted on the validation set (already done inside the graph)
================  ======  =================================================================================

The streaming normalisers return NaN for their first ``warmup`` frames (too little history to
normalise against). Temporal smoothing (APN) needs future frames and is applied by ``offline`` only.

All fusions go through :func:`~anomalib_vadproto.metrics.protocol.fuse_cues`, so the orientation of
normality cues (``1 - g``), the weights and the rule that a constant cue contributes 0 are those of
``anomalib test``. Normalising ``x`` against bounds ``[lo, hi]`` is min-max normalisation over the
three values ``{lo, hi, x}``, clipped to ``[0, 1]``: :func:`fuse_with_bounds` fuses each frame as a
"video" of those three values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from anomalib_vadproto.components.metadata import ModelMetadata
from anomalib_vadproto.metrics.functional import fuse_cues, smooth_per_video

NORMALIZATIONS = ("offline", "running", "running-std", "validation")


def fuse_with_bounds(
    cues: Mapping[str, Any],
    low: Mapping[str, Any],
    high: Mapping[str, Any],
    weights: Mapping[str, float],
    normal_cues: tuple[str, ...] | list[str] = (),
) -> np.ndarray:
    """Fuse cues normalised against per-frame bounds, with the papers' fusion rules.

    ``g = clip((x - lo) / (hi - lo), 0, 1)`` per cue and frame; normality cues enter as ``1 - g``; a
    cue whose frame values ``lo``, ``hi`` and ``x`` are all equal contributes 0; the result is
    ``sum_c w_c a_c``. Computed by :func:`~anomalib_vadproto.metrics.protocol.fuse_cues` on one
    three-value "video" ``{lo, hi, x}`` per frame.

    Args:
        cues: Cue name -> values ``(N,)``.
        low: Cue name -> lower bound per frame ``(N,)``.
        high: Cue name -> upper bound per frame ``(N,)``.
        weights: Cue name -> weight.
        normal_cues: Cues where higher means normal.

    Returns:
        float64 fused score ``(N,)``.

    """
    names = sorted(weights)
    length = len(np.asarray(cues[names[0]]))
    video = np.repeat(np.arange(length), 3)
    triples = {
        name: np.stack([np.asarray(low[name]), np.asarray(high[name]), np.asarray(cues[name])], axis=1).reshape(-1)
        for name in names
    }
    return fuse_cues(triples, video, weights, normal_cues)[2::3]


class Normalizer(ABC):
    """Turns per-frame raw cues (and ``pred_score``) of one video or stream into fused anomaly scores.

    Causal normalisers are stateful: :meth:`update` takes the next frames in order and returns their
    scores using only frames seen so far. :meth:`normalize` scores a whole sequence at once (for a
    causal normaliser, identical to feeding it frame by frame).

    Args:
        metadata: The model's metadata (cue weights and orientation, smoothing).

    """

    name: ClassVar[str]
    causal: ClassVar[bool] = True

    def __init__(self, metadata: ModelMetadata) -> None:
        self.metadata = metadata
        self.reset()

    def reset(self) -> None:  # noqa: B027  - stateless normalisers keep nothing
        """Forget all frames (start of a new video)."""

    @abstractmethod
    def update(self, cues: Mapping[str, Any], pred_score: Any) -> np.ndarray:  # noqa: ANN401
        """Score the next frames.

        Args:
            cues: Cue name (without the ``cue_`` prefix) -> raw values ``(n,)`` of the next frames.
            pred_score: anomalib's normalised ``pred_score`` of the same frames ``(n,)``.

        Returns:
            float64 scores ``(n,)``, NaN where the normaliser has no score yet.

        """

    def normalize(self, cues: Mapping[str, Any], pred_score: Any) -> np.ndarray:  # noqa: ANN401
        """Score a whole sequence (one video) from a fresh state; the state is reset afterwards."""
        self.reset()
        try:
            return self.update(cues, pred_score)
        finally:
            self.reset()

    def _weighted(self, cues: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Return the weighted cues as float64 arrays; raises if the model has no fusion or a cue is missing."""
        weights = self.metadata.cue_weights
        if not weights:
            msg = (
                f"{self.metadata.model} carries no cue fusion (cue weights) in its metadata: use"
                " --normalization validation."
            )
            raise ValueError(msg)
        missing = sorted(set(weights) - set(cues))
        if missing:
            msg = f"the model's outputs lack the cues {missing} of its fusion weights {dict(weights)}."
            raise ValueError(msg)
        return {name: np.asarray(cues[name], dtype=np.float64).reshape(-1) for name in weights}


class ValidationNormalizer(Normalizer):
    """anomalib's ``pred_score``: normalised by the validation bounds inside the exported graph."""

    name = "validation"

    def update(self, cues: Mapping[str, Any], pred_score: Any) -> np.ndarray:  # noqa: ANN401
        """Return ``pred_score`` (already normalised) as float64."""
        return np.asarray(pred_score, dtype=np.float64).reshape(-1).copy()


class OfflineNormalizer(Normalizer):
    """The papers' protocol on one whole video: per-video min-max per cue, fusion, optional smoothing."""

    name = "offline"
    causal = False

    def update(self, cues: Mapping[str, Any], pred_score: Any) -> np.ndarray:  # noqa: ANN401
        """Not available: the offline protocol needs the whole video.

        Raises:
            ValueError: Always.

        """
        msg = "offline normalisation needs the whole video; use it on files, or 'running'/'validation' on streams."
        raise ValueError(msg)

    def normalize(self, cues: Mapping[str, Any], pred_score: Any) -> np.ndarray:  # noqa: ANN401
        """Fuse the per-video min-max normalised cues (and smooth them if the model's protocol does)."""
        values = self._weighted(cues)
        meta = self.metadata
        video = np.zeros(len(next(iter(values.values()))), dtype=np.int64)
        fused = fuse_cues(values, video, meta.cue_weights, meta.normal_cues)
        if meta.smoothing and len(fused):
            fused = smooth_per_video(fused, video, meta.smoothing_taps, meta.smoothing_sigma, meta.smoothing_mode)
        return fused


class _BoundsNormalizer(Normalizer):
    """Causal normalisers that derive per-frame cue bounds from the past, then :func:`fuse_with_bounds`."""

    def __init__(self, metadata: ModelMetadata, warmup: int = 10) -> None:
        if warmup < 0:
            msg = f"warmup must be non-negative, got {warmup}."
            raise ValueError(msg)
        self.warmup = int(warmup)
        super().__init__(metadata)

    def reset(self) -> None:
        """Forget all frames."""
        self.seen = 0
        self.state: dict[str, Any] = {}

    @abstractmethod
    def _bounds(self, name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of each new frame from the frames up to and including it; updates the state."""

    def update(self, cues: Mapping[str, Any], pred_score: Any) -> np.ndarray:  # noqa: ANN401
        """Score the next frames from the frames seen so far (NaN during the warm-up)."""
        values = self._weighted(cues)
        length = len(next(iter(values.values())))
        if length == 0:
            return np.zeros(0)
        bad = [name for name, v in values.items() if not np.isfinite(v).all()]
        if bad:
            msg = f"cues {bad} have non-finite values."
            raise ValueError(msg)
        bounds = {name: self._bounds(name, v) for name, v in values.items()}
        scores = fuse_with_bounds(
            values,
            {name: lo for name, (lo, _) in bounds.items()},
            {name: hi for name, (_, hi) in bounds.items()},
            self.metadata.cue_weights,
            self.metadata.normal_cues,
        )
        position = self.seen + np.arange(length)
        scores[position < self.warmup] = np.nan
        self.seen += length
        return scores


class RunningMinMaxNormalizer(_BoundsNormalizer):
    """Min-max of each cue over the frames seen so far (or the last ``window`` frames).

    Args:
        metadata: The model's metadata.
        warmup: Frames at the start that get NaN.
        window: Only the last ``window`` frames set the bounds (long streams whose scene drifts);
            ``None`` uses every frame since the start.

    """

    name = "running"

    def __init__(self, metadata: ModelMetadata, warmup: int = 10, window: int | None = None) -> None:
        if window is not None and window < 1:
            msg = f"window must be at least 1 frame, got {window}."
            raise ValueError(msg)
        self.window = window
        super().__init__(metadata, warmup)

    def _bounds(self, name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.window is None:
            lo0, hi0 = self.state.get(name, (np.inf, -np.inf))
            low = np.minimum.accumulate(np.concatenate(([lo0], values)))[1:]
            high = np.maximum.accumulate(np.concatenate(([hi0], values)))[1:]
            self.state[name] = (low[-1], high[-1])
            return low, high
        history = np.concatenate((self.state.get(name, np.zeros(0)), values))
        # one window ending at each new value; copies of the oldest value in front change no min/max
        pad = max(0, len(values) + self.window - 1 - len(history))
        padded = np.concatenate((np.full(pad, history[0]), history))
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.window)[-len(values) :]
        self.state[name] = history[-(self.window - 1) :] if self.window > 1 else np.zeros(0)
        return windows.min(axis=1), windows.max(axis=1)


class RunningStdNormalizer(_BoundsNormalizer):
    """Each cue normalised between ``mean ± k_sigma * std`` of the frames seen so far (clipped).

    Args:
        metadata: The model's metadata.
        warmup: Frames at the start that get NaN.
        k_sigma: Half-width of the bounds in standard deviations.

    """

    name = "running-std"

    def __init__(self, metadata: ModelMetadata, warmup: int = 10, k_sigma: float = 3.0) -> None:
        if not k_sigma > 0:
            msg = f"k_sigma must be positive, got {k_sigma}."
            raise ValueError(msg)
        self.k_sigma = float(k_sigma)
        super().__init__(metadata, warmup)

    def _bounds(self, name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # sums of values shifted by the first value seen (no cancellation for large offsets like PSNR)
        shift, count, total, squares = self.state.get(name, (values[0], 0, 0.0, 0.0))
        shifted = values - shift
        counts = count + np.arange(1, len(values) + 1)
        sums = total + np.cumsum(shifted)
        sum_squares = squares + np.cumsum(shifted**2)
        mean = sums / counts
        std = np.sqrt(np.maximum(sum_squares / counts - mean**2, 0.0))
        self.state[name] = (shift, int(counts[-1]), float(sums[-1]), float(sum_squares[-1]))
        return shift + mean - self.k_sigma * std, shift + mean + self.k_sigma * std


def make_normalizer(
    name: str, metadata: ModelMetadata, warmup: int = 10, window: int | None = None, k_sigma: float = 3.0
) -> Normalizer:
    """Build a normaliser by name (one of :data:`NORMALIZATIONS`).

    Args:
        name: ``offline``, ``running``, ``running-std`` or ``validation``.
        metadata: The model's metadata.
        warmup: NaN frames at the start (streaming normalisers).
        window: Frames that set the running min-max bounds (``None``: all).
        k_sigma: Half-width of the ``running-std`` bounds.

    Raises:
        ValueError: For an unknown name.

    """
    if name == "offline":
        return OfflineNormalizer(metadata)
    if name == "validation":
        return ValidationNormalizer(metadata)
    if name == "running":
        return RunningMinMaxNormalizer(metadata, warmup=warmup, window=window)
    if name == "running-std":
        return RunningStdNormalizer(metadata, warmup=warmup, k_sigma=k_sigma)
    msg = f"unknown normalization {name!r}; choose one of {', '.join(NORMALIZATIONS)}."
    raise ValueError(msg)
