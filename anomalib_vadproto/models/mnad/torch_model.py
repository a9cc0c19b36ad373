"""PyTorch model of MNAD (Park et al., CVPR 2020): a U-Net with a memory of normal patterns.

The encoder's raw feature map is L2-normalised along channels into
queries; the memory read ``p̂`` is concatenated with the queries and decoded into the next frame
(prediction) or the input frame (reconstruction). See :mod:`anomalib_vadproto.components.memory`
for the exact memory semantics.
"""

from __future__ import annotations

import torch
from anomalib.data import InferenceBatch
from torch import Tensor

from anomalib_vadproto.components.blocks import UNetDecoder, UNetEncoder, unet_widths
from anomalib_vadproto.components.clip import split_clip, stack_frames
from anomalib_vadproto.components.memory import (
    TEST_UPDATES,
    Memory,
    MemoryModelMixin,
    MemoryRead,
    MemoryTrainOutput,
    read_feature_map,
)
from anomalib_vadproto.components.torch_model import VideoTorchModel
from anomalib_vadproto.errors import check_choice

TASKS = ("prediction", "reconstruction")


class MnadModel(MemoryModelMixin, VideoTorchModel):
    """MNAD network with its memory.

    Scoring (:meth:`~anomalib_vadproto.components.memory.MemoryModelMixin.score`) returns
    ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error (B, 1, H, W))`` and the cues
    ``{"psnr": (B,), "feature_distance": (B,)}`` and, unless read-only, applies the gated test-time
    memory update (``test_update``).

    Args:
        task: ``"prediction"`` (4 past frames -> next frame, with U-Net skips; the paper's main
            variant) or ``"reconstruction"`` (1 frame -> itself, no skips).
        num_input_frames: Input frames of the prediction task (the paper: 4). Ignored for reconstruction.
        in_channels: Channels per frame after pre-processing (3 RGB, 1 grey).
        width: Base channel width; 64 is the paper (memory dimension ``8 * width`` = 512).
        memory_size: Number of memory items ``M`` (paper: 10).
        update_rescale: ``"code"`` (default) or ``"paper"`` rescaling of the update weights.
        test_time_update: Apply the gated memory update during evaluation (paper: yes).
        gamma: Threshold on the weighted regular score below which a test clip updates the memory.
        test_update: ``"per_batch"`` (default: a batch reads the items of its start, then updates clip by
            clip) or ``"per_clip"`` (each clip reads the items updated by every clip before it, as the
            reference's evaluation at batch 1).

    """

    def __init__(
        self,
        task: str = "prediction",
        num_input_frames: int = 4,
        in_channels: int = 3,
        width: int = 64,
        memory_size: int = 10,
        update_rescale: str = "code",
        test_time_update: bool = True,
        gamma: float = 0.01,
        test_update: str = "per_batch",
    ) -> None:
        check_choice("test_update", test_update, TEST_UPDATES)
        check_choice("task", task, TASKS)
        prediction = task == "prediction"
        num_inputs = num_input_frames if prediction else 1
        super().__init__(num_inputs, in_channels, clip_length=None if prediction else 1)
        self.task = task
        self.test_time_update = test_time_update
        self.test_update = test_update
        self.gamma = gamma
        widths = unet_widths(width)
        self.encoder = UNetEncoder(in_channels * self.num_inputs, widths)
        self.memory = Memory(memory_size, widths[3], rescale=update_rescale)
        self.decoder = UNetDecoder(2 * widths[3], widths, in_channels, skips=prediction)

    def _encode_read_decode(self, clip: Tensor, items: Tensor) -> tuple[Tensor, Tensor, MemoryRead]:
        inputs, target = split_clip(self.check_clip(clip), self.num_inputs)
        features, skips = self.encoder(stack_frames(inputs))
        read = read_feature_map(self.memory, features, items)
        decoder_input = torch.cat((read.query_map, read.read_map), dim=1)
        prediction = self.decoder(decoder_input, skips if self.task == "prediction" else None)
        return prediction, target, read

    def _forward(self, clip: Tensor) -> MemoryTrainOutput:
        """Training outputs, reading the trained items."""
        return self.train_outputs(clip, self.step_items())

    def train_outputs(self, clip: Tensor, items: Tensor) -> MemoryTrainOutput:
        """Return what the losses and the memory update need, reading ``items`` (the trained items)."""
        prediction, target, read = self._encode_read_decode(clip, items)
        return MemoryTrainOutput.build(prediction, target, read, items)

    def _score_outputs(
        self, clip: Tensor, items: Tensor, update: bool
    ) -> tuple[InferenceBatch, dict[str, Tensor], Tensor | None]:
        """Score purely (compiled with ``compile``): scores, cues and the updated items."""
        prediction, target, read = self._encode_read_decode(clip, items)
        return self.memory_outputs(prediction, target, read, items, update)
