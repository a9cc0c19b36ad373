"""The video anomaly detection papers' frame-level evaluation protocol.

Every method in this package (MNAD, LGN-Net, DLAN-AC, APN, CDDA) reports its frame-level AUC under
the protocol of the methods' official evaluation scripts, not under anomalib's pooled
``image_AUROC``. The protocol is:

1. Every scored test frame (the target frame of a clip) carries one value per *cue*, e.g. the PSNR of
   the predicted frame and a feature distance to the memory items.
2. **Per test video**, each cue is min-max normalised over that video's frames:
   ``g(x) = (x - min_video x) / (max_video x - min_video x)``.
3. Cues where higher means *normal* (PSNR) become anomaly scores as ``1 - g(x)``; anomaly-type cues
   (distances) stay ``g(x)``.
4. The fused anomaly score is the weighted sum ``S = sum_c w_c * a_c``, e.g. for MNAD
   ``S = 0.6 * (1 - g(PSNR)) + 0.4 * g(D)``.
5. Optionally (APN), each video's fused sequence is smoothed in time with a 15-tap Gaussian (σ = 2).
6. "micro" AUC: :func:`sklearn.metrics.roc_auc_score` over all frames of all videos concatenated
   (label 1 = anomalous frame, higher ``S`` = more anomalous). This is the number the papers report.
   "macro" AUC: the mean of the per-video AUCs over the videos that contain both classes; a useful
   extra that is insensitive to how scores line up *across* videos.

Why this differs from anomalib's pooled ``image_AUROC``: the pooled metric ranks the raw per-clip
scores of all videos against each other, so a video whose scene is simply harder to predict (lower
PSNR everywhere) pushes all of its frames up the ranking. The per-video min-max normalisation removes
each video's offset and scale before the frames are pooled, which typically changes the AUC by several
points. Both numbers are reported; this module provides the second one.

Decisions not fixed by the papers' code:

* **Constant cue within a video.** The official scripts would divide by zero. Here
  :func:`minmax_per_video` returns 0 for every frame of such a video, and :func:`fuse_cues` lets a
  constant cue contribute an anomaly of 0 whatever its orientation (a constant cue carries no
  evidence; without this rule a constant PSNR would count as maximally anomalous via ``1 - 0``).
* **Smoothing borders.** The default ``mode="nearest"`` pads each video's sequence with copies of its
  first/last value (``numpy.pad(mode="edge")``, like ``scipy.ndimage`` ``mode="nearest"``) and keeps
  the length. ``mode="reflect"`` pads with the mirrored sequence including the edge sample
  (``d c b a | a b c d``, scipy's ``"reflect"``). ``mode="hold"`` follows APN's released code: a
  valid-mode convolution, after which the ``taps // 2`` border outputs on each side are set to the
  nearest fully computed value (the code's borders are often described as "7 leading and 8 trailing"; this
  implementation keeps the length and is symmetric, so the last border is 7 frames, not 8). Videos
  shorter than ``taps`` have no fully computed value; ``"hold"`` falls back to ``"nearest"`` for them.
* **Kernel normalisation.** The taps are ``exp(-(i - c)² / (2σ²))`` normalised to sum to 1, so a
  constant sequence stays constant. APN's code uses the un-normalised Gaussian density (its 15 taps
  sum to 0.99985); that is a global positive factor and does not
  change any AUC.
* **Smoothing the fused score.** APN smooths each normalised cue and then fuses them. Both steps are
  linear (and so is every border mode here), so smoothing the fused score is the same up to a global
  constant, which again leaves the AUC unchanged.
* **Frame gaps.** Smoothing treats consecutive *sorted* frames of a video as adjacent; frames missing
  from the evaluation are not interpolated.

Example:
    >>> import torch
    >>> metric = VideoProtocolAUC(cue_weights={"psnr": 0.6, "distance": 0.4})
    >>> metric.update(
    ...     video_paths=["v01", "v01", "v01", "v02", "v02", "v02"],
    ...     frames=torch.tensor([4, 5, 6, 4, 5, 6]),
    ...     labels=torch.tensor([0, 0, 1, 0, 1, 1]),
    ...     cues={
    ...         "psnr": torch.tensor([35.0, 34.0, 30.0, 31.0, 28.0, 27.0]),
    ...         "distance": torch.tensor([0.1, 0.2, 0.5, 0.3, 0.4, 0.6]),
    ...     },
    ... )
    >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
    {'protocol_AUC_micro': 1.0, 'protocol_AUC_macro': 1.0}

"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalib_vadproto.errors import check_choice

from .functional import (
    SMOOTHING_MODES,
    ProtocolResult,
    _check_cue_names,
    _check_normal_cues,
    _cue_anomalies,
    _micro_macro,
    _readonly,
    _validate_weights,
    fuse_cues,
    gaussian_kernel,
    minmax_per_video,
    per_video_auc,
    protocol_auc,
    smooth_per_video,
    video_id,
)

__all__ = [
    "SMOOTHING_MODES",
    "ProtocolResult",
    "VideoProtocolAUC",
    "fuse_cues",
    "gaussian_kernel",
    "minmax_per_video",
    "per_video_auc",
    "protocol_auc",
    "smooth_per_video",
    "video_id",
]


class VideoProtocolAUC(Metric):
    """Frame-level AUC under the papers' protocol: per-video normalisation, cue fusion, micro/macro AUC.

    Feed it, batch by batch in any order, the video path, frame index, label and cue values of every
    scored test frame; :meth:`compute` sorts the frames by (video, frame index), normalises each cue per
    video, fuses them, optionally smooths each video's sequence, and returns the micro and macro AUC.

    Args:
        cue_weights: Cue name -> non-negative weight (positive sum), e.g. MNAD
            ``{"psnr": 0.6, "distance": 0.4}``. ``update`` must pass exactly these cues.
        normal_cues: Cues where higher means normal (turned into ``1 - g``); must be a subset of
            ``cue_weights``. Pass ``()`` when every cue is an anomaly score.
        smoothing: Smooth each video's fused score with a Gaussian (APN).
        smoothing_taps: Gaussian length (positive, odd).
        smoothing_sigma: Gaussian standard deviation in frames.
        smoothing_mode: Border handling, one of :data:`SMOOTHING_MODES` (see :func:`smooth_per_video`).
        prefix: Prefix of the keys returned by :meth:`compute`.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    Notes:
        Video paths are stored as CRC-32 ids (an int64 tensor state, ``dist_reduce_fx="cat"``); the
        id -> path table is kept locally and merged over the ranks when the states are synchronised.
        Under DDP every rank must call :meth:`compute` (a collective); a rank that saw no frame takes part
        with empty states. The plugin's models do not shard their evaluation: every rank scores every frame
        and computes this metric locally (:mod:`anomalib_vadproto.components.distributed`).
        ``forward`` only accumulates (returns ``None``): the protocol is undefined on a single batch.

    Example:
        >>> import torch
        >>> metric = VideoProtocolAUC({"psnr": 1.0}, smoothing=True)
        >>> psnr = torch.tensor([9.0, 8.0, 2.0, 1.0])
        >>> metric.update(["a"] * 4, torch.arange(4), torch.tensor([0, 0, 1, 1]), {"psnr": psnr})
        >>> float(metric.compute()["protocol_AUC_micro"])
        1.0

    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        cue_weights: dict[str, float],
        normal_cues: Sequence[str] = ("psnr",),
        smoothing: bool = False,
        smoothing_taps: int = 15,
        smoothing_sigma: float = 2.0,
        smoothing_mode: str = "nearest",
        prefix: str = "protocol_",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cue_weights = _validate_weights(cue_weights)
        self.normal_cues = tuple(sorted(_check_normal_cues(normal_cues, self.cue_weights)))
        self.smoothing = bool(smoothing)
        self.smoothing_taps = int(smoothing_taps)
        self.smoothing_sigma = float(smoothing_sigma)
        self.smoothing_mode = check_choice("smoothing_mode", smoothing_mode, SMOOTHING_MODES)
        gaussian_kernel(self.smoothing_taps, self.smoothing_sigma)  # validate early
        self.prefix = prefix
        self._cue_names = tuple(sorted(self.cue_weights))
        self._paths: dict[int, str] = {}
        self._result: ProtocolResult | None = None

        self.add_state("video_ids", default=[], dist_reduce_fx="cat")
        self.add_state("frame_indices", default=[], dist_reduce_fx="cat")
        self.add_state("frame_labels", default=[], dist_reduce_fx="cat")
        for i in range(len(self._cue_names)):
            self.add_state(f"cue_{i}", default=[], dist_reduce_fx="cat")

    # -- accumulation ---------------------------------------------------------------------------------
    def update(
        self,
        video_paths: Sequence[str],
        frames: Tensor,
        labels: Tensor,
        cues: Mapping[str, Tensor],
    ) -> None:
        """Accumulate one batch of scored frames.

        Args:
            video_paths: Video path (or name) of each frame, length ``B``.
            frames: Frame index within its video of each frame, shape ``(B,)``, integer-valued.
            labels: Frame label, shape ``(B,)``, bool or 0/1 (1 = anomalous).
            cues: Cue name -> values, each of shape ``(B,)``; exactly the cues of ``cue_weights``.

        Raises:
            ValueError: On a cue set that differs from ``cue_weights``, mismatched lengths, non-binary
                labels, non-integer frame indices, NaN/inf cue values (naming the cue and video), or
                two paths with the same CRC-32 id.

        """
        if isinstance(video_paths, (str, bytes)) or not isinstance(video_paths, Sequence):
            msg = f"video_paths must be a sequence of strings (one per frame), got {type(video_paths).__name__}."
            raise ValueError(msg)
        if not isinstance(cues, Mapping):
            msg = f"cues must be a mapping of cue name to tensor, got {type(cues).__name__}."
            raise ValueError(msg)
        _check_cue_names(cues.keys(), self._cue_names, what="cues passed to update")

        paths = [str(p) for p in video_paths]
        frames_t = torch.as_tensor(frames).detach().reshape(-1)
        labels_t = torch.as_tensor(labels).detach().reshape(-1)
        cue_ts = {name: torch.as_tensor(cues[name]).detach().reshape(-1) for name in self._cue_names}
        lengths = {"video_paths": len(paths), "frames": frames_t.numel(), "labels": labels_t.numel()}
        lengths.update({f"cue {name!r}": t.numel() for name, t in cue_ts.items()})
        if len(set(lengths.values())) > 1:
            msg = f"Mismatched lengths in update: {lengths}."
            raise ValueError(msg)
        if not paths:
            return

        if frames_t.is_floating_point():
            if not torch.isfinite(frames_t).all() or not torch.equal(frames_t, frames_t.round()):
                msg = "frames must be integer frame indices."
                raise ValueError(msg)
        elif frames_t.dtype == torch.bool or frames_t.is_complex():
            msg = f"frames must be integer frame indices, got dtype {frames_t.dtype}."
            raise ValueError(msg)
        if labels_t.is_complex() or not ((labels_t == 0) | (labels_t == 1)).all():
            msg = "labels must be binary (bool or 0/1, 1 = anomalous)."
            raise ValueError(msg)
        for name, values in cue_ts.items():
            if values.is_complex() or values.dtype == torch.bool:
                msg = f"cue {name!r} must be real-valued, got dtype {values.dtype}."
                raise ValueError(msg)
            bad = ~torch.isfinite(values)
            if bad.any():
                first = int(torch.nonzero(bad)[0, 0])
                msg = (
                    f"cue {name!r} has a non-finite value ({float(values[first])}) for video {paths[first]!r}, "
                    f"frame {int(frames_t[first])} ({int(bad.sum())} non-finite value(s) in this batch)."
                )
                raise ValueError(msg)

        ids = []
        for path in paths:
            vid = video_id(path)
            known = self._paths.setdefault(vid, path)
            if known != path:
                msg = f"Video paths {known!r} and {path!r} have the same CRC-32 id {vid}; rename one of them."
                raise ValueError(msg)
            ids.append(vid)

        device = self.device
        self.video_ids.append(torch.tensor(ids, dtype=torch.int64, device=device))
        self.frame_indices.append(frames_t.to(device=device, dtype=torch.int64))
        self.frame_labels.append(labels_t.to(device=device, dtype=torch.int64))
        for i, name in enumerate(self._cue_names):
            getattr(self, f"cue_{i}").append(cue_ts[name].to(device=device, dtype=torch.float64))

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """Accumulate a batch like :meth:`update`; returns ``None`` (no per-batch value is defined)."""
        self.update(*args, **kwargs)

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Merge another metric's state (and its id -> path table when it is a :class:`VideoProtocolAUC`)."""
        if isinstance(incoming_state, VideoProtocolAUC):
            for vid, path in incoming_state._paths.items():
                known = self._paths.setdefault(vid, path)
                if known != path:
                    msg = f"Video paths {known!r} and {path!r} have the same CRC-32 id {vid}."
                    raise ValueError(msg)
        super().merge_state(incoming_state)
        self._computed = None
        self._result = None

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:  # noqa: ANN401
        """Gather the states of every rank (torchmetrics' ``cat``), also from a rank that saw no frame.

        torchmetrics sends a rank's empty list state as an empty float32 tensor, which cannot be gathered
        with the other ranks' int64 ids or float64 cues: an empty state is sent in its own dtype here. The
        id -> path tables of the ranks are merged too, so :meth:`result` names every video.
        """
        for name, dtype in self._state_dtypes().items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty(0, dtype=dtype, device=self.device)])
        group = process_group or self.process_group
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tables: list[dict[int, str] | None] = [None] * torch.distributed.get_world_size(group)
            torch.distributed.all_gather_object(tables, self._paths, group=group)
            for table in tables:
                for vid, path in (table or {}).items():
                    self._paths.setdefault(vid, path)
        if dist_sync_fn is None:
            super()._sync_dist(process_group=process_group)
        else:
            super()._sync_dist(dist_sync_fn, process_group)

    def _state_dtypes(self) -> dict[str, torch.dtype]:
        """Dtype of each list state, as :meth:`update` stores it."""
        dtypes = dict.fromkeys(("video_ids", "frame_indices", "frame_labels"), torch.int64)
        dtypes.update({f"cue_{i}": torch.float64 for i in range(len(self._cue_names))})
        return dtypes

    @property
    def has_data(self) -> bool:
        """Whether any frame has been accumulated since the last reset."""
        return len(self.video_ids) > 0

    def reset(self) -> None:
        """Clear all accumulated frames, the id -> path table and the last result."""
        super().reset()
        self._paths = {}
        self._result = None

    # -- evaluation -----------------------------------------------------------------------------------
    @staticmethod
    def _cat(state: list[Tensor] | Tensor) -> np.ndarray:
        return dim_zero_cat(state).detach().cpu().numpy().reshape(-1)

    def _evaluate(self) -> ProtocolResult:
        """Run the full protocol on the accumulated (synced) states."""
        if isinstance(self.video_ids, list) and not self.video_ids:
            msg = f"{type(self).__name__}.compute() called without any data: call update() first."
            raise ValueError(msg)
        ids = self._cat(self.video_ids)
        frames = self._cat(self.frame_indices)
        labels = self._cat(self.frame_labels)
        cue_values = {name: self._cat(getattr(self, f"cue_{i}")) for i, name in enumerate(self._cue_names)}
        if ids.size == 0:
            msg = f"{type(self).__name__}.compute() called without any data: call update() first."
            raise ValueError(msg)

        unique_ids, inverse = np.unique(ids, return_inverse=True)
        names = [self._paths.get(int(v), f"<video {int(v):08x}>") for v in unique_ids]
        name_order = np.argsort(np.array(names, dtype=object), kind="stable")
        rank_of_unique = np.empty(len(unique_ids), dtype=np.int64)
        rank_of_unique[name_order] = np.arange(len(unique_ids))
        video_rank = rank_of_unique[inverse.reshape(-1)]
        sorted_names = tuple(names[i] for i in name_order)

        order = np.lexsort((frames, video_rank))
        video_rank, frames, labels = video_rank[order], frames[order], labels[order]
        cue_values = {name: values[order] for name, values in cue_values.items()}
        duplicate = (video_rank[1:] == video_rank[:-1]) & (frames[1:] == frames[:-1])
        if duplicate.any():
            first = int(np.flatnonzero(duplicate)[0])
            msg = (
                f"Frame {int(frames[first])} of video {sorted_names[video_rank[first]]!r} was fed more than once "
                f"({int(duplicate.sum())} duplicate (video, frame) pair(s)); each scored frame must be passed to "
                "update() exactly once per epoch."
            )
            raise ValueError(msg)

        weights, anomalies = _cue_anomalies(cue_values, video_rank, self.cue_weights, self.normal_cues)
        scores = sum(weights[name] * anomalies[name] for name in self._cue_names)
        if self.smoothing:
            scores = smooth_per_video(
                scores, video_rank, self.smoothing_taps, self.smoothing_sigma, mode=self.smoothing_mode
            )
        _, video_auc = per_video_auc(labels, scores, video_rank)
        micro, macro = _micro_macro(labels, scores, video_auc)

        bounds = np.flatnonzero(np.diff(video_rank)) + 1

        def split(array: np.ndarray) -> tuple[np.ndarray, ...]:
            return tuple(_readonly(part) for part in np.split(array, bounds))

        return ProtocolResult(
            video_names=sorted_names,
            frame_indices=split(frames),
            labels=split(labels),
            scores=split(scores),
            cue_anomaly=types.MappingProxyType({name: split(anomalies[name]) for name in self._cue_names}),
            video_auc=_readonly(video_auc),
            micro=micro,
            macro=macro,
        )

    def compute(self) -> dict[str, Tensor]:
        """Compute the micro and macro frame-level AUC.

        Returns:
            ``{f"{prefix}AUC_micro": tensor, f"{prefix}AUC_macro": tensor}`` as fractions in ``[0, 1]``
            (NaN where undefined, with a warning).

        Raises:
            ValueError: If no data was accumulated, a (video, frame) pair was fed twice, or the inputs
                are otherwise invalid.

        """
        self._result = None
        result = self._evaluate()
        self._result = result
        return {
            f"{self.prefix}AUC_micro": torch.tensor(result.micro, dtype=torch.float32),
            f"{self.prefix}AUC_macro": torch.tensor(result.macro, dtype=torch.float32),
        }

    def result(self) -> ProtocolResult:
        """Return the per-video outcome of the protocol (runs :meth:`compute` if needed).

        Returns:
            A frozen :class:`ProtocolResult` with sorted video names, per-video frame indices, labels,
            fused (and smoothed) scores, per-cue anomalies, per-video AUCs, and micro/macro AUC.

        Raises:
            ValueError: As :meth:`compute`.

        """
        self.compute()
        if self._result is None:  # defensive: a cached compute() value without its ProtocolResult
            self._result = self._evaluate()
        return self._result
