"""CDDA as an anomalib video model: ``anomalib train --model Cdda``.

Chang, Tu, Xie, Yuan, *Clustering Driven Deep Autoencoder for Video Anomaly Detection*, ECCV 2020.

The whole schedule of the paper runs inside one ``fit`` (one ``anomalib train``):

1. **AE pre-training** for ``ae_epochs`` epochs: both autoencoders with ``L_a + L_m`` (MSE), Adam at ``lr``.
   During the last pre-training epoch a random subset of the clustering features (normalised exactly
   as in training) is gathered.
2. **Centre initialisation** at the end of the last pre-training batch (before that epoch's
   validation and checkpoint): scikit-learn k-means++ per clustering on the gathered features; the
   optimisers are rebuilt.
3. **Alternating optimisation** for the rest of ``--trainer.max_epochs``, every iteration: (i) the
   centres are frozen and the autoencoders take a step on ``L_a + L_m + λ_r·L_cluster`` (eq. 13);
   (ii) the autoencoders are frozen and the centres take a step on ``L_cluster`` (eq. 12) at
   ``centre_lr``. The AE learning rate drops by ``lr_drop_factor`` at stage-3 epoch ``lr_drop_epoch``.

Two optimisers with Lightning's manual optimisation; the stage is a buffer of the torch model and the
learning rate a function of the epoch, so ``--ckpt_path`` resumes correctly in either stage. A run with
``max_epochs <= ae_epochs`` (or a ``max_steps`` budget too short for the split) shortens both stages in
the paper's proportion 50 : 100, the features for k-means gathered over the last epoch's worth of
pre-training batches and the switch inside an epoch where needed
(:mod:`anomalib_vadproto.components.stages`).

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_vadproto import Cdda, LocalUCSDped
    >>> datamodule = LocalUCSDped(root="...", clip_length_in_frames=5, frames_between_clips=1)  # doctest: +SKIP
    >>> engine = Engine(max_epochs=150)  # 50 pre-training + 100 alternating epochs (Ped2)
    >>> engine.fit(Cdda(ae_epochs=50), datamodule=datamodule)  # doctest: +SKIP

"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import Tensor, nn

from anomalib_vadproto.components import distributed
from anomalib_vadproto.components.clip import check_at_least
from anomalib_vadproto.components.fast import adam_kwargs
from anomalib_vadproto.components.lightning import VideoModelMixin, as_size, seed_if_given
from anomalib_vadproto.components.stages import TwoStageMixin
from anomalib_vadproto.errors import check_choice

from .clustering import fit_kmeans
from .torch_model import SIZE_MULTIPLE, CddaModel, CddaOutput

logger = logging.getLogger(__name__)

CLUSTER_REDUCTIONS = ("mean", "sum")
CENTRE_STEPS = ("centres", "centres_and_projection")
#: Which codes k-means sees: the training step's (batch norm in training mode) or the clips encoded in eval mode.
KMEANS_CODES = ("train", "eval")


def cluster_loss(
    model: CddaModel, features: dict[str, Tensor], reduction: str, lambda_redundancy: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """``L_cluster`` (eq. 12): soft-assigned distances of every clustering + ``λ · Σ ‖CCᵀ − I‖_F``.

    Args:
        model: The torch model (its centres).
        features: Clustering name -> ``(B, D, h, w)`` L2-normalised features.
        reduction: ``"mean"`` over locations and batch, or ``"sum"`` over a clip's locations, mean over the batch.
        lambda_redundancy: ``λ`` of the redundancy term.

    Returns:
        ``(L_cluster, parts)``: ``distance``, ``redundancy`` and the detached per-location mean distance of
        each clustering (``distance_<name>``, the score's ``D``).

    """
    maps = model.distance_maps(features)
    means = {name: m.mean() for name, m in maps.items()}  # per location: the score's D, logged per clustering
    if reduction == "mean":
        distance = sum(means.values())
    else:
        distance = sum(m.flatten(1).sum(dim=1).mean() for m in maps.values())
    redundancy = sum(clusters.redundancy() for clusters in model.clusters.values())
    parts = {"distance": distance, "redundancy": redundancy}
    parts.update({f"distance_{name}": mean.detach() for name, mean in means.items()})
    return distance + lambda_redundancy * redundancy, parts


def autoencoder_outputs(
    model: CddaModel, clip: Tensor, cluster_term: bool, lambda_cluster: float, reduction: str, lambda_redundancy: float
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor], tuple[Tensor, Tensor]]:
    """Compute the pure tensor part of the AE step (compiled with ``compile``): its loss and what follows it.

    Args:
        model: The torch model, in training mode.
        clip: ``(B, T, C, H, W)`` pre-processed clips.
        cluster_term: Add ``λ_r·L_cluster`` (eq. 13: the alternating stage with ``cluster_in_ae_step``).
        lambda_cluster: ``λ_r``.
        reduction: ``cluster_reduction``.
        lambda_redundancy: ``λ`` of the redundancy term.

    Returns:
        ``(loss, losses, features, pre_projection)``: the AE loss, its terms (``appearance``, ``motion``
        and with ``cluster_term`` ``ae_cluster``), and the detached clustering features (k-means samples)
        and projection inputs (the centre step).

    """
    out = model(clip)
    losses = Cdda.reconstruction_losses(out)
    loss = losses["appearance"] + losses["motion"]
    if cluster_term:
        cluster, _ = cluster_loss(model, out.features, reduction, lambda_redundancy)
        loss = loss + lambda_cluster * cluster
        losses["ae_cluster"] = cluster
    features = {name: value.detach() for name, value in out.features.items()}
    pre = (out.pre_projection[0].detach(), out.pre_projection[1].detach())
    return loss, losses, features, pre


def centre_outputs(
    model: CddaModel, pre_appearance: Tensor, pre_motion: Tensor, reduction: str, lambda_redundancy: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Compute the pure tensor part of the centre step (compiled with ``compile``): ``L_cluster``.

    The clustering features are recomputed from the AE step's cached projection inputs (:func:`cluster_loss`).
    """
    features = model.features_from_projection_inputs(pre_appearance, pre_motion)
    return cluster_loss(model, features, reduction, lambda_redundancy)


@contextmanager
def frozen(parameters: Iterable[nn.Parameter]) -> Iterator[None]:
    """Set ``requires_grad=False`` on ``parameters`` inside the block (restored on exit)."""
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Cdda(TwoStageMixin, VideoModelMixin, AnomalibModule):
    """CDDA: spatial and motion (RGB-difference) autoencoders driven by deep k-means.

    Args:
        num_input_frames: Frames the motion AE reads (paper: 4, so clips of 5; the last is the LIF).
        image_size: Frame size after the pre-processor, multiples of 16 (paper: 256x256).
        grayscale: Convert frames to one grey channel (lite profiles).
        width: Channels of the first convolution (paper/STD: 32; cluster features ``8 * width`` = 256).
        num_clusters: ``K`` centres per clustering (paper: 32 motion + 32 appearance).
        alpha: Soft-assignment sharpness ``α`` on L2-normalised features (not in the paper; STD: 25).
        clustering: ``"separate"`` motion and appearance centres (paper) or ``"joint"`` (STD code).
        cluster_distance: ``"squared"`` soft-assigned squared distance (paper eq. 10) or ``"euclidean"``
            (STD code: soft-assigned distance averaged over clusters).
        attention: Variance attention ``"code"`` (STD, recommended) or ``"paper"`` (eqs. 7-9).
        spatial_init: ``"default"`` (PyTorch's initialisation; the paper names none) or ``"kaiming"``
            (Kaiming-normal convolutions in the spatial encoder only, which keeps more of the appearance
            code's ReLU channels alive; see the model README).
        spatial_decoder_input: What the spatial decoder reads: ``"normalised"`` (the L1-normalised code
            ``z_a`` that the clustering sees) or ``"raw"`` (the code before the normalisation, which keeps
            each location's magnitude; the clustering still sees ``z_a``). The paper does not say.
        ae_epochs: Stage-1 (AE pre-training) epochs (paper: 50 Ped2, 100 Avenue/ShanghaiTech); the
            alternating stage runs for the rest of ``--trainer.max_epochs`` (paper: 100 / 200).
        kmeans_samples: Feature vectors per clustering gathered for k-means in the last pre-training epoch.
        kmeans_max_iter: Bound on k-means iterations per initialisation.
        kmeans_restarts: k-means++ initialisations per clustering; the lowest-inertia one is kept (the
            paper does not say; 10 is scikit-learn's classic default and makes the centres depend less on
            one random seeding). Both lite clusterings of 50k vectors take about 10 s with 10, under 2 s with 1
            (``kmeans_seconds`` in the results of ``python -m benchmarks.ped2_accuracy --model cdda``).
        kmeans_codes: Which codes k-means sees in the last pre-training epoch: ``"train"`` (the training
            step's, batch norm in training mode, as the STD code) or ``"eval"`` (the same clips encoded again
            in evaluation mode, as the score sees them). Either way the run records how far apart the two
            are (``kmeans.<name>.train_eval_cosine``: their mean cosine similarity).
        lambda_cluster: ``λ_r`` of ``L_cluster`` in the AE step (not in the paper; STD factor 0.1).
        lambda_redundancy: ``λ`` of the redundancy ``‖CCᵀ − I‖_F`` in ``L_cluster`` (our 0.01; STD: 0).
        cluster_reduction: ``"mean"`` over locations and batch (default, scale-free across frame sizes) or
            ``"sum"`` over the locations of a clip, mean over the batch (paper eq. 12 literally).
        cluster_in_ae_step: Include ``λ_r·L_cluster`` in the AE step (paper eq. 13); ``False`` is the STD code.
        centre_step: ``"centres"`` (paper) or ``"centres_and_projection"`` (STD: the centre step also
            moves the last convolution of each encoder).
        lr: AE learning rate (paper: 1e-4).
        centre_lr: Centre learning rate (paper: 1e-5).
        lr_drop_epoch: Alternating-stage epoch at which the AE learning rate drops (paper: 100; ``None``
            never). Counted from the start of the alternating stage.
        lr_drop_factor: Factor of the drop (paper: 1e-4 → 1e-5, 0.1).
        score: ``"product"`` (paper eq. 14: ``1 / (D_m · D_a · E_rec)``) or ``"pixelwise"`` (STD code:
            ``1 / mean(e ⊙ m)``).
        diagnostic_cues: Also score the diagnostic cues (the product's factors, each autoencoder's error and
            the other score form's regularity; :attr:`CddaModel.diagnostic_cue_names`) with weight 0 in the
            papers' protocol, so each gets its own protocol AUC (``protocol_result.cue_auc()``) while the
            fused score stays ``"regularity"`` alone. Off by default: the exported graph and the deployed
            outputs then carry ``cue_regularity`` only.
        seed: Seed for a reproducible run (also the k-means seed).
        compile: ``torch.compile`` the AE step's forward and losses, the centre step's loss and the scoring;
            k-means, the freezing and both optimisers stay eager (see the README's *Fast training on a GPU*).
        compile_mode: ``None`` (automatic) or a ``torch.compile`` mode without CUDA graphs (the alternation
            changes which parameters require gradients between the compiled calls).
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
        "num_clusters",
        "clustering",
        "spatial_decoder_input",
    )
    size_multiple = SIZE_MULTIPLE  # 16: three stride-2 stages, and the first attention pools by 8
    first_stage_argument = "ae_epochs"
    stage_keys = ("pretrain", "alternating")
    stage_names = ("autoencoder pre-training", "alternating optimisation")
    paper_stage_epochs = (50, 100)
    steps_per_batch = (1.0, 2.0)  # the alternating stage steps both optimisers every batch
    timing_checkpoint_key = "cdda_timing"
    cuda_graph_training = False  # the two steps' compiled calls see different parameters frozen
    ddp_find_unused_parameters = True  # each of the two steps leaves the other's parameters out of its loss
    # INT8_PTQ: the first 4 quantisable layers back from every output stay FP32 (43 of the lite network's
    # 47): the smallest depth at which the score ranks training clips like FP32 (Spearman >= 0.99;
    # python -m research.int8_scope --model cdda). The score multiplies two cluster distances by the
    # reconstruction error, so INT8 rounding anywhere near the codes reorders frames; with so little left
    # in INT8 the export is no faster than FP32 on CPU (the model README has the sweep).
    int8_fp32_depth = 4

    def __init__(
        self,
        num_input_frames: int = 4,
        image_size: Sequence[int] | int = (256, 256),
        grayscale: bool = False,
        width: int = 32,
        num_clusters: int = 32,
        alpha: float = 25.0,
        clustering: str = "separate",
        cluster_distance: str = "squared",
        attention: str = "code",
        spatial_init: str = "default",
        spatial_decoder_input: str = "normalised",
        ae_epochs: int = 50,
        kmeans_samples: int = 200_000,
        kmeans_max_iter: int = 100,
        kmeans_restarts: int = 10,
        kmeans_codes: str = "train",
        lambda_cluster: float = 0.1,
        lambda_redundancy: float = 0.01,
        cluster_reduction: str = "mean",
        cluster_in_ae_step: bool = True,
        centre_step: str = "centres",
        lr: float = 1e-4,
        centre_lr: float = 1e-5,
        lr_drop_epoch: int | None = 100,
        lr_drop_factor: float = 0.1,
        score: str = "product",
        diagnostic_cues: bool = False,
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
        self._check_arguments(
            image_size,
            ae_epochs,
            num_clusters,
            kmeans_samples,
            kmeans_max_iter,
            kmeans_restarts,
            cluster_reduction,
            centre_step,
        )
        for name, value in (("lambda_cluster", lambda_cluster), ("lambda_redundancy", lambda_redundancy)):
            if value < 0:
                msg = f"{name} must be non-negative, got {value}"
                raise ValueError(msg)
        for name, value in (("lr", lr), ("centre_lr", centre_lr), ("lr_drop_factor", lr_drop_factor)):
            if not value > 0:
                msg = f"{name} must be positive, got {value}"
                raise ValueError(msg)
        if lr_drop_epoch is not None and lr_drop_epoch < 0:
            msg = f"lr_drop_epoch must be None or non-negative, got {lr_drop_epoch}"
            raise ValueError(msg)
        super().__init__(image_size, grayscale, pre_processor, post_processor, evaluator, visualizer)
        self.automatic_optimization = False  # two optimisers, alternated every iteration
        self.lr = lr
        self.centre_lr = centre_lr
        self.lr_drop_epoch = lr_drop_epoch
        self.lr_drop_factor = lr_drop_factor
        self.ae_epochs = ae_epochs
        self.kmeans_samples = kmeans_samples
        self.kmeans_max_iter = kmeans_max_iter
        self.kmeans_restarts = kmeans_restarts
        self.kmeans_codes = check_choice("kmeans_codes", kmeans_codes, KMEANS_CODES)
        self.lambda_cluster = lambda_cluster
        self.lambda_redundancy = lambda_redundancy
        self.cluster_reduction = cluster_reduction
        self.cluster_in_ae_step = cluster_in_ae_step
        self.centre_step = centre_step
        self.seed = seed
        self.model = CddaModel(
            num_input_frames=num_input_frames,
            in_channels=1 if grayscale else 3,
            width=width,
            num_clusters=num_clusters,
            alpha=alpha,
            clustering=clustering,
            cluster_distance=cluster_distance,
            attention=attention,
            spatial_init=spatial_init,
            spatial_decoder_input=spatial_decoder_input,
            score=score,
            diagnostic_cues=diagnostic_cues,
        )
        self.setup_fast_training(compile, compile_mode, channels_last, log_step_losses)
        self.clip_length = self.model.clip_length
        self.init_stage_timing("kmeans_seconds")  # per stage and of k-means, carried in checkpoints
        #: The k-means result per clustering (samples, inertia, active dimensions); carried in checkpoints.
        self.kmeans_info: dict[str, dict[str, float]] = {}
        #: Per clustering, the mean soft-assigned distance (eq. 10, per location) of each alternating epoch's
        #: centre steps: how close the codes sit to their centres as training goes on. Carried in checkpoints.
        self.distance_history: dict[str, list[float]] = {}
        self._epoch_distance: dict[str, list[Tensor]] = {}
        self._samples: dict[str, list[Tensor]] = {}
        self._code_agreement: dict[str, list[Tensor]] = {}  # train/eval code cosines of the gather window
        # The diagnostic cues ride along with weight 0: they leave the fused score unchanged and give each
        # their own protocol AUC (``ProtocolResult.cue_auc``).
        normal_cues = ("regularity", self.model.variant_cue) if diagnostic_cues else ("regularity",)
        self.setup_protocol({name: float(name == "regularity") for name in self.model.cue_names}, normal_cues)

    @staticmethod
    def _check_arguments(
        image_size: Sequence[int] | int,
        ae_epochs: int,
        num_clusters: int,
        kmeans_samples: int,
        kmeans_max_iter: int,
        kmeans_restarts: int,
        cluster_reduction: str,
        centre_step: str,
    ) -> None:
        as_size(image_size, SIZE_MULTIPLE, "Cdda")  # the shared check, before the other arguments' (as before)
        check_at_least("ae_epochs (pre-training gathers the features for k-means)", ae_epochs)
        check_at_least("num_clusters", num_clusters)
        check_at_least("kmeans_samples (at least num_clusters)", kmeans_samples, num_clusters)
        check_at_least("kmeans_max_iter", kmeans_max_iter)
        check_at_least("kmeans_restarts", kmeans_restarts)
        check_choice("cluster_reduction", cluster_reduction, CLUSTER_REDUCTIONS)
        check_choice("centre_step", centre_step, CENTRE_STEPS)

    # ------------------------------------------------------------------ optimisers and stages
    @property
    def in_second_stage(self) -> bool:
        """Whether the centres exist (the alternating stage)."""
        return self.model.alternating

    def centre_step_parameters(self) -> list[nn.Parameter]:
        """Parameters of the centre step: the centres (+ the encoders' last convolutions, STD form)."""
        params = self.model.centre_parameters()
        if self.centre_step == "centres_and_projection":
            params += self.model.projection_parameters()
        return params

    def configure_optimizers(self):  # noqa: ANN201
        """Two Adam optimisers (fused on CUDA): the autoencoders (``lr``) and the centre step (``centre_lr``)."""
        ae_parameters, centre_parameters = self.model.autoencoder_parameters(), self.centre_step_parameters()
        autoencoders = torch.optim.Adam(ae_parameters, lr=self.lr, betas=(0.9, 0.999), **adam_kwargs(ae_parameters))
        centres = torch.optim.Adam(
            centre_parameters, lr=self.centre_lr, betas=(0.9, 0.999), **adam_kwargs(centre_parameters)
        )
        return [autoencoders, centres]

    def autoencoder_lr(self, epoch: int) -> float:
        """AE learning rate of ``epoch``: ``lr``, times ``lr_drop_factor`` from alternating epoch ``lr_drop_epoch``."""
        stage3_epoch = epoch - self.second_stage_start_epoch()
        if self.lr_drop_epoch is not None and stage3_epoch >= self.lr_drop_epoch:
            return self.lr * self.lr_drop_factor
        return self.lr

    def gather_window(self) -> tuple[int, int] | None:
        """Training batches ``[start, end)`` (from the start of ``fit``) whose features k-means sees.

        The last epoch's worth of pre-training batches (the whole last pre-training epoch, unless a
        shortened run switches inside an epoch); ``None`` without a plan (unknown batches per epoch).
        """
        if self.stage_plan is None:
            return None
        end = self.stage_plan.switch_batch
        return end - min(self.stage_plan.batches_per_epoch, end), end

    def on_train_epoch_start(self) -> None:
        """Start gathering k-means features in the last pre-training epoch; set the AE learning rate."""
        if not self.model.alternating:
            if not self.in_first_stage(0):
                # Resumed at or after the switch without it, or the last-batch switch did not run (an unknown
                # number of batches per epoch).
                self.start_alternating()
            elif self.gather_window() is None and self.current_epoch == self.ae_epochs - 1:
                self._samples = {name: [] for name in self.model.clusters}
        autoencoders = self.optimizers()[0]
        for group in autoencoders.param_groups:
            group["lr"] = self.autoencoder_lr(self.current_epoch)
        super().on_train_epoch_start()  # the stage clock, after any k-means (timed on its own)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:  # noqa: ANN401
        """Start gathering k-means features at the first batch of the gathering window."""
        del batch
        window = self.gather_window()
        if window is not None and not self.model.alternating and self.fit_batch(batch_idx) == window[0]:
            self._samples = {name: [] for name in self.model.clusters}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:  # noqa: ANN401
        """Initialise the centres after the last pre-training batch (before that epoch's validation/checkpoint)."""
        del outputs, batch
        if not self.model.alternating and self.first_stage_ends_after(batch_idx):
            self.charge_stage_time()
            self.start_alternating()
            self.start_stage_clock()  # k-means is timed on its own

    def start_alternating(self) -> None:
        """Run k-means on the gathered features, initialise the centres and rebuild the optimisers.

        Raises:
            RuntimeError: If no features were gathered (a run resumed inside the last pre-training epoch
                from a mid-epoch checkpoint).

        """
        if not self._samples or any(not chunks for chunks in self._samples.values()):
            msg = (
                "No features were gathered for the k-means initialisation of the centres: they are collected"
                f" during the last pre-training epoch (epoch {self.ae_epochs - 1}). Resume from a checkpoint of an"
                " earlier epoch, or train from scratch."
            )
            raise RuntimeError(msg)
        start = time.perf_counter()
        # Gathered on the model's device (see _gather); under DDP from every rank, in rank order.
        samples = {name: distributed.all_gather_cat(torch.cat(chunks)).cpu() for name, chunks in self._samples.items()}
        # Under DDP k-means runs once, on rank 0, and every rank takes its centres: the same on every rank.
        centres, info = distributed.on_rank_zero(lambda: self._fit_centres(samples))
        for name, cosines in self._code_agreement.items():
            if name in info and cosines:
                mean = distributed.mean_over_ranks(torch.stack(cosines).mean())
                info[name]["train_eval_cosine"] = float(f"{float(mean):.4g}")
        self._code_agreement = {}
        self.kmeans_info.update(info)
        self.model.initialise_centres({name: value.to(self.device) for name, value in centres.items()})
        self._samples = {}
        self.timing["kmeans_seconds"] += time.perf_counter() - start
        if self._trainer is not None:
            self.trainer.strategy.setup_optimizers(self.trainer)  # fresh Adam states for the alternating stage
        logger.info(
            "CDDA: centres initialised by k-means at the end of epoch %d (%s) in %.1f s; alternating from now on.",
            self.current_epoch,
            ", ".join(f"{n}: {i['samples']} vectors, inertia {i['inertia']:.4g}" for n, i in self.kmeans_info.items()),
            time.perf_counter() - start,
        )

    def _fit_centres(self, samples: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, dict[str, float]]]:
        """k-means on each clustering's gathered vectors (subsampled to ``kmeans_samples``): centres and their info."""
        generator = torch.Generator().manual_seed(0 if self.seed is None else int(self.seed))
        centres, info = {}, {}
        for name, vectors in samples.items():
            if vectors.shape[0] > self.kmeans_samples:
                vectors = vectors[torch.randperm(vectors.shape[0], generator=generator)[: self.kmeans_samples]]
            centres[name], inertia = fit_kmeans(
                vectors,
                self.model.clusters[name].num_clusters,
                self.kmeans_max_iter,
                seed=0 if self.seed is None else self.seed,
                restarts=self.kmeans_restarts,
            )
            info[name] = {
                "samples": int(vectors.shape[0]),
                "inertia": inertia,
                # Feature dimensions non-zero in at least one vector: dead ReLU channels of the code show here.
                "active_dimensions": int((vectors != 0).any(dim=0).sum()),
            }
        return centres, info

    def on_train_epoch_end(self) -> None:
        """Log the stage and the stage times."""
        super().on_train_epoch_end()  # the epoch's time, to its stage
        for name, values in self._epoch_distance.items():
            if values:
                mean = float(distributed.mean_over_ranks(torch.stack(values).mean()))  # DDP: the global batches'
                self.distance_history.setdefault(name, []).append(float(f"{mean:.4g}"))
        self._epoch_distance = {}
        self.log_dict(
            {
                "stage": float(int(self.model.alternating)),
                "ae_lr": float(self.autoencoder_lr(self.current_epoch)),
                "kmeans_seconds": self.timing["kmeans_seconds"],
            },
            prog_bar=True,
            sync_dist=distributed.is_distributed(),  # DDP: mean over the ranks
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        super().on_save_checkpoint(checkpoint)  # the stage times too
        checkpoint["cdda_kmeans"] = {name: dict(info) for name, info in self.kmeans_info.items()}
        checkpoint["cdda_distance_history"] = {name: list(values) for name, values in self.distance_history.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        super().on_load_checkpoint(checkpoint)  # the stage times too
        self.kmeans_info.update(checkpoint.get("cdda_kmeans", {}))
        self.distance_history.update(checkpoint.get("cdda_distance_history", {}))

    def run_summary(self) -> dict[str, Any]:
        """Report the stages for benchmarks: stage, stage times, k-means time, samples and inertia.

        Also ``distance_history``: per clustering, the mean soft-assigned distance of each alternating
        epoch on the training clips (compare ``kmeans.<name>.inertia / samples`` at the start).
        """
        return {
            **self.stage_summary(),  # stage ("pretrain" or "alternating"), the two stages' and k-means' seconds
            "kmeans": {name: dict(info) for name, info in self.kmeans_info.items()},
            "distance_history": {name: list(values) for name, values in self.distance_history.items()},
        }

    # ------------------------------------------------------------------ losses and steps
    def cluster_loss(self, features: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_cluster`` (eq. 12): soft-assigned distances of every clustering + ``λ · Σ ‖CCᵀ − I‖_F``."""
        return cluster_loss(self.model, features, self.cluster_reduction, self.lambda_redundancy)

    @staticmethod
    def reconstruction_losses(out: CddaOutput) -> dict[str, Tensor]:
        """``L_a`` (eq. 3) and ``L_m`` (eq. 6) as MSE on the ``[0, 1]`` scale."""
        return {
            "appearance": F.mse_loss(out.appearance, out.last_frame),
            "motion": F.mse_loss(out.differences, out.difference_targets),
        }

    def _optimise(self, optimiser: Any, loss: Tensor) -> None:  # noqa: ANN401
        optimiser.zero_grad()
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()
        optimiser.step()

    def optimisation_step(self, clip: Tensor, autoencoders: Any, centres: Any) -> dict[str, Tensor]:  # noqa: ANN401
        """One iteration: the AE step with the centres frozen, then (alternating stage) the centre step.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.
            autoencoders: Optimiser of the autoencoders.
            centres: Optimiser of the centre step.

        Returns:
            The losses to log (detached values are taken by the caller).

        """
        alternating = self.model.alternating
        reduction, lambda_redundancy = self.cluster_reduction, self.lambda_redundancy
        # k-means' gathering epoch: the clip's codes in eval mode too, with the weights the step reads.
        eval_features = self._eval_mode_features(clip) if not alternating and self._samples else None
        with frozen(self.model.centre_parameters()):
            step = self.step_function(autoencoder_outputs, clip)
            cluster_term = alternating and self.cluster_in_ae_step
            loss, losses, features, pre = step(
                self.model, clip, cluster_term, self.lambda_cluster, reduction, lambda_redundancy
            )
            self._optimise(autoencoders, loss)
        losses["loss"] = loss
        if not alternating:
            if eval_features is not None:
                self._gather(self._kmeans_features(features, eval_features))
            return losses
        trainable = {id(p) for p in self.centre_step_parameters()}
        with frozen(p for p in self.model.autoencoder_parameters() if id(p) not in trainable):
            cluster, parts = self.step_function(centre_outputs, clip)(self.model, *pre, reduction, lambda_redundancy)
            self._optimise(centres, cluster)
        for name in self.model.clusters:
            self._epoch_distance.setdefault(name, []).append(parts[f"distance_{name}"])  # no sync per step
        losses.update({"cluster": cluster, **parts})
        return losses

    @torch.no_grad()
    def _eval_mode_features(self, clip: Tensor) -> dict[str, Tensor]:
        """Return the clustering features of ``clip`` with batch norm in evaluation mode, as the score encodes it."""
        # The layers go to eval mode, the model itself stays in training mode: its clip check then reads
        # nothing on the host on an accelerator, as in the training step.
        modes = {module: module.training for module in self.model.modules()}
        for child in self.model.children():
            child.eval()
        try:
            return self.model._forward(clip).features  # noqa: SLF001 - the shared forward, layers in eval mode
        finally:
            for module, mode in modes.items():
                module.training = mode

    def _kmeans_features(self, train: dict[str, Tensor], evaluation: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return the features k-means gathers (``kmeans_codes``), noting how close the two modes' codes are.

        Both are L2-normalised per location, from the same weights; their mean cosine similarity is
        accumulated on the device and reported with the k-means result.
        """
        for name, value in evaluation.items():
            self._code_agreement.setdefault(name, []).append((value * train[name].detach()).sum(dim=1).mean())
        return evaluation if self.kmeans_codes == "eval" else train

    @torch.no_grad()
    def _gather(self, features: dict[str, Tensor]) -> None:
        """Keep a random subset of this batch's feature vectors for k-means (last pre-training epoch).

        They stay on the model's device until k-means (:meth:`start_alternating`), so gathering never waits
        for the GPU (at most ``kmeans_samples`` vectors per clustering, plus one batch's worth).
        """
        window = self.gather_window() if self._trainer is not None else None
        # Under DDP every rank gathers its share: about kmeans_samples vectors in all, as in one process.
        batches = (window[1] - window[0]) * distributed.world_size() if window is not None else math.inf
        for name, value in features.items():
            vectors = value.detach().flatten(2).transpose(1, 2).reshape(-1, value.shape[1])
            per_batch = vectors.shape[0]
            if math.isfinite(batches) and batches > 0:
                per_batch = min(per_batch, math.ceil(self.kmeans_samples / batches))
            index = torch.randperm(vectors.shape[0], device=vectors.device)[:per_batch]
            self._samples[name].append(vectors[index].float())

    def training_step(self, batch, batch_idx: int, *args, **kwargs) -> None:  # noqa: ANN001
        """Alternate the AE step and the centre step (manual optimisation); log the losses."""
        del batch_idx, args, kwargs
        autoencoders, centres = self.optimizers()
        losses = self.optimisation_step(batch.image, autoencoders, centres)
        self.log_losses(losses, batch_size=batch.image.shape[0])
