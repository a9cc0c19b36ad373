"""The interface of an exported clip model, shared by the OpenVINO and PyTorch back-ends.

A clip model maps raw ``(N, T, 3, H, W)`` float32 clips in ``[0, 1]`` to named per-clip outputs
(``pred_score``, ``pred_label``, ``anomaly_map``, ``pred_mask``, ``cue_<name>``) and describes itself
with a :class:`~anomalib_vadproto.components.metadata.ModelMetadata`. Both back-ends check their input with
:func:`check_clips` first: layout, float type, finiteness and the ``[0, 1]`` range, one clear error each.

The back-ends (:mod:`.openvino`, :mod:`.torch_backend`) import this module; it imports neither of them.
:func:`~.loader.load_clip_model` picks the back-end for a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from anomalib_vadproto.components.metadata import ModelMetadata


@runtime_checkable
class ClipModel(Protocol):
    """What the inferencer needs from a back-end."""

    metadata: ModelMetadata

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Score ``(N, T, 3, H, W)`` float32 clips in ``[0, 1]``; return every output by name."""
        ...


CLIP_LAYOUT = "(N, T, 3, H, W)"


def _as_array(clips: object) -> np.ndarray:
    """Return ``clips`` (a NumPy array, a torch tensor on any device, or nested sequences) as a NumPy array."""
    if isinstance(clips, np.ndarray):
        return clips
    if hasattr(clips, "detach") and hasattr(clips, "cpu"):  # a torch tensor, possibly on a GPU or with grad
        return clips.detach().cpu().numpy()
    return np.asarray(clips)


def check_clips(clips: object, clip_length: int, input_size: tuple[int, int] | None) -> np.ndarray:
    """Return ``clips`` as contiguous float32 after checking their layout, type and values against the model.

    Both back-ends call this before inference, so a clip a model cannot score (channels last, ``uint8``,
    ``0..255``, NaN) fails here with one message instead of saturating or scoring NaN as normal. The value
    checks cost one vectorised min/max pass over the batch; NaN propagates through it, so it also finds
    non-finite values, which :func:`~anomalib_vadproto.components.clip.validate_clip` (the check of the
    Lightning models) then reports.

    Args:
        clips: ``(N, T, 3, H, W)`` float frames in ``[0, 1]``: a NumPy array (any float type) or a torch
            tensor.
        clip_length: The model's ``T``.
        input_size: The model's ``(H, W)``, or ``None`` for any size.

    Returns:
        The clips as a contiguous float32 NumPy array.

    Raises:
        ValueError: Naming what is wrong and what is expected: a shape other than
            ``(N, T, 3, H, W)`` (channels-last frames included), a non-float type, values outside
            ``[0, 1]`` (e.g. ``0..255``: divide by 255), or NaN/infinite values.

    """
    from anomalib_vadproto.components.clip import ClipShapeError, validate_clip

    array = _as_array(clips)
    height, width = input_size if input_size is not None else (None, None)
    expected = (None, clip_length, 3, height, width)
    if array.ndim == 5 and array.shape[2] != 3 and array.shape[-1] == 3:
        msg = (
            f"The clips are channels-last (N, T, H, W, 3), shape {array.shape}; the model expects {CLIP_LAYOUT}:"
            " move the channel axis, e.g. np.moveaxis(clips, -1, 2)."
        )
        raise ValueError(msg)
    if array.ndim != 5 or any(e is not None and e != s for e, s in zip(expected, array.shape, strict=True)):
        msg = f"The model expects clips of shape {expected} (None = any size), got {array.shape}."
        raise ValueError(msg)
    if not np.issubdtype(array.dtype, np.floating):
        low, high = (array.min(), array.max()) if array.size else (0, 0)
        hint = ": divide by 255" if high > 1 else ": convert them to float32"
        msg = f"Clip frames must be float in [0, 1]; got {array.dtype} {low}..{high}{hint}."
        raise ValueError(msg)
    clips = np.ascontiguousarray(array, dtype=np.float32)
    if not clips.size:
        return clips
    import torch

    tensor = torch.from_numpy(clips)
    low, high = (float(value) for value in torch.aminmax(tensor))  # NaN anywhere makes both NaN
    finite = np.isfinite(low) and np.isfinite(high)
    try:  # the Lightning models' own check: reports NaN / inf (and frames too small for any model)
        validate_clip(tensor, clip_length, 3, check_finite=not finite)
    except ClipShapeError as error:
        msg = f"{error} Expected float frames in [0, 1] of shape {CLIP_LAYOUT}."
        raise ClipShapeError(msg) from error
    if low < 0 or high > 1:
        hint = ": divide by 255" if 1 < high <= 255 and low >= 0 else ""
        msg = f"Clip frames must be float in [0, 1]; got {array.dtype} {low:g}..{high:g}{hint}."
        raise ValueError(msg)
    return clips


def check_metadata(metadata: ModelMetadata, clip_length: int, input_size: tuple[int, int] | None, path: Path) -> None:
    """Check that the metadata stored with a graph agrees with the graph's input shape.

    Raises:
        ValueError: On a clip-length or input-size mismatch (a file assembled from two exports).

    """
    if metadata.clip_length != clip_length:
        msg = (
            f"{path}: the graph takes clips of {clip_length} frames but its metadata says {metadata.clip_length}"
            f" ({metadata.model}); re-export the model."
        )
        raise ValueError(msg)
    if metadata.input_size is not None and input_size is not None and tuple(metadata.input_size) != input_size:
        msg = (
            f"{path}: the graph takes frames of {input_size} but its metadata says {metadata.input_size};"
            " re-export the model."
        )
        raise ValueError(msg)
