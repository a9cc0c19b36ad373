"""APN as an anomalib video model: ``anomalib train --model Apn``.

Hu, Wu, Chen, Wang, Cheng, *Video Anomaly Detection via Attention Prototype Network* (2021),
following the released code: a BN-free 3-level U-Net with shared-weight
criss-cross attention at every encoder level, the attention prototype unit on the full-resolution
map, and the losses and score of the code.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_vadproto import Apn, LocalUCSDped
    >>> datamodule = LocalUCSDped(root="...", clip_length_in_frames=5, frames_between_clips=1)  # doctest: +SKIP
    >>> Engine(max_epochs=60).fit(Apn(), datamodule=datamodule)  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import nn

from anomalib_vadproto.components.fast import adam_kwargs
from anomalib_vadproto.components.lightning import VideoModelMixin, seed_if_given
from anomalib_vadproto.components.losses import intensity_loss
from anomalib_vadproto.components.ssim import ssim_loss
from anomalib_vadproto.errors import check_choice

from .torch_model import ApnModel, ApnTrainOutput, diversity_loss, nearest_prototypes


def apn_losses(out: ApnTrainOutput) -> dict[str, torch.Tensor]:
    """Return the code's loss terms; the gradient-free "similarity" term is a constant and left out."""
    prototypes = out.prototypes
    return {
        "pixel": intensity_loss(out.prediction, out.target),
        "ssim": ssim_loss(out.prediction, out.target),
        "feature": intensity_loss(prototypes.queries, nearest_prototypes(prototypes)),  # prototypes not detached
        "diversity": diversity_loss(prototypes.prototypes),
    }


def training_outputs(
    model: ApnModel, clip: torch.Tensor, lambda_ssim: float, lambda_feature: float, lambda_diversity: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Compute the pure tensor part of a training step (compiled with ``compile``): the loss and its terms.

    ``L_pix + λ_ssim (1 - SSIM) + λ_fea L_fea + λ_dis L_dis``.
    """
    losses = apn_losses(model(clip))
    loss = (
        losses["pixel"]
        + lambda_ssim * losses["ssim"]
        + lambda_feature * losses["feature"]
        + lambda_diversity * losses["diversity"]
    )
    return loss, losses


class Apn(VideoModelMixin, AnomalibModule):
    """APN: criss-cross context and per-sample attention prototypes for frame prediction.

    Defaults are the released code's (the paper's values, where they differ, are noted).

    Args:
        num_input_frames: Past frames the model reads (4, so clips of 5).
        image_size: Frame size after the pre-processor (256x256).
        grayscale: Convert frames to one grey channel (lite profiles).
        width: Base channel width (64; the prototype unit works on ``2 * width`` = 128 channels).
        num_prototypes: Prototypes ``M`` (10).
        recurrence: Criss-cross hops with shared weights (2).
        context_fusion: ``"sum"`` (code) or ``"concat"`` (paper: concatenation and a 1x1 convolution).
        lambda_ssim: Weight of ``1 - SSIM`` (code 1e-4).
        lambda_feature: Weight of the feature-compactness loss ``L_fea`` (1).
        lambda_diversity: Weight of the diversity loss ``L_dis`` (code 1e-4; paper λ1·λ2 = 0.01).
        score_weight: ``α`` of ``α g(PSNR) + (1 - α) g(PSNR_fea)`` (0.5, the test script).
        smoothing: Smooth each video's fused score with the code's 15-tap Gaussian (σ = 2). Off by
            default, since the other methods are not smoothed; the other setting is always logged too
            (``protocol_smoothed_AUC_*``), so both numbers come out of one test.
        smoothing_mode: Border handling of the smoothing: ``"hold"`` (the official code's filter: a valid
            convolution whose first and last values are held over the 7 border frames of each video,
            default), ``"nearest"`` (edge padding) or ``"reflect"``.
        lr: AdamW learning rate (code 1e-3, constant; paper 1e-4).
        weight_decay: AdamW weight decay (PyTorch's default 0.01, which the code uses).
        lr_schedule: ``"constant"`` (the code, 210 epochs) or ``"cosine"``: cosine annealing to 0 over
            the run, stepped per epoch, for short runs such as the lite profile.
        seed: Seed for a reproducible run.
        compile: ``torch.compile`` the training step's forward and losses, and the scoring (see the
            README's *Fast training on a GPU*).
        compile_mode: ``None`` (automatic) or a ``torch.compile`` mode (``"reduce-overhead"``: CUDA graphs).
        channels_last: Channels-last weights on CUDA too (they always are on a CPU).
        log_step_losses: Log the training losses at every step instead of as epoch means.
        pre_processor: ``True`` builds resize (+ grey) + ``[-1, 1]`` scaling at ``image_size``.
        post_processor: anomalib post-processor or ``True`` for the default.
        evaluator: anomalib evaluator or ``True`` for the default (with a binned pixel AUROC).
        visualizer: visualizer or ``True`` for the video-aware default.

    """

    architecture_hparams = (
        "num_input_frames",
        "image_size",
        "grayscale",
        "width",
        "num_prototypes",
        "context_fusion",
    )
    size_multiple = 4  # two 2x2 max-poolings
    # INT8_PTQ: the first 4 quantisable layers back from every output stay FP32 (32 of 61 in the lite
    # network): shallower depths rank the frame PSNR of training clips poorly against FP32's, and 4 is the
    # smallest depth at which every cue agrees (Spearman >= 0.99): python -m research.int8_scope --model apn.
    int8_fp32_depth = 4

    def __init__(
        self,
        num_input_frames: int = 4,
        image_size: Sequence[int] | int = (256, 256),
        grayscale: bool = False,
        width: int = 64,
        num_prototypes: int = 10,
        recurrence: int = 2,
        context_fusion: str = "sum",
        lambda_ssim: float = 1e-4,
        lambda_feature: float = 1.0,
        lambda_diversity: float = 1e-4,
        score_weight: float = 0.5,
        smoothing: bool = False,
        smoothing_mode: str = "hold",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        lr_schedule: str = "constant",
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        channels_last: bool = False,
        log_step_losses: bool = False,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        seed_if_given(seed)
        if not 0.0 <= score_weight <= 1.0:
            msg = f"score_weight must be in [0, 1], got {score_weight}"
            raise ValueError(msg)
        super().__init__(image_size, grayscale, pre_processor, post_processor, evaluator, visualizer)
        self.lr = lr
        self.weight_decay = weight_decay
        check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
        self.lr_schedule = lr_schedule
        self.lambda_ssim = lambda_ssim
        self.lambda_feature = lambda_feature
        self.lambda_diversity = lambda_diversity
        self.model = ApnModel(
            num_input_frames=num_input_frames,
            in_channels=1 if grayscale else 3,
            width=width,
            num_prototypes=num_prototypes,
            recurrence=recurrence,
            context_fusion=context_fusion,
        )
        self.setup_fast_training(compile, compile_mode, channels_last, log_step_losses)
        self.clip_length = self.model.clip_length
        self.setup_protocol(
            {"psnr": score_weight, "psnr_feature": 1.0 - score_weight},
            normal_cues=("psnr", "psnr_feature"),
            smoothing=smoothing,
            report_other_smoothing=True,
            smoothing_mode=smoothing_mode,
        )

    def configure_optimizers(self):  # noqa: ANN201
        """AdamW (fused on CUDA); a constant learning rate as the code, or cosine annealing over the run."""
        parameters = list(self.model.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay, **adam_kwargs(parameters))
        if self.lr_schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.schedule_epochs(), eta_min=0.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def losses(self, out: ApnTrainOutput) -> dict[str, torch.Tensor]:
        """Return the code's loss terms; the gradient-free "similarity" term is a constant and left out."""
        return apn_losses(out)

    def training_step(self, batch, batch_idx: int, *args, **kwargs):  # noqa: ANN001, ANN201
        """``L_pix + λ_ssim (1 - SSIM) + λ_fea L_fea + λ_dis L_dis``."""
        del batch_idx, args, kwargs
        clip = batch.image
        step = self.step_function(training_outputs, clip)
        loss, losses = step(self.model, clip, self.lambda_ssim, self.lambda_feature, self.lambda_diversity)
        self.log_losses({"loss": loss, **losses}, batch_size=clip.shape[0])
        return loss
