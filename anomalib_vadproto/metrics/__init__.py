"""Evaluation metrics: the video anomaly detection papers' frame-level protocol.

:mod:`.functional` holds the protocol as NumPy functions (no torch); :mod:`.protocol` the torchmetrics
metric ``anomalib test`` logs. Names are imported on first use, so ``from anomalib_vadproto.metrics
import fuse_cues`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SMOOTHING_MODES": "functional",
    "ProtocolResult": "functional",
    "fuse_cues": "functional",
    "gaussian_kernel": "functional",
    "minmax_per_video": "functional",
    "per_video_auc": "functional",
    "protocol_auc": "functional",
    "smooth_per_video": "functional",
    "video_id": "functional",
    "VideoProtocolAUC": "protocol",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:  # noqa: ANN401
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
