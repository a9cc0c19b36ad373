"""Data utilities for anomalib-vadproto.

Only lightweight modules live here: importing this package pulls in nothing heavy (the generator
itself needs NumPy and Pillow, and is imported on first use), never torch or anomalib.

* :func:`make_synthetic_ucsd` writes a small deterministic synthetic video anomaly dataset in the
  UCSD Pedestrian layout, loadable with ``anomalib.data.UCSDped`` without any download.
* :class:`LocalUCSDped` is anomalib's ``UCSDped`` that never downloads and reports missing data clearly
  (imported on first use; it needs anomalib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anomalib_vadproto.data.datamodules import LocalUCSDped, check_ucsd_layout
    from anomalib_vadproto.data.synthetic import make_synthetic_ucsd

__all__ = ["LocalUCSDped", "check_ucsd_layout", "make_synthetic_ucsd"]


def __getattr__(name: str) -> Any:
    """Import public functions lazily (keeps ``python -m anomalib_vadproto.data.synthetic`` clean)."""
    if name == "make_synthetic_ucsd":
        from anomalib_vadproto.data.synthetic import make_synthetic_ucsd

        return make_synthetic_ucsd
    if name in ("LocalUCSDped", "check_ucsd_layout"):
        from anomalib_vadproto.data import datamodules

        return getattr(datamodules, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
