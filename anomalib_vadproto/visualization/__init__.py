"""Visualisation for video anomaly detection: a video-aware visualizer and result plots.

- :class:`VideoVisualizer`: drop-in replacement for anomalib's ``ImageVisualizer`` that also
  handles video (clip) batches; writes one score curve per test video and, when asked
  (``frame_images``), ``<output_dir>/<video>/<frame:05d>.png``.
- :func:`video_item_to_image_item`: the target-frame ``ImageItem`` of a clip.
- :func:`plot_score_curve`, :func:`plot_protocol_result`, :func:`plot_error_map`,
  :func:`anomalous_intervals`: matplotlib plots of per-video scores and prediction errors.

The names are resolved lazily (PEP 562): importing this package imports neither anomalib nor
matplotlib; ``VideoVisualizer`` pulls in anomalib when first accessed, and matplotlib is only imported
inside the plotting functions when they are called.

Example:
    >>> from anomalib_vadproto.visualization import VideoVisualizer, plot_score_curve
    >>> visualizer = VideoVisualizer(save_every=10)

"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .curves import anomalous_intervals, plot_error_map, plot_protocol_result, plot_score_curve
    from .video_visualizer import VideoVisualizer, video_item_to_image_item

__all__ = [
    "VideoVisualizer",
    "anomalous_intervals",
    "plot_error_map",
    "plot_protocol_result",
    "plot_score_curve",
    "video_item_to_image_item",
]

_SOURCES = {
    "VideoVisualizer": ".video_visualizer",
    "video_item_to_image_item": ".video_visualizer",
    "anomalous_intervals": ".curves",
    "plot_error_map": ".curves",
    "plot_protocol_result": ".curves",
    "plot_score_curve": ".curves",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401
    """Import a public name on first access.

    Args:
        name (str): Attribute name.

    Returns:
        Any: The requested class or function.

    Raises:
        AttributeError: If ``name`` is not exported by this package.

    """
    if name not in _SOURCES:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(_SOURCES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the module's attributes including the lazily imported public names.

    Returns:
        list[str]: Sorted attribute names.

    """
    return sorted({*globals(), *__all__})
