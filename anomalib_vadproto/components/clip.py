"""Clip validation and splitting shared by every video model.

anomalib's video datamodules deliver ``VideoBatch.image`` as ``(B, T, C, H, W)``. A
prediction model reads the first ``T - 1`` frames and predicts the last one; a reconstruction
model reads every frame. These helpers check the clip once, with messages that say what to
change, and split it without copies where possible.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

import torch
from torch import Tensor

from anomalib_vadproto.errors import check_choice

__all__ = ["ClipShapeError", "as_enum", "check_at_least", "check_choice", "split_clip", "stack_frames", "validate_clip"]

E = TypeVar("E", bound=Enum)


class ClipShapeError(ValueError):
    """Raised when a clip does not have the shape a model expects."""


def check_at_least(name: str, value: int, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming the argument unless ``value >= minimum`` (constructor checks)."""
    if value < minimum:
        msg = f"{name} must be at least {minimum}, got {value}"
        raise ValueError(msg)


def as_enum(name: str, value: E | str, enum: type[E]) -> E:
    """Return the member of ``enum`` that ``value`` names: a member, its value or its name, any case.

    Config files and the CLI write anomalib's enums both ways (``target_frame: last`` or ``LAST``), and
    jsonargparse accepts only one of them depending on its version and the annotation; this accepts both.

    Raises:
        InvalidArgumentError: (a ``ValueError``, :func:`~anomalib_vadproto.errors.check_choice`) naming the
            argument and the members' values when ``value`` names no member.

    """
    if isinstance(value, enum):
        return value
    members: dict[str, E] = {}
    for member in enum:
        members.setdefault(str(member.value).lower(), member)
        members.setdefault(member.name.lower(), member)
    key = str(value).lower()
    if key not in members:
        check_choice(name, value, tuple(str(member.value) for member in enum))  # raises: no member has this name
    return members[key]


def _is_tracing() -> bool:
    return torch.compiler.is_exporting() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def validate_clip(clip: Tensor, clip_length: int, channels: int, *, check_finite: bool = True) -> Tensor:
    """Check that ``clip`` is a ``(B, clip_length, channels, H, W)`` tensor of finite values.

    A 4-D ``(B, C, H, W)`` input is accepted only when ``clip_length == 1`` (anomalib squeezes the
    time axis for one-frame clips) and is returned with a time axis of length 1.

    Args:
        clip: The model input.
        clip_length: Number of frames the model consumes, target included.
        channels: Expected number of channels per frame (after pre-processing).
        check_finite: Also reject NaN and infinite values (skipped while exporting or compiling,
            where a data-dependent check cannot be traced).

    Returns:
        The clip as a 5-D tensor.

    Raises:
        ClipShapeError: If the rank, clip length, channel count or values are wrong.

    """
    if not isinstance(clip, Tensor):
        msg = f"Expected a torch.Tensor clip of shape (B, T, C, H, W), got {type(clip).__name__}."
        raise ClipShapeError(msg)
    if clip.ndim == 4 and clip_length == 1:
        clip = clip.unsqueeze(1)
    if clip.ndim != 5:
        hint = (
            " A 4-D (B, C, H, W) batch is a batch of single images: video models need clips; use one of"
            f" anomalib's video datamodules with clip_length_in_frames={clip_length}."
            if clip.ndim == 4
            else ""
        )
        msg = f"Expected a 5-D clip (B, T, C, H, W), got a {clip.ndim}-D tensor of shape {tuple(clip.shape)}.{hint}"
        raise ClipShapeError(msg)
    _, length, chans, height, width = clip.shape
    if length != clip_length:
        relation = "too few" if length < clip_length else "too many"
        msg = (
            f"The clip has {length} frames ({relation}): this model needs clips of exactly {clip_length} frames"
            f" (set clip_length_in_frames={clip_length} on the datamodule)."
        )
        raise ClipShapeError(msg)
    if chans != channels:
        msg = (
            f"Expected frames with {channels} channel(s) after pre-processing, got {chans}. "
            "Grey models convert RGB with a Grayscale transform in their pre-processor; feed RGB (3-channel) frames."
        )
        raise ClipShapeError(msg)
    if height < 8 or width < 8:
        msg = f"Frames of {height}x{width} pixels are too small; the models need at least 8x8 (usually much more)."
        raise ClipShapeError(msg)
    if check_finite and not _is_tracing() and not bool(torch.isfinite(clip).all()):
        msg = "The clip contains NaN or infinite values; check the decoder and the pre-processing."
        raise ClipShapeError(msg)
    return clip


def split_clip(clip: Tensor, num_inputs: int) -> tuple[Tensor, Tensor]:
    """Split a ``(B, T, C, H, W)`` clip into model inputs and the target frame.

    With ``num_inputs == T - 1`` (prediction) the inputs are the first ``T - 1`` frames and the
    target is the last. With ``num_inputs == T`` (reconstruction) the inputs are every frame and
    the target is the last one.

    Args:
        clip: A validated 5-D clip.
        num_inputs: Number of input frames.

    Returns:
        ``(inputs (B, num_inputs, C, H, W), target (B, C, H, W))``.

    """
    length = clip.shape[1]
    if num_inputs not in (length - 1, length):
        msg = f"num_inputs must be T - 1 (prediction) or T (reconstruction); got {num_inputs} for T = {length}."
        raise ClipShapeError(msg)
    return clip[:, :num_inputs], clip[:, -1]


def stack_frames(frames: Tensor) -> Tensor:
    """Stack ``(B, N, C, H, W)`` frames on the channel axis, oldest first: ``(B, N*C, H, W)``."""
    b, n, c, h, w = frames.shape
    return frames.reshape(b, n * c, h, w)
