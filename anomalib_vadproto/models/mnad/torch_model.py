"""PyTorch model of MNAD (Park et al., CVPR 2020): a U-Net with a memory of normal patterns.

``spec/methods.md`` §1. The encoder's raw feature map is L2-normalised along channels into
queries; the memory read ``p̂`` is concatenated with the queries and decoded into the next frame
(prediction) or the input frame (reconstruction). See :mod:`anomalib_vadproto.components.memory`
for the exact memory semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.blocks import UNetDecoder, UNetEncoder, unet_widths
from anomalib_vadproto.components.clip import split_clip, stack_frames, validate_clip
from anomalib_vadproto.components.memory import Memory
from anomalib_vadproto.components.scores import error_map, feature_distance, psnr, regular_score

TASKS = ("prediction", "reconstruction")


@dataclass
class MnadTrainOutput:
    """What the training step needs for MNAD's losses and memory update."""

    prediction: Tensor  # (B, C, H, W) in [-1, 1]
    target: Tensor  # (B, C, H, W)
    queries: Tensor  # (B*K, D) unit-norm
    items: Tensor  # (M, D) items used for the read (pre-update)
    nearest: Tensor  # (B*K,) first nearest item
    second: Tensor  # (B*K,) second nearest item


class MnadModel(nn.Module):
    """MNAD network with its memory.

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
    ) -> None:
        super().__init__()
        if task not in TASKS:
            msg = f"task must be one of {TASKS}, got {task!r}"
            raise ValueError(msg)
        if task == "prediction" and num_input_frames < 1:
            msg = f"num_input_frames must be at least 1, got {num_input_frames}"
            raise ValueError(msg)
        self.task = task
        self.num_inputs = num_input_frames if task == "prediction" else 1
        self.clip_length = self.num_inputs + 1 if task == "prediction" else 1
        self.in_channels = in_channels
        self.test_time_update = test_time_update
        self.gamma = gamma
        self.read_only = False
        widths = unet_widths(width)
        self.encoder = UNetEncoder(in_channels * self.num_inputs, widths)
        self.memory = Memory(memory_size, widths[3], rescale=update_rescale)
        self.decoder = UNetDecoder(2 * widths[3], widths, in_channels, skips=task == "prediction")

    def reset_test_state(self) -> None:
        """Restart the test-time memory from the trained items."""
        self.memory.reset_test_items()

    def _encode_read_decode(self, clip: Tensor, items: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        clip = validate_clip(clip, self.clip_length, self.in_channels)
        inputs, target = split_clip(clip, self.num_inputs)
        features, skips = self.encoder(stack_frames(inputs))
        queries = F.normalize(features, dim=1)
        b, d, h, w = queries.shape
        flat = queries.permute(0, 2, 3, 1).reshape(b * h * w, d)
        read, scores = self.memory.read(flat, items)
        read = read.reshape(b, h, w, d).permute(0, 3, 1, 2)
        prediction = self.decoder(torch.cat((queries, read), dim=1), skips if self.task == "prediction" else None)
        return prediction, target, flat, scores

    def forward(self, clip: Tensor) -> MnadTrainOutput | InferenceBatch:
        """Training: outputs for the losses. Evaluation: an ``InferenceBatch`` (see :meth:`score`)."""
        if not self.training:
            return self.score(clip)[0]
        items = self.memory.items
        prediction, target, queries, scores = self._encode_read_decode(clip, items)
        top2 = scores.topk(2, dim=1).indices
        return MnadTrainOutput(prediction, target, queries, items, top2[:, 0], top2[:, 1])

    def score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips and, unless read-only, apply the gated test-time memory update.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error (B, 1, H, W))`` and the cues
            ``{"psnr": (B,), "feature_distance": (B,)}`` for the papers' protocol.

        """
        items = self.memory.current_items(test_time=self.test_time_update and not self.read_only)
        prediction, target, queries, scores = self._encode_read_decode(clip, items)
        b = prediction.shape[0]
        per_clip = queries.reshape(b, -1, queries.shape[-1])
        frame_psnr = psnr(prediction, target)
        distance = feature_distance(per_clip, items, scores.argmax(dim=1).reshape(b, -1))
        if self.test_time_update and not self.read_only:
            self.memory.gated_update_(per_clip.detach(), regular_score(prediction, target) < self.gamma)
        batch = InferenceBatch(pred_score=-frame_psnr, anomaly_map=error_map(prediction, target))
        return batch, {"psnr": frame_psnr, "feature_distance": distance}
