"""Data utilities for anomalib-vadproto.

Only lightweight modules live here: importing this package pulls in nothing heavy (the generator
itself needs NumPy and Pillow, and is imported on first use), never torch or anomalib.

* :func:`make_synthetic_ucsd` writes a small deterministic synthetic video anomaly dataset in the
  UCSD Pedestrian layout, loadable with ``anomalib.data.UCSDped`` without any download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anomalib_vadproto.data.synthetic import make_synthetic_ucsd

__all__ = ["make_synthetic_ucsd"]


def __getattr__(name: str) -> Any:
    """Import public functions lazily (keeps ``python -m anomalib_vadproto.data.synthetic`` clean)."""
    if name == "make_synthetic_ucsd":
        from anomalib_vadproto.data.synthetic import make_synthetic_ucsd

        return make_synthetic_ucsd
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
