"""Pre-processing of the MNAD family: resize, optional grey conversion, ``[0, 1] → [-1, 1]``."""

from __future__ import annotations

from collections.abc import Sequence

from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Grayscale, Normalize, Resize


def video_pre_processor(image_size: Sequence[int], grayscale: bool = False, signed: bool = True) -> PreProcessor:
    """Build the pre-processor of a video model.

    ``Resize`` runs without antialiasing, like OpenCV's bilinear resize of the reference code and
    like anomalib's exported graph, so the Lightning path and an exported model see the same pixels.
    Grey models resize first: without antialiasing a bilinear resize reads four input pixels per output
    pixel, so resizing the three channels before the grey conversion touches fewer pixels than
    converting the full frame first. Both steps are linear, so the order does not change the result
    (up to float rounding; a test checks it).

    Args:
        image_size: ``(height, width)`` the frames are resized to.
        grayscale: Convert RGB frames to one grey channel (the lite profiles: UCSD is grey anyway).
        signed: Map ``[0, 1]`` to ``[-1, 1]`` (MNAD family); ``False`` keeps ``[0, 1]`` (CDDA).

    Returns:
        A checkpoint-safe :class:`anomalib.pre_processing.PreProcessor`.

    """
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 8:
        msg = f"image_size must be (height, width) with both at least 8, got {image_size}"
        raise ValueError(msg)
    channels = 1 if grayscale else 3
    transforms = [Resize(size, antialias=False)]
    if grayscale:
        transforms.append(Grayscale(num_output_channels=1))
    if signed:
        transforms.append(Normalize(mean=[0.5] * channels, std=[0.5] * channels))
    return PreProcessor(transform=Compose(transforms))
