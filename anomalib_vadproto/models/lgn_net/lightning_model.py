"""LGN-Net as an anomalib video model: ``anomalib train --model LgnNet``.

Zhao, Ren, Yu, Wang, Zheng, *LGN-Net: Local-Global Normality Network for Video Anomaly Detection*, 2022.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_vadproto import LgnNet, LocalUCSDped
    >>> datamodule = LocalUCSDped(root="...", clip_length_in_frames=5, frames_between_clips=1)  # doctest: +SKIP
    >>> engine = Engine(max_epochs=60)
    >>> engine.fit(LgnNet(), datamodule=datamodule)  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Sequence

from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import Tensor, nn

from anomalib_vadproto.components import distributed
from anomalib_vadproto.components.lightning import VideoModelMixin, seed_if_given
from anomalib_vadproto.components.losses import intensity_loss

from .torch_model import LgnNetModel


def training_outputs(
    model: LgnNetModel,
    clip: Tensor,
    items: Tensor | None,
    lambda_compact: float,
    lambda_separate: float,
    margin: float,
    update: bool = True,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Compute the pure tensor part of a training step (compiled with ``compile``): losses and updated items.

    Args:
        model: The torch model, in training mode.
        clip: ``(B, T, C, H, W)`` pre-processed clips.
        items: The trained memory items the batch reads (``None`` for Loc-Net, which has no memory).
        lambda_compact: Weight of the compactness loss.
        lambda_separate: Weight of the separateness loss.
        margin: Triplet margin of the separateness loss.
        update: Return the updated items; ``False`` returns the batch's detached queries instead, for the
            update with the queries of every DDP rank (:meth:`LgnNet.training_step`).

    Returns:
        ``(loss, losses, items after the update with every query of the batch)`` (without ``update``, the
        queries ``(B*K, D)`` in place of the items); Loc-Net has the prediction loss alone and no items (``None``).

    """
    out = model.train_outputs(clip, items)
    if out.queries is None:  # Loc-Net
        losses = {"pred": intensity_loss(out.prediction, out.target)}
        return losses["pred"], losses, None
    loss, losses = out.weighted_loss(lambda_compact, lambda_separate, margin)
    return loss, losses, out.updated_items(model.memory.rescale) if update else out.queries.detach()


class LgnNet(VideoModelMixin, AnomalibModule):
    """LGN-Net: ST-LSTM local normality fused with an MNAD-memory global normality.

    Defaults are the paper's UCSD Ped2 values; the configs carry the
    Avenue and ShanghaiTech ones.

    Args:
        variant: ``"lgn"`` (paper), ``"lgn_st"`` (ConvLSTM cells), ``"loc"`` (Loc-Net, local branch only)
            or ``"glo"`` (Glo-Net, memory branch only, decoding ``[q ; p̂]``).
        num_input_frames: Past frames the model reads (paper: 4, so clips of 5).
        image_size: Frame size after the pre-processor (paper: 256x256).
        grayscale: Convert frames to one grey channel (lite profiles).
        width: Base channel width (paper: 64).
        local_width: Base width of the local (ST-LSTM) branch if it should differ from ``width``
            (``None``, the paper: same). The lite profile narrows it.
        frame_norm: ``"per_frame"`` (official code, default): the frame encoder runs once per input
            frame in training, its batch norm normalising each time step's ``B`` frames; ``"pooled"``:
            one call over all ``B·T`` frames (this package's form before; fewer launches).
        num_layers: Stacked recurrent cells (paper: 4).
        memory_size: Memory items (10 Ped2/Avenue, 200 ShanghaiTech).
        lambda_compact: Compactness weight ``λ_c`` (10 / 10 / 1).
        lambda_separate: Separateness weight ``λ_s`` (5 / 2 / 1).
        margin: Triplet margin ``α`` (1).
        score_weight: ``λ`` of the score ``λ(1 - g(PSNR)) + (1 - λ) g(D)`` (0.6 / 0.5 / 0.8).
        gamma: Test-time update threshold on the weighted regular score (0.009 / 0.006 / 0.0135).
        update_rescale: ``"code"`` (default) or ``"paper"`` memory-update rescaling (as MNAD).
        test_time_update: Apply the gated memory update while evaluating (paper: yes).
        test_update: ``"per_batch"`` (default: the clips of a batch read the memory of the batch's start, then
            update it in order) or ``"per_clip"`` (clip by clip, each reading the memory updated by every clip
            before it: the reference's batch-1 evaluation whatever ``eval_batch_size``; the paper configs).
        lr: Adam learning rate (2e-4).
        seed: Seed for a reproducible run (anomalib's ``--seed_everything`` is not applied by its CLI).
        compile: ``torch.compile`` the training step's forward, losses and memory update, and the scoring
            (see the README's *Fast training on a GPU*).
        compile_mode: ``None`` (automatic) or a ``torch.compile`` mode (``"reduce-overhead"``: CUDA graphs).
        channels_last: Channels-last weights on CUDA too (they always are on a CPU).
        log_step_losses: Log the training losses at every step instead of as epoch means.
        pre_processor: ``True`` builds resize (+ grey) + ``[-1, 1]`` scaling at ``image_size``.
        post_processor: anomalib post-processor or ``True`` for the default.
        evaluator: anomalib evaluator or ``True`` for the default (with a binned pixel AUROC).
        visualizer: visualizer or ``True`` for the video-aware default.

    """

    architecture_hparams = (
        "variant",
        "num_input_frames",
        "image_size",
        "grayscale",
        "width",
        "local_width",
        "num_layers",
        "memory_size",
    )
    size_multiple = 8  # the memory branch's U-Net encoder pools three times (the local branch alone: 4)
    # INT8_PTQ: the first 4 quantisable layers back from every output stay FP32 (10 of 68 in the lite
    # network). The frame PSNR ranks training clips like FP32 at every depth; the memory-branch feature
    # distance agrees less and best at depth 4, the deepest swept, so that depth is kept; the test AUC
    # barely moves at any depth: python -m research.int8_scope --model lgn_net (the model README).
    # (That sweep predates keeping reductions in FP32; python -m benchmarks.speed measures the current export.)
    int8_fp32_depth = 4

    def __init__(
        self,
        variant: str = "lgn",
        num_input_frames: int = 4,
        image_size: Sequence[int] | int = (256, 256),
        grayscale: bool = False,
        width: int = 64,
        local_width: int | None = None,
        num_layers: int = 4,
        frame_norm: str = "per_frame",
        memory_size: int = 10,
        lambda_compact: float = 10.0,
        lambda_separate: float = 5.0,
        margin: float = 1.0,
        score_weight: float = 0.6,
        gamma: float = 0.009,
        update_rescale: str = "code",
        test_time_update: bool = True,
        test_update: str = "per_batch",
        lr: float = 2e-4,
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
        self.lambda_compact = lambda_compact
        self.lambda_separate = lambda_separate
        self.margin = margin
        self.model = LgnNetModel(
            variant=variant,
            num_input_frames=num_input_frames,
            in_channels=1 if grayscale else 3,
            width=width,
            local_width=local_width,
            num_layers=num_layers,
            frame_norm=frame_norm,
            memory_size=memory_size,
            update_rescale=update_rescale,
            test_time_update=test_time_update,
            gamma=gamma,
            test_update=test_update,
        )
        self.setup_fast_training(compile, compile_mode, channels_last, log_step_losses)
        self.clip_length = self.model.clip_length
        if self.model.has_memory:
            self.setup_protocol({"psnr": score_weight, "feature_distance": 1.0 - score_weight})
        else:  # Loc-Net: PSNR only
            self.setup_protocol({"psnr": 1.0})

    def training_step(self, batch, batch_idx: int, *args, **kwargs):  # noqa: ANN001, ANN201
        """Prediction loss plus (with a memory) compactness and separateness, then the memory update.

        Under DDP the update takes the queries of every rank (the global batch, as one process would), so the
        items stay the same on every rank.
        """
        del batch_idx, args, kwargs
        clip, model = batch.image, self.model
        items = model.memory.items if model.has_memory else None
        across_ranks = distributed.is_distributed()
        step = self.step_function(training_outputs, clip)
        loss, losses, items = step(
            model, clip, items, self.lambda_compact, self.lambda_separate, self.margin, not across_ranks
        )
        if items is not None and across_ranks:
            model.memory.update_(distributed.all_gather_cat(items))  # items holds this rank's queries
        elif items is not None:
            model.memory.items = items  # updated from the items the losses read, with every query of the batch
        self.log_losses({"loss": loss, **losses}, batch_size=clip.shape[0])
        return loss
