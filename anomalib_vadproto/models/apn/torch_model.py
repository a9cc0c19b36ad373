"""PyTorch model of APN (Hu et al., 2021): a U-Net with criss-cross attention and an attention prototype unit.

This follows the released code (the paper and the code disagree almost everywhere; the code is what
produced the numbers; the model README's Choices lists the differences):

* **encoder**, three levels of ``Basic`` (conv-ReLU twice, no BN), each followed by the recurrent
  criss-cross attention of its width, ``t ← t + CCA(CCA(t))`` with shared weights (:mod:`.criss_cross`);
* **decoder**, ``Basic`` at 1/4 resolution, then two transposed convolutions (+ ReLU) with the encoder
  skips concatenated, ending in the full-resolution map ``X`` of ``2 * width`` channels (128 for the paper);
* **attention prototype unit** on the L2-normalised ``X`` (:mod:`.prototype_unit`): ``Y = norm(X̃) + X``;
* **output head**, MPN's BN-free ``ohead`` with ``tanh``.

Nothing is stored between clips: there is no memory and no test-time update, so evaluation is a
pure function of the clip.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.blocks import OutputHead, torch_cat
from anomalib_vadproto.components.clip import check_at_least, split_clip, stack_frames
from anomalib_vadproto.components.scores import error_map, psnr
from anomalib_vadproto.components.torch_model import VideoTorchModel
from anomalib_vadproto.errors import check_choice

from .criss_cross import RecurrentCrissCross
from .prototype_unit import AttentionPrototypeUnit, PrototypeOutput

CONTEXT_FUSIONS = ("sum", "concat")


def basic(in_channels: int, out_channels: int) -> nn.Sequential:
    """MPN's ``Basic``: two 3x3 convolutions with ReLU, no batch normalisation."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def up(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 transposed convolution with stride 2 and ReLU (no BN)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True)
    )


class ContextStage(nn.Module):
    """An encoder level: ``Basic``, then the recurrent criss-cross context.

    ``context_fusion="sum"`` is the code (``t + CCA^R(t)``); ``"concat"`` is the paper's reading
    ("concatenated with X and fused by convolution"): a 1x1 convolution of ``[t ; CCA^R(t)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, recurrence: int, context_fusion: str) -> None:
        super().__init__()
        self.block = basic(in_channels, out_channels)
        self.context = RecurrentCrissCross(out_channels, recurrence=recurrence)
        self.fuse = nn.Conv2d(2 * out_channels, out_channels, 1) if context_fusion == "concat" else None

    def forward(self, x: Tensor) -> Tensor:
        """Return the level's output (same spatial size as ``x``)."""
        x = self.block(x)
        if self.fuse is None:
            return self.context(x)  # x + CCA(CCA(x)), the code
        return self.fuse(torch.cat((x, self.context.cca_only(x)), dim=1))


class ApnTrainOutput(NamedTuple):
    """Training-time outputs of :class:`ApnModel`."""

    prediction: Tensor  # (B, C, H, W) predicted frame in [-1, 1]
    target: Tensor  # (B, C, H, W) the clip's last frame
    prototypes: PrototypeOutput  # queries, per-sample prototypes and scores of the APU


class ApnModel(VideoTorchModel):
    """APN: 3-level U-Net with criss-cross attention and the attention prototype unit.

    Training mode returns :class:`ApnTrainOutput`; :meth:`score` is a pure function of the clip (APN keeps no
    state between clips, so :meth:`reset_test_state` has nothing to do and ``read_only`` changes nothing).

    Args:
        num_input_frames: Past frames (paper: 4).
        in_channels: Channels per frame after pre-processing (3 RGB, 1 grey).
        width: Base width; 64 is the code (levels 64/128/256, prototype dimension ``2 * width`` = 128).
        num_prototypes: Attention heads/prototypes ``M`` (10).
        recurrence: Criss-cross hops ``R`` with shared weights (2).
        context_fusion: ``"sum"`` (code, default) or ``"concat"`` (paper: concatenation + 1x1 conv).

    """

    def __init__(
        self,
        num_input_frames: int = 4,
        in_channels: int = 3,
        width: int = 64,
        num_prototypes: int = 10,
        recurrence: int = 2,
        context_fusion: str = "sum",
    ) -> None:
        super().__init__(num_input_frames, in_channels)
        check_at_least("width", width)
        check_choice("context_fusion", context_fusion, CONTEXT_FUSIONS)
        w1, w2, w3 = width, 2 * width, 4 * width
        self.enc1 = ContextStage(in_channels * num_input_frames, w1, recurrence, context_fusion)
        self.enc2 = ContextStage(w1, w2, recurrence, context_fusion)
        self.enc3 = ContextStage(w2, w3, recurrence, context_fusion)
        self.pool = nn.MaxPool2d(2)
        self.dec3 = basic(w3, w3)
        self.up3 = up(w3, w2)
        self.dec2 = basic(2 * w2, w2)
        self.up2 = up(w2, w1)
        self.prototype_unit = AttentionPrototypeUnit(2 * w1, num_prototypes)
        self.head = OutputHead(2 * w1, w1, in_channels, batch_norm=False)

    def _forward(self, clip: Tensor) -> ApnTrainOutput:
        """Predict the last frame: the prediction, its target and the prototype unit's outputs."""
        inputs, target = split_clip(self.check_clip(clip), self.num_inputs)
        e1 = self.enc1(stack_frames(inputs))
        e2 = self.enc2(self.pool(e1))
        x = self.dec3(self.enc3(self.pool(e2)))
        x = self.dec2(torch_cat(e2, self.up3(x)))
        features = torch_cat(e1, self.up2(x))  # X: (B, 2w, H, W), normalised inside the APU
        prototypes = self.prototype_unit(features)
        return ApnTrainOutput(self.head(prototypes.output), target, prototypes)

    def _score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips as the released code does (compiled with ``compile``).

        Returns:
            ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error)`` and the normality cues
            ``psnr`` (frame) and ``psnr_feature`` (``10 log10(1 / mse_fea)``, the feature
            reconstruction of each location by its nearest prototype).

        """
        out = self._forward(clip)
        frame_psnr = psnr(out.prediction, out.target)
        batch = InferenceBatch(pred_score=-frame_psnr, anomaly_map=error_map(out.prediction, out.target))
        return batch, {"psnr": frame_psnr, "psnr_feature": feature_psnr(out.prototypes)}


def nearest_prototypes(prototypes: PrototypeOutput) -> Tensor:
    """``(B, N, C)``: each location's most similar prototype ``p̄_{a(n)}``, ``a(n) = argmax_m β_{n,m}``."""
    nearest = prototypes.scores.argmax(dim=2)  # softmax is monotonic: argmax of β = argmax of the scores
    return torch.gather(prototypes.prototypes, 1, nearest.unsqueeze(-1).expand(-1, -1, prototypes.queries.shape[2]))


def feature_mse(prototypes: PrototypeOutput) -> Tensor:
    """``(B,)``: per clip, mean over locations and channels of ``(x_n - p̄_{a(n)})²``."""
    return (prototypes.queries - nearest_prototypes(prototypes)).square().mean(dim=(1, 2))


def feature_psnr(prototypes: PrototypeOutput, eps: float = 1e-10) -> Tensor:
    """``(B,)``: ``10 log10(1 / mse_fea)``, the feature-reconstruction cue (high means normal)."""
    return 10.0 * torch.log10(1.0 / (feature_mse(prototypes) + eps))


def diversity_loss(prototypes: Tensor) -> Tensor:
    """``L_dis``: mean over samples of ``2/(M(M-1)) Σ_{m<m'} max(0, 1 - ‖p̄_m - p̄_m'‖²)``.

    For unit-norm prototypes ``1 - ‖p̄_m - p̄_m'‖² = 2 cos - 1``: pairs closer than 60° are pushed apart.

    Args:
        prototypes: ``(B, M, C)`` unit-norm prototypes of each sample.

    """
    m = prototypes.shape[1]
    if m < 2:
        return prototypes.new_zeros(())
    squared = (prototypes.unsqueeze(2) - prototypes.unsqueeze(1)).square().sum(dim=3)  # no sqrt: safe gradient
    closeness = (1.0 - squared).clamp_min(0.0)
    # The pairs m < m' by index (row-major, as a boolean upper-triangle mask would give them): a boolean mask
    # would have to count its true entries on the host first.
    rows, cols = torch.triu_indices(m, m, offset=1, device=prototypes.device)
    return (closeness[:, rows, cols].sum(dim=1) * (2.0 / (m * (m - 1)))).mean()
