"""DLAN-AC as an anomalib video model: ``anomalib train --model DlanAc``.

Yang, Wu, Liu, Zhang, *Dynamic Local Aggregation Network with Adaptive Clusterer for Anomaly
Detection*, ECCV 2022.

Both training stages run inside one ``fit`` (one ``anomalib train``): the first ``ac_epochs``
epochs are stage 1 (autoencoder with the intensity and gradient losses, the Adaptive Clusterer
fitted on the detached features), the remaining ``max_epochs - ac_epochs`` are stage 2 (DLAN
initialised from the clusterer's centres and ``M``, all four losses). The optimiser and its cosine
schedule are rebuilt at the switch. The stage is stored in the checkpoint, so ``--ckpt_path`` resumes
in either stage. A run with ``max_epochs <= ac_epochs`` (or a ``max_steps`` budget too short for
the split) shortens both stages in the paper's proportion 10 : 80, switching inside an epoch where
needed (:mod:`anomalib_vadproto.components.stages`).

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_vadproto import DlanAc, LocalUCSDped
    >>> datamodule = LocalUCSDped(root="...", clip_length_in_frames=5, frames_between_clips=1)  # doctest: +SKIP
    >>> engine = Engine(max_epochs=90)  # 10 AC epochs + 80 DLAN epochs (Ped2)
    >>> engine.fit(DlanAc(ac_epochs=10), datamodule=datamodule)  # doctest: +SKIP

"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import Tensor, nn

from anomalib_vadproto.components import distributed
from anomalib_vadproto.components.lightning import VideoModelMixin, seed_if_given
from anomalib_vadproto.components.losses import (
    GRADIENT_BORDERS,
    compactness_loss,
    gradient_loss,
    intensity_loss,
    separateness_loss,
)
from anomalib_vadproto.components.prototypes import rank_per_sample
from anomalib_vadproto.components.stages import TwoStageMixin
from anomalib_vadproto.errors import check_choice

from .torch_model import DlanAcModel, DlanAcTrainOutput

logger = logging.getLogger(__name__)

STAGE2_INITS = ("continue", "fresh")


def prototype_losses(out: DlanAcTrainOutput, margin: float) -> tuple[Tensor, Tensor]:
    """Compactness and separateness losses against each sample's own prototypes, not detached."""
    queries, items, ranked = rank_per_sample(out.features.flatten(2).transpose(1, 2), out.prototypes, out.scores)
    compact = compactness_loss(queries, items, ranked[:, 0], detach_items=False)
    if ranked.shape[1] < 2:  # a single prototype has no second nearest: nothing to separate
        return compact, compact.new_zeros(())
    return compact, separateness_loss(queries, items, ranked[:, 0], ranked[:, 1], margin, detach_items=False)


def training_outputs(
    model: DlanAcModel, clip: Tensor, weights: dict[str, float], margin: float, gradient_border: str
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Compute the pure tensor part of a training step (compiled with ``compile``): losses, stage 1's features.

    Args:
        model: The torch model, in training mode (its stage decides the losses).
        clip: ``(B, T, C, H, W)`` pre-processed clips.
        weights: Loss name -> weight (``int``, ``grad``, ``compact``, ``separate``).
        margin: Triplet margin of the separateness loss.
        gradient_border: Border of the gradient loss.

    Returns:
        ``(loss, losses, features)``: intensity and gradient losses in stage 1, with the detached encoder
        features the Adaptive Clusterer is fitted on afterwards (outside this function); all four losses
        and no features (``None``) in stage 2.

    """
    out = model(clip)
    losses = {
        "int": intensity_loss(out.prediction, out.target),
        "grad": gradient_loss(out.prediction, out.target, border=gradient_border),
    }
    features = None
    if out.prototypes is not None:
        losses["compact"], losses["separate"] = prototype_losses(out, margin)
    else:
        features = out.features.detach()
    loss = sum(weights[name] * value for name, value in losses.items())
    return loss, losses, features


class DlanAc(TwoStageMixin, VideoModelMixin, AnomalibModule):
    """DLAN-AC: dynamic local aggregation of encoder features into prototypes, sized by a SOM.

    Args:
        num_input_frames: Past frames the model reads (paper: 4, so clips of 5).
        image_size: Frame size after the pre-processor (paper: 256x256).
        grayscale: Convert frames to one grey channel (lite profiles).
        width: Base channel width (paper: 64; feature dimension ``8 * width`` = 512).
        num_clusters: ``L``, SOM neurons = NetVLAD clusters (paper: 25, a 5x5 grid).
        alpha: NetVLAD ``α`` (not in the paper; 100, the usual value for unit-norm features).
        normalize_features: L2-normalise the encoder features (recommended reading).
        ac_epochs: Stage-1 epochs (paper: 10 Ped2/Avenue, 5 ShanghaiTech); stage 2 runs for the rest
            of ``--trainer.max_epochs`` (paper: 80/80/20, so ``max_epochs`` 90/90/25). A shorter run
            splits its batches 10 : 80 between the stages.
        som_sigma: SOM ``δ`` (paper: 0.5; the released script's default 0.3).
        som_learning_rate: SOM ``η`` (paper: 0.5).
        som_iterations: SOM iterations ``k`` per feature map (paper: 5000).
        som_neighbourhood: ``"gaussian"`` (MiniSom's untruncated form, the released script; default) or
            ``"truncated"`` (paper eq. 2 literally: winner-only at ``δ = 0.5``, so neurons can stay dead).
        som_maps_per_batch: Feature maps of each training batch given to the SOM; ``None`` gives it
            every map (paper). A smaller number subsamples maps, never iterations: each map runs ``k`` steps.
        centre_order: "The first M" clusters: ``"wins"`` (most winning SOM neurons first, so every kept
            cluster is live; default) or ``"flat"`` (SOM grid order; warns if a kept neuron never won).
        m_rounding: ``"truncate"`` (released code) or ``"round"`` the mean number of winners into ``M``.
        som_backend: ``"auto"`` (the fused Triton SOM kernel on CUDA, the host NumPy loop otherwise),
            ``"host"`` or ``"triton"``.
        stage2_init: ``"continue"`` (default) keeps the stage-1 autoencoder for stage 2;
            ``"fresh"`` re-initialises it, as the released script does (only ``M`` and the centres carry over).
        use_dlan: ``False`` trains the autoencoder alone for the whole run (the stage-1 network with its
            intensity and gradient losses, no clusterer, no DLAN): the paper's baseline for its ablation.
        lambda_intensity: Weight of the intensity (MSE) loss (paper: 1).
        lambda_gradient: Weight of the gradient loss (paper: 1; the released stage-2 loop drops it).
        lambda_compact: Weight of the compactness loss in stage 2 (paper: 0.01).
        lambda_separate: Weight of the separateness loss in stage 2 (paper: 0.01).
        margin: Triplet margin ``γ`` of the separateness loss (paper: 1).
        gradient_border: ``"pad"`` (DLAN-AC's code) or ``"zero"`` border of the gradient loss.
        lr: Adam learning rate of both stages (paper: 2e-4; the released code 1e-4).
        seed: Seed for a reproducible run (also seeds the SOM's initialisation).
        compile: ``torch.compile`` the training step's forward and losses (the clusterer stays eager, outside
            the compiled function) and the scoring (see the README's *Fast training on a GPU*).
        compile_mode: ``None`` (automatic) or a ``torch.compile`` mode (``"reduce-overhead"``: CUDA graphs).
        channels_last: Channels-last weights on CUDA too (they always are on a CPU).
        log_step_losses: Log the training losses at every step instead of as epoch means.
        pre_processor: ``True`` builds resize (+ grey) + ``[-1, 1]`` scaling at ``image_size``.
        post_processor: anomalib post-processor or ``True`` for the default.
        evaluator: anomalib evaluator or ``True`` for the default (with a binned pixel AUROC).
        visualizer: visualizer or ``True`` for the video-aware default.

    """

    architecture_hparams = ("num_input_frames", "image_size", "grayscale", "width", "num_clusters")
    size_multiple = 8  # three 2x2 max-poolings in the U-Net encoder
    first_stage_argument = "ac_epochs"
    stage_keys = ("ac", "dlan")
    stage_names = ("Adaptive-Clusterer", "DLAN")
    paper_stage_epochs = (10, 80)
    timing_checkpoint_key = "dlan_ac_timing"
    ddp_find_unused_parameters = True  # DLAN takes no part in the stage-1 losses (nor ever with use_dlan=False)
    # INT8_PTQ quantises every layer: at depth 0 the INT8 frame PSNR already ranks training clips like FP32
    # (Spearman >= 0.99), so no layer needs to stay FP32: python -m research.int8_scope --model dlan_ac
    # (the model README has the sweep).
    int8_fp32_depth = 0

    def __init__(
        self,
        num_input_frames: int = 4,
        image_size: Sequence[int] | int = (256, 256),
        grayscale: bool = False,
        width: int = 64,
        num_clusters: int = 25,
        alpha: float = 100.0,
        normalize_features: bool = True,
        ac_epochs: int = 10,
        som_sigma: float = 0.5,
        som_learning_rate: float = 0.5,
        som_iterations: int = 5000,
        som_neighbourhood: str = "gaussian",
        som_maps_per_batch: int | None = None,
        centre_order: str = "wins",
        m_rounding: str = "truncate",
        som_backend: str = "auto",
        stage2_init: str = "continue",
        use_dlan: bool = True,
        lambda_intensity: float = 1.0,
        lambda_gradient: float = 1.0,
        lambda_compact: float = 0.01,
        lambda_separate: float = 0.01,
        margin: float = 1.0,
        gradient_border: str = "pad",
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
        if ac_epochs < 1:
            msg = f"ac_epochs must be at least 1 (stage 1 finds M and the centres), got {ac_epochs}"
            raise ValueError(msg)
        if som_maps_per_batch is not None and som_maps_per_batch < 1:
            msg = f"som_maps_per_batch must be None (all maps) or at least 1, got {som_maps_per_batch}"
            raise ValueError(msg)
        check_choice("stage2_init", stage2_init, STAGE2_INITS)
        check_choice("gradient_border", gradient_border, GRADIENT_BORDERS)
        super().__init__(image_size, grayscale, pre_processor, post_processor, evaluator, visualizer)
        self.lr = lr
        self.ac_epochs = ac_epochs
        self.som_maps_per_batch = som_maps_per_batch
        self.stage2_init = stage2_init
        self.use_dlan = use_dlan
        self.loss_weights = {
            "int": lambda_intensity,
            "grad": lambda_gradient,
            "compact": lambda_compact,
            "separate": lambda_separate,
        }
        self.margin = margin
        self.gradient_border = gradient_border
        self.model = DlanAcModel(
            num_input_frames=num_input_frames,
            in_channels=1 if grayscale else 3,
            width=width,
            num_clusters=num_clusters,
            alpha=alpha,
            normalize_features=normalize_features,
            som_sigma=som_sigma,
            som_learning_rate=som_learning_rate,
            som_iterations=som_iterations,
            som_neighbourhood=som_neighbourhood,
            centre_order=centre_order,
            m_rounding=m_rounding,
            som_backend=som_backend,
            seed=0 if seed is None else seed,
        )
        self.setup_fast_training(compile, compile_mode, channels_last, log_step_losses)
        self.clip_length = self.model.clip_length
        self.init_stage_timing("som_seconds")  # per stage and of the SOM (stage 1), carried in checkpoints
        self.setup_protocol({"psnr": 1.0}, normal_cues=("psnr",))

    # ------------------------------------------------------------------ stages and optimisers
    @property
    def in_second_stage(self) -> bool:
        """Whether DLAN is active (stage 2)."""
        return self.model.in_dlan_stage

    @property
    def uses_two_stages(self) -> bool:
        """``use_dlan=False`` trains the stage-1 autoencoder for the whole run."""
        return self.use_dlan

    def schedule_epochs(self) -> int:
        """Each stage has its own cosine schedule: ``ac_epochs``, then ``max_epochs - ac_epochs``."""
        if not self.use_dlan:
            return self.max_epochs()
        return self.stage_schedule_epochs(second_stage=self.model.in_dlan_stage)

    def trainable_parameters(self):  # noqa: ANN201
        """Stage 1: encoder and decoder (released script). Stage 2: everything, DLAN included."""
        return self.model.parameters() if self.model.in_dlan_stage else self.model.autoencoder_parameters()

    def on_train_epoch_start(self) -> None:
        """Start an AC statistics epoch in stage 1; switch to stage 2 when the epoch starts it."""
        super().on_train_epoch_start()  # the stage clock
        if self.model.in_dlan_stage:
            return
        if self.in_first_stage(0):
            self.model.clusterer.reset_statistics()
        else:
            self._start_stage2(mid_epoch=False)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:  # noqa: ANN401
        """Switch to stage 2 inside an epoch (a shortened run)."""
        del batch
        if not self.model.in_dlan_stage and not self.in_first_stage(batch_idx):
            self._start_stage2()

    def on_train_end(self) -> None:
        """Switch to stage 2 if a shortened single-batch run ended in stage 1, so the model can be tested."""
        if not self.model.in_dlan_stage and self.stage_plan is not None and self.stage_plan.shortened:
            self._start_stage2(rebuild_optimiser=False)

    def _start_stage2(self, rebuild_optimiser: bool = True, mid_epoch: bool = True) -> None:
        if mid_epoch:  # the epoch's time so far was stage 1's
            self.charge_stage_time()
        m = self.model.start_dlan_stage(reinitialise_autoencoder=self.stage2_init == "fresh")
        # DDP: rank 0's weights everywhere (stage2_init="fresh" draws new ones on each rank; DLAN's initialisation
        # from the clusterer is already the same on every rank).
        distributed.broadcast_module_(self.model)
        if rebuild_optimiser:
            self.trainer.strategy.setup_optimizers(self.trainer)  # new optimiser and schedule for stage 2
        logger.info(
            "DLAN-AC stage 2 from epoch %d: M = %d kept clusters of L = %d (mean winners per map %.2f).",
            self.current_epoch,
            m,
            self.model.dlan.num_clusters,
            self.model.clusterer.mean_z,
        )

    def on_train_epoch_end(self) -> None:
        """Log ``M`` and the stage times (stage 1: also the SOM's share)."""
        super().on_train_epoch_end()  # the epoch's time, to its stage
        values = {"num_prototypes": float(self.model.num_prototypes)}
        if not self.model.in_dlan_stage:
            values["ac_mean_winners"] = self.model.clusterer.mean_z
            values["som_seconds"] = self.timing["som_seconds"]
        self.log_dict(values, prog_bar=True, sync_dist=distributed.is_distributed())  # DDP: mean over the ranks

    def run_summary(self) -> dict[str, Any]:
        """Report the two stages for benchmarks: ``M``, the stage, stage times and the SOM's share of stage 1."""
        ac = self.timing["ac_seconds"]
        return {
            "num_prototypes_m": self.model.num_prototypes,
            "num_clusters_l": self.model.dlan.num_clusters,
            "ac_mean_winners": round(self.model.clusterer.mean_z, 3),
            "use_dlan": self.use_dlan,
            **self.stage_summary(),  # stage ("ac" or "dlan"), ac_seconds, dlan_seconds, som_seconds
            "som_share_of_ac_stage": round(self.timing["som_seconds"] / ac, 4) if ac > 0 else None,
        }

    # ------------------------------------------------------------------ training
    def _fit_clusterer(self, features: Tensor) -> None:
        start = time.perf_counter()
        maps = features.detach() if self.som_maps_per_batch is None else features.detach()[: self.som_maps_per_batch]
        if distributed.is_distributed():
            self._fit_clusterer_across_ranks(maps)
        else:
            self.model.clusterer.fit_batch(maps)
        if features.is_cuda:
            torch.cuda.synchronize(features.device)
        self.timing["som_seconds"] += time.perf_counter() - start

    def _fit_clusterer_across_ranks(self, maps: Tensor) -> None:
        """DDP: fit the clusterer once, on rank 0, with the maps of every rank; then every rank takes its state.

        The SOM sees the maps of the global batch in rank order (the first ``som_maps_per_batch`` of them), as
        one process would see the whole batch; its weights, statistics and ``M`` are then broadcast, so every
        rank switches to stage 2 with the same centres and ``M``.
        """
        maps = distributed.all_gather_cat(maps)
        if self.som_maps_per_batch is not None:
            maps = maps[: self.som_maps_per_batch]
        clusterer = self.model.clusterer
        if distributed.rank() == 0:
            clusterer.fit_batch(maps)
        distributed.broadcast_tensors_(clusterer.buffers())

    def training_step(self, batch, batch_idx: int, *args, **kwargs):  # noqa: ANN001, ANN201
        """Intensity + gradient losses (stage 1, plus the SOM) or all four losses (stage 2)."""
        del batch_idx, args, kwargs
        clip = batch.image
        step = self.step_function(training_outputs, clip)
        loss, losses, features = step(self.model, clip, self.loss_weights, self.margin, self.gradient_border)
        if features is not None and self.use_dlan:  # stage 1: the clusterer, eagerly, on the detached features
            self._fit_clusterer(features)
        self.log_losses({"loss": loss, **losses}, batch_size=clip.shape[0])
        return loss
