"""PyTorch model of LGN-Net (Zhao et al., 2022): local (spatiotemporal) and global (memory) normality.

Two branches read the same four past frames and one decoder fuses them:

* **local**: a shared frame encoder ``E_loc`` (two stride-2 stages, ``x_t`` at 1/4 resolution), four
  stacked ST-LSTM cells with the zigzag spatiotemporal memory (:mod:`.st_lstm`), the output
  ``F_loc = [H ; M]``, and two transposed convolutions back to full resolution;
* **global**: MNAD's prediction encoder ``E_glo`` (its skips unused), the MNAD memory
  (:mod:`anomalib_vadproto.components.memory`), and a trunk that decodes **only the memory read**
  ``p̂``. The read weights are detached and the items are buffers, so no frame-loss gradient reaches
  ``E_glo``: it is trained by the compactness and separateness losses alone;
* **fusion**: ``[F'_glo ; F'_loc]`` into MNAD's ``Gen`` head with ``tanh``.

Ablations of the paper (``variant``): ``"lgn"`` (default), ``"lgn_st"`` (ConvLSTM cells and
``F_loc = [H ; C]``), ``"loc"`` (Loc-Net: the ConvLSTM branch alone), ``"glo"`` (Glo-Net: the
memory branch alone, MNAD-like, decoding ``[q ; p̂]``).
"""

from __future__ import annotations

import torch
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.blocks import DoubleConv, OutputHead, UNetEncoder, UpConv, conv_bn_relu, unet_widths
from anomalib_vadproto.components.clip import split_clip, stack_frames
from anomalib_vadproto.components.memory import (
    TEST_UPDATES,
    Memory,
    MemoryModelMixin,
    MemoryTrainOutput,
    read_feature_map,
)
from anomalib_vadproto.components.scores import error_map, psnr
from anomalib_vadproto.components.torch_model import VideoTorchModel
from anomalib_vadproto.errors import check_choice

from .st_lstm import SpatioTemporalStack

#: How the frame encoder's batch norm sees the input frames in training (see :class:`LgnNetModel`).
FRAME_NORMS = ("per_frame", "pooled")
#: variant -> (local branch cell or None, global branch?)
VARIANTS = {"lgn": ("st_lstm", True), "lgn_st": ("conv_lstm", True), "loc": ("conv_lstm", False), "glo": (None, True)}


class FrameEncoder(nn.Sequential):
    """``E_loc``: conv-BN-ReLU stride 2, conv-BN-ReLU, stride 2, conv-BN-ReLU (``x_t`` at 1/4 size)."""

    def __init__(self, in_channels: int, width: int) -> None:
        stride2 = lambda i, o: [nn.Conv2d(i, o, 3, stride=2, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]  # noqa: E731
        super().__init__(
            *stride2(in_channels, width),
            *conv_bn_relu(width, width),
            *stride2(width, 2 * width),
            *conv_bn_relu(2 * width, 2 * width),
        )


class GlobalTrunk(nn.Sequential):
    """Decoder of the memory read: ``Basic``/``Up`` stages from 1/8 to full resolution, no skips."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int]) -> None:
        w1, w2, w3, w4 = widths
        super().__init__(
            DoubleConv(in_channels, w4),
            UpConv(w4, w3),
            DoubleConv(w3, w3),
            UpConv(w3, w2),
            DoubleConv(w2, w2),
            UpConv(w2, w1),
        )


class LgnNetModel(MemoryModelMixin, VideoTorchModel):
    """LGN-Net: spatiotemporal branch + memory branch + fusion decoder.

    Training mode returns a :class:`~anomalib_vadproto.components.memory.MemoryTrainOutput` (Loc-Net, which
    has no memory: with ``queries``/``items`` set to ``None``).

    Args:
        variant: ``"lgn"`` (paper), ``"lgn_st"``, ``"loc"`` or ``"glo"`` (the paper's ablations).
        num_input_frames: Past frames (paper: 4).
        in_channels: Channels per frame after pre-processing (3 RGB, 1 grey).
        width: Base width; 64 is the paper (ST hidden size ``2 * width`` = 128, memory dim ``8 * width`` = 512).
        local_width: Base width of the local branch (frame encoder, ST cells, deconvolutions) when it
            should differ from ``width``; ``None`` (paper) uses ``width``. Lite profiles narrow the
            recurrent branch, which costs most on a CPU, and keep the memory branch at full width.
        num_layers: Stacked recurrent cells (paper: 4).
        memory_size: Memory items (paper: 10 Ped2/Avenue, 200 ShanghaiTech).
        update_rescale: ``"code"`` or ``"paper"`` rescaling of the memory update (as MNAD).
        test_time_update: Apply the gated memory update during evaluation (paper: yes).
        gamma: Test-time update threshold on the weighted regular score (paper: 0.009 Ped2).
        frame_norm: How the frame encoder ``E_loc`` runs in training. ``"per_frame"`` (official STP-Net
            code): once per input frame, so each batch-norm layer normalises with the statistics of the
            ``B`` frames of one time step and updates its running statistics once per frame (4 times a
            step). ``"pooled"``: one call over all ``B·T`` frames (one set of statistics, one update;
            fewer kernel launches). Evaluation uses the running statistics, the same for both.
        test_update: ``"per_batch"`` (default) or ``"per_clip"`` (batch-1 semantics), as MNAD's.

    """

    def __init__(
        self,
        variant: str = "lgn",
        num_input_frames: int = 4,
        in_channels: int = 3,
        width: int = 64,
        local_width: int | None = None,
        num_layers: int = 4,
        memory_size: int = 10,
        update_rescale: str = "code",
        test_time_update: bool = True,
        gamma: float = 0.009,
        frame_norm: str = "per_frame",
        test_update: str = "per_batch",
    ) -> None:
        check_choice("frame_norm", frame_norm, FRAME_NORMS)
        check_choice("test_update", test_update, TEST_UPDATES)
        check_choice("variant", variant, VARIANTS)
        super().__init__(num_input_frames, in_channels)
        self.frame_norm = frame_norm
        self.variant = variant
        self.test_time_update = test_time_update
        self.test_update = test_update
        self.gamma = gamma
        cell, has_global = VARIANTS[variant]
        self.has_memory = has_global
        self.has_local = cell is not None
        widths = unet_widths(width)
        fused = 0
        if cell is not None:
            local = unet_widths(width if local_width is None else local_width)
            self.frame_encoder = FrameEncoder(in_channels, local[0])
            self.recurrent = SpatioTemporalStack(local[1], local[1], num_layers=num_layers, cell=cell)
            self.local_decoder = nn.Sequential(
                UpConv(self.recurrent.output_channels, local[1]), UpConv(local[1], local[0])
            )
            fused += local[0]
        if has_global:
            self.encoder = UNetEncoder(in_channels * num_input_frames, widths)
            self.memory = Memory(memory_size, widths[3], rescale=update_rescale)
            # Glo-Net decodes [q ; p̂] like MNAD; LGN-Net decodes the read p̂ alone.
            self.global_decoder = GlobalTrunk(widths[3] * (2 if cell is None else 1), widths)
            fused += widths[0]
        self.head = OutputHead(fused, widths[0], in_channels)

    def reset_test_state(self) -> None:
        """Restart the test-time memory (if any) from the trained items."""
        if self.has_memory:
            super().reset_test_state()

    @property
    def updates_memory_at_test_time(self) -> bool:
        """Whether scoring applies the gated test-time update (never for Loc-Net, which has no memory)."""
        return self.has_memory and super().updates_memory_at_test_time

    def _predict(self, clip: Tensor, items: Tensor | None):  # noqa: ANN202
        inputs, target = split_clip(self.check_clip(clip), self.num_inputs)
        branches, read = [], None
        if self.has_memory:
            features, _ = self.encoder(stack_frames(inputs))  # skips unused: the global branch has no U-Net skips
            read = read_feature_map(self.memory, features, items)
            glo_in = read.read_map if self.has_local else torch.cat((read.query_map, read.read_map), dim=1)
            branches.append(self.global_decoder(glo_in))
        if self.has_local:
            local = self.recurrent(self.encode_frames(inputs))
            branches.append(self.local_decoder(local))
        prediction = self.head(torch.cat(branches, dim=1))
        return prediction, target, read

    def encode_frames(self, inputs: Tensor) -> Tensor:
        """``E_loc`` of every input frame ``(B, T, C, H, W)`` -> ``(B, T, C', H/4, W/4)``, shared over time."""
        if self.training and self.frame_norm == "per_frame":  # batch statistics per time step, as the code
            return torch.stack([self.frame_encoder(inputs[:, step]) for step in range(inputs.shape[1])], dim=1)
        return self.frame_encoder(inputs.flatten(0, 1)).unflatten(0, inputs.shape[:2])

    def _forward(self, clip: Tensor) -> MemoryTrainOutput:
        """Training outputs, reading the trained items (none for Loc-Net)."""
        return self.train_outputs(clip, self.step_items() if self.has_memory else None)

    def train_outputs(self, clip: Tensor, items: Tensor | None) -> MemoryTrainOutput:
        """Return what the losses and the memory update need, reading ``items`` (``None`` for Loc-Net)."""
        prediction, target, read = self._predict(clip, items)
        if read is None:
            return MemoryTrainOutput(prediction, target, None, None, None, None)  # type: ignore[arg-type]
        return MemoryTrainOutput.build(prediction, target, read, items)

    def score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips; with a memory, apply the gated test-time update (``test_update``) unless read-only.

        Returns:
            ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error)`` and the cues ``psnr`` and
            (with a memory) ``feature_distance``.

        """
        if self.has_memory:
            return super().score(clip)  # MemoryModelMixin's, with the gated update
        return VideoTorchModel.score(self, clip)  # _score, compiled with ``compile``

    def _score_outputs(
        self, clip: Tensor, items: Tensor, update: bool
    ) -> tuple[InferenceBatch, dict[str, Tensor], Tensor | None]:
        """Score with a memory, purely (compiled with ``compile``): scores, cues and the updated items."""
        prediction, target, read = self._predict(clip, items)
        return self.memory_outputs(prediction, target, read, items, update)

    def _score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Loc-Net's score (no memory): the frame PSNR, a pure function of the clip."""
        prediction, target, _ = self._predict(clip, None)
        frame_psnr = psnr(prediction, target)
        batch = InferenceBatch(pred_score=-frame_psnr, anomaly_map=error_map(prediction, target))
        return batch, {"psnr": frame_psnr}
