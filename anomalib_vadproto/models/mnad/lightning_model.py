"""MNAD as an anomalib video model: ``anomalib train --model Mnad``.

Park, Noh, Ham, *Learning Memory-guided Normality for Anomaly Detection*, CVPR 2020.

Example:
    >>> from anomalib.data import UCSDped
    >>> from anomalib.engine import Engine
    >>> from anomalib_vadproto import Mnad
    >>> datamodule = UCSDped(clip_length_in_frames=5, frames_between_clips=1)  # doctest: +SKIP
    >>> engine = Engine(max_epochs=60)  # doctest: +SKIP
    >>> engine.fit(Mnad(), datamodule=datamodule)  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Sequence

from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import Tensor, nn

from anomalib_vadproto.components import distributed
from anomalib_vadproto.components.lightning import VideoModelMixin, seed_if_given
from anomalib_vadproto.errors import check_choice

from .torch_model import MnadModel

# Per-task defaults of the paper and its code: (lr, lambda_compact = lambda_separate, score weight, gamma).
TASK_DEFAULTS = {"prediction": (2e-4, 0.1, 0.6, 0.01), "reconstruction": (2e-5, 0.01, 0.7, 0.015)}


def training_outputs(
    model: MnadModel,
    clip: Tensor,
    items: Tensor,
    lambda_compact: float,
    lambda_separate: float,
    margin: float,
    update: bool = True,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Compute the pure tensor part of a training step (compiled with ``compile``): losses and updated items.

    Args:
        model: The torch model, in training mode.
        clip: ``(B, T, C, H, W)`` pre-processed clips.
        items: The trained memory items the batch reads (an argument, not read from the module, so that a
            compiled step sees a plain input whose value changes every step).
        lambda_compact: Weight of the compactness loss.
        lambda_separate: Weight of the separateness loss.
        margin: Triplet margin of the separateness loss.
        update: Return the updated items; ``False`` returns the batch's detached queries instead, for the
            update with the queries of every DDP rank (:meth:`Mnad.training_step`).

    Returns:
        ``(loss, {"pred", "compact", "separate"}, items after the update with every query of the batch)``, or
        the queries ``(B*K, D)`` in place of the items without ``update``.

    """
    out = model.train_outputs(clip, items)
    loss, losses = out.weighted_loss(lambda_compact, lambda_separate, margin)
    return loss, losses, out.updated_items(model.memory.rescale) if update else out.queries.detach()


class Mnad(VideoModelMixin, AnomalibModule):
    """MNAD: memory-guided normality, prediction (default) or reconstruction variant.

    Args:
        task: ``"prediction"`` (clips of ``num_input_frames + 1`` frames) or ``"reconstruction"``
            (clips of 1 frame).
        num_input_frames: Past frames the prediction variant reads (paper: 4, so clips of 5).
        image_size: Frame size after the pre-processor (paper: 256x256).
        grayscale: Convert frames to one grey channel (lite profiles).
        width: Base channel width (paper: 64; memory dimension ``8 * width``).
        memory_size: Number of memory items (paper: 10).
        lambda_compact: Weight of the compactness loss (default 0.1 prediction, 0.01 reconstruction).
        lambda_separate: Weight of the separateness loss (same defaults).
        margin: Triplet margin of the separateness loss.
        score_weight: ``λ`` of the score ``λ(1 - g(PSNR)) + (1 - λ) g(D)`` (default 0.6 / 0.7).
        gamma: Test-time update threshold on the weighted regular score (default 0.01 / 0.015).
        update_rescale: ``"code"`` (max over all queries; default) or ``"paper"`` (max over ``U_m``).
        test_time_update: Apply the gated memory update while evaluating.
        test_update: ``"per_batch"`` (default: the clips of a batch read the memory of the batch's start, then
            update it in order) or ``"per_clip"`` (clip by clip, each reading the memory updated by every clip
            before it: the reference's batch-1 evaluation whatever ``eval_batch_size``; the paper configs).
        lr: Adam learning rate (default 2e-4 prediction, 2e-5 reconstruction, as in the paper).
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

    architecture_hparams = ("task", "num_input_frames", "image_size", "grayscale", "width", "memory_size")
    size_multiple = 8  # three 2x2 max-poolings in the U-Net encoder
    # INT8_PTQ: the first 2 quantisable layers back from every output stay FP32 (5 of the lite network's):
    # the smallest depth at which the INT8 frame PSNR ranks training clips like FP32 (Spearman >= 0.99);
    # shallower depths cost points of test AUC: python -m research.int8_scope --model mnad (the model README).
    int8_fp32_depth = 2

    def __init__(
        self,
        task: str = "prediction",
        num_input_frames: int = 4,
        image_size: Sequence[int] | int = (256, 256),
        grayscale: bool = False,
        width: int = 64,
        memory_size: int = 10,
        lambda_compact: float | None = None,
        lambda_separate: float | None = None,
        margin: float = 1.0,
        score_weight: float | None = None,
        gamma: float | None = None,
        update_rescale: str = "code",
        test_time_update: bool = True,
        test_update: str = "per_batch",
        lr: float | None = None,
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
        check_choice("task", task, TASK_DEFAULTS)
        default_lr, default_lambda, default_weight, default_gamma = TASK_DEFAULTS[task]
        super().__init__(image_size, grayscale, pre_processor, post_processor, evaluator, visualizer)
        self.lr = lr if lr is not None else default_lr
        self.lambda_compact = default_lambda if lambda_compact is None else lambda_compact
        self.lambda_separate = default_lambda if lambda_separate is None else lambda_separate
        self.margin = margin
        weight = default_weight if score_weight is None else score_weight
        if not 0.0 <= weight <= 1.0:
            msg = f"score_weight must be in [0, 1], got {weight}"
            raise ValueError(msg)
        self.model = MnadModel(
            task=task,
            num_input_frames=num_input_frames,
            in_channels=1 if grayscale else 3,
            width=width,
            memory_size=memory_size,
            update_rescale=update_rescale,
            test_time_update=test_time_update,
            gamma=default_gamma if gamma is None else gamma,
            test_update=test_update,
        )
        self.setup_fast_training(compile, compile_mode, channels_last, log_step_losses)
        self.clip_length = self.model.clip_length
        self.setup_protocol({"psnr": weight, "feature_distance": 1.0 - weight}, normal_cues=("psnr",))

    def training_step(self, batch, batch_idx: int, *args, **kwargs):  # noqa: ANN001, ANN201
        """Prediction, compactness and separateness losses, then the memory update with the batch's queries.

        Under DDP the update takes the queries of every rank (the global batch, as one process would), so the
        items stay the same on every rank.
        """
        del batch_idx, args, kwargs
        clip, memory = batch.image, self.model.memory
        across_ranks = distributed.is_distributed()
        step = self.step_function(training_outputs, clip)
        loss, losses, items = step(
            self.model, clip, memory.items, self.lambda_compact, self.lambda_separate, self.margin, not across_ranks
        )
        if across_ranks:
            memory.update_(distributed.all_gather_cat(items))  # items holds this rank's queries
        else:
            memory.items = items  # updated from the items the losses read, with every query of the batch
        self.log_losses({"loss": loss, **losses}, batch_size=clip.shape[0])
        return loss
