"""Data utilities for anomalib-vadproto.

Only lightweight modules live here: importing this package pulls in nothing heavy (the generator
itself needs NumPy and Pillow, and is imported on first use), never torch or anomalib.

* :func:`make_synthetic_ucsd` writes a small deterministic synthetic video anomaly dataset in the
  UCSD Pedestrian layout, loadable with ``anomalib.data.UCSDped`` without any download.
* :class:`LocalUCSDped` is anomalib's ``UCSDped`` that never downloads and reports missing data clearly
  (imported on first use; it needs anomalib).
* :class:`LocalAvenue` and :class:`LocalShanghaiTech` are anomalib's ``Avenue`` and ``ShanghaiTech``
  decoding their ``.avi`` files with PyAV (no torchcodec), never downloading; ``LocalShanghaiTech``
  can pool scenes (``scene="all"``).
* ``val_split_mode="from_train"`` on any of the three holds out whole training videos for validation
  (:mod:`~anomalib_vadproto.data.validation`).
* :func:`make_synthetic_avenue` and :func:`make_synthetic_shanghaitech` write small synthetic
  datasets in those layouts (video files).
* :class:`VideoFolder` reads a plain folder of your own recordings (``train/``, ``test/``, optional
  ``ground_truth/``); :func:`make_synthetic_video_folder` writes an example of that layout.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anomalib_vadproto.data.avenue import LocalAvenue, check_avenue_layout
    from anomalib_vadproto.data.shanghaitech import LocalShanghaiTech, check_shanghaitech_layout
    from anomalib_vadproto.data.synthetic import make_synthetic_ucsd
    from anomalib_vadproto.data.synthetic_video import (
        make_synthetic_avenue,
        make_synthetic_shanghaitech,
        make_synthetic_video_folder,
    )
    from anomalib_vadproto.data.ucsd_ped import LocalUCSDped, check_ucsd_layout
    from anomalib_vadproto.data.video_folder import VideoFolder

__all__ = [
    "LocalAvenue",
    "LocalShanghaiTech",
    "LocalUCSDped",
    "VideoFolder",
    "check_avenue_layout",
    "check_shanghaitech_layout",
    "check_ucsd_layout",
    "make_synthetic_avenue",
    "make_synthetic_shanghaitech",
    "make_synthetic_ucsd",
    "make_synthetic_video_folder",
]

_SOURCES = {
    "make_synthetic_ucsd": "synthetic",
    "make_synthetic_avenue": "synthetic_video",
    "make_synthetic_shanghaitech": "synthetic_video",
    "make_synthetic_video_folder": "synthetic_video",
    "LocalUCSDped": "ucsd_ped",
    "check_ucsd_layout": "ucsd_ped",
    "LocalAvenue": "avenue",
    "LocalShanghaiTech": "shanghaitech",
    "check_avenue_layout": "avenue",
    "check_shanghaitech_layout": "shanghaitech",
    "VideoFolder": "video_folder",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401
    """Import public names lazily (keeps ``python -m anomalib_vadproto.data.synthetic`` clean)."""
    if name in _SOURCES:
        module = importlib.import_module(f"{__name__}.{_SOURCES[name]}")
        return getattr(module, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
