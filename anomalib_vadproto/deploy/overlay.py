"""Overlay frames for deployment videos: the anomaly map blended over the frame, the score burnt in."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def _colormap(name: str = "jet") -> np.ndarray:
    """Return a 256-entry RGB ``uint8`` lookup table of a matplotlib colour map."""
    from matplotlib import colormaps

    return np.round(colormaps[name](np.arange(256))[:, :3] * 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _font(size: int):  # noqa: ANN202
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def render_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray | None,
    score: float | None,
    label: str = "",
    threshold: float | None = None,
    alpha: float = 0.6,
) -> np.ndarray:
    """Blend the anomaly map over a frame and write the score on it.

    The map (values in ``[0, 1]``, any resolution; anomalib's post-processor maps its pixel threshold
    to 0.5) becomes a strength ``clip(4 * (map - 0.5), 0, 1)``, is resized to the frame (bilinear,
    then a 3x3 maximum so thin error edges stay visible), coloured with ``jet`` and blended with
    opacity ``alpha * strength``: pixels below the threshold stay untouched. A
    banner shows ``label`` and the score with a bar; frames at or above ``threshold`` get a red border.

    Args:
        image: RGB ``uint8`` frame ``(H, W, 3)``.
        anomaly_map: ``(h, w)`` or ``(1, h, w)`` map in ``[0, 1]``, or ``None`` (no map yet).
        score: Score in ``[0, 1]`` (values outside are clipped for the bar), or ``None``/NaN.
        label: Text before the score, e.g. ``"frame 12"``.
        threshold: Score from which the frame is flagged.
        alpha: Maximum opacity of the map.

    Returns:
        A new RGB ``uint8`` frame of the same size.

    """
    from PIL import Image, ImageDraw, ImageFilter

    out = np.asarray(image, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    if anomaly_map is not None:
        heat = np.nan_to_num(np.asarray(anomaly_map, dtype=np.float32).reshape(np.shape(anomaly_map)[-2:]))
        # anomalib's normalised map puts its pixel threshold at 0.5: tint from there, fully at 0.75
        strength = np.clip((heat - 0.5) * 4.0, 0.0, 1.0)
        strength_u8 = Image.fromarray(np.round(strength * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
        strength_u8 = np.asarray(strength_u8.filter(ImageFilter.MaxFilter(3)))
        weight = (alpha / 255.0) * strength_u8[..., None].astype(np.float32)
        out = np.round(out * (1 - weight) + _colormap()[strength_u8] * weight).astype(np.uint8)

    valid = score is not None and math.isfinite(score)
    flagged = valid and threshold is not None and score >= threshold
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font_size = max(9, min(height, width) // 16)
    banner = font_size + 6
    draw.rectangle((0, 0, width, banner), fill=(0, 0, 0))
    text = f"{label}  score {score:.3f}" if valid else f"{label}  score -"
    draw.text((4, 3), text.strip(), fill=(255, 255, 255), font=_font(font_size))
    if valid:
        bar = int(round(np.clip(score, 0.0, 1.0) * (width - 1)))
        draw.rectangle((0, banner - 3, bar, banner), fill=(255, 64, 64) if flagged else (64, 200, 64))
    if flagged:
        thickness = max(2, min(height, width) // 60)
        draw.rectangle((0, 0, width - 1, height - 1), outline=(255, 0, 0), width=thickness)
    return np.asarray(canvas)
