"""Evaluation metrics: the video anomaly detection papers' frame-level protocol.

:mod:`.functional` holds the protocol as NumPy functions (no torch); :mod:`.protocol` the torchmetrics
metric ``anomalib test`` logs. Names are imported on first use, so ``from anomalib_vadproto.metrics
import fuse_cues`` does not load torch.
"""

from __future__ import annotations

from anomalib_vadproto._lazy import lazy_exports

_SOURCES = {
    "SMOOTHING_MODES": ".functional",
    "ProtocolResult": ".functional",
    "fuse_cues": ".functional",
    "gaussian_kernel": ".functional",
    "minmax_per_video": ".functional",
    "per_video_auc": ".functional",
    "protocol_auc": ".functional",
    "smooth_per_video": ".functional",
    "video_id": ".functional",
    "VideoProtocolAUC": ".protocol",
}

__all__ = sorted(_SOURCES)

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
