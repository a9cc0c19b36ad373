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

from typing import TYPE_CHECKING

from anomalib_vadproto._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
