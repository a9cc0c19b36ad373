"""Evaluation metrics: the video anomaly detection papers' frame-level protocol."""

from .protocol import (
    SMOOTHING_MODES,
    ProtocolResult,
    VideoProtocolAUC,
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
