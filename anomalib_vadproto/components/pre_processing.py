"""Pre-processing of the video models: resize, optional grey conversion, ``[0, 1] → [-1, 1]``."""

from __future__ import annotations

from collections.abc import Sequence

from anomalib.pre_processing import PreProcessor
from torch import Tensor
from torchvision.transforms.v2 import Compose, Grayscale, Normalize, Resize


class VideoPreProcessor(PreProcessor):
    """anomalib's pre-processor with a clip-shaped export path.

    ``forward`` (the exported graph, and :meth:`~anomalib_vadproto.components.export.VideoExportMixin.predict_clip`)
    runs each ``Resize`` of a ``(N, T, C, H, W)`` clip on its ``(N, T * C, H, W)`` view: the frames of
    a clip become the channels of one image instead of ``N * T`` images. A bilinear resize treats
    channels independently, so the pixels are the same (a test checks it). OpenVINO resizes on blocks
    of channels, into which it first reorders the raw clip; on the five lite exports, with Ped2 clips of
    240x360 RGB frames, that reorder and the resize take 1.0-2.0 ms per clip on ``N * T`` images and
    0.7-1.0 ms on the clip view, which makes the whole exported graph 1.06-1.48x faster at batch 1
    (``python -m research.openvino_profile``). PyTorch's ``predict_clip`` runs the same view, so eager and
    exported pipelines compute the same graph. The transform
    itself stays anomalib's ``Compose`` of torchvision transforms, so checkpoints store and restore it
    as usual, and the Lightning loops apply it through anomalib's batch hooks.
    """

    def forward(self, batch: Tensor) -> Tensor:
        """Apply the export transform to ``(N, T, C, H, W)`` clips (or ``(N, C, H, W)`` images)."""
        transform = self.export_transform
        if transform is None:
            return batch
        for step in transform.transforms if isinstance(transform, Compose) else [transform]:
            if isinstance(step, Resize) and batch.ndim == 5:
                frames, channels = batch.shape[1:3]
                batch = step(batch.flatten(1, 2)).unflatten(1, (frames, channels))
            else:
                batch = step(batch)
        return batch


def video_pre_processor(image_size: Sequence[int], grayscale: bool = False) -> VideoPreProcessor:
    """Build the pre-processor of a video model: resize, optional grey conversion, ``[0, 1] → [-1, 1]``.

    ``Resize`` runs without antialiasing, like OpenCV's bilinear resize of the reference code and
    like anomalib's exported graph, so the Lightning path and an exported model see the same pixels.
    Grey models resize first: without antialiasing a bilinear resize reads four input pixels per output
    pixel, so resizing the three channels before the grey conversion touches fewer pixels than
    converting the full frame first. Both steps are linear, so the order does not change the result
    (up to float rounding; a test checks it).

    Args:
        image_size: ``(height, width)`` the frames are resized to.
        grayscale: Convert RGB frames to one grey channel (the lite profiles: UCSD is grey anyway).

    Returns:
        A :class:`VideoPreProcessor` whose transform is a checkpoint-safe torchvision ``Compose``.

    """
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 8:
        msg = f"image_size must be (height, width) with both at least 8, got {image_size}"
        raise ValueError(msg)
    channels = 1 if grayscale else 3
    transforms = [Resize(size, antialias=False)]
    if grayscale:
        transforms.append(Grayscale(num_output_channels=1))
    transforms.append(Normalize(mean=[0.5] * channels, std=[0.5] * channels))
    return VideoPreProcessor(transform=Compose(transforms))
