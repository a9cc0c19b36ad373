"""Lightning behaviour shared by the five video models, as a mixin placed before ``AnomalibModule``.

anomalib's ``get_model``/``list_models`` only see *direct* subclasses of ``AnomalibModule``, so
shared behaviour lives in mixins: ``class Mnad(VideoModelMixin, AnomalibModule)``. The mixin
provides the pieces every model needs and anomalib 2.7 does not give video models:

* ``validation_step``/``test_step``/``predict_step`` through ``model.score`` (anomaly map, score and
  the raw cues), resetting test-time state at the start of every evaluation epoch;
* the papers' protocol (:class:`~anomalib_vadproto.metrics.VideoProtocolAUC`) logged by
  ``anomalib test`` beside anomalib's pooled ``image_AUROC``;
* a video-aware visualizer, an evaluator with a binned pixel AUROC, Adam with cosine decay, seeding,
  and a 5-D, read-only export (:class:`~anomalib_vadproto.components.export.VideoExportMixin`).

Mixed precision: every model trains under Lightning's ``bf16-mixed`` (``--trainer.precision
bf16-mixed``). On this project's 2-core CPU, which has bf16 instructions, a lite training step through
the Engine is 1.04x (APN) to 1.49x (LGN-Net) faster than channels-last FP32 (``python -m
research.memory_format --bf16``); on CPUs without them bf16 is emulated and slower. Validation,
test and predict always score in FP32.

Fast training on a GPU (:meth:`VideoModelMixin.setup_fast_training`, :mod:`~anomalib_vadproto.components.fast`):
every model takes ``compile``, ``compile_mode``, ``channels_last`` and ``log_step_losses``; Adam is fused
whenever the parameters are on CUDA. The training losses are logged as epoch means by default, so that a
training step never waits for the GPU: a value logged per step is read on the host for the progress bar
at every step (``log_step_losses: true``, as before).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from anomalib import LearningType
from anomalib.metrics import AUROC, Evaluator, F1Score
from lightning.pytorch import seed_everything
from torch import Tensor

from anomalib_vadproto.components import distributed
from anomalib_vadproto.components.export import VideoExportMixin
from anomalib_vadproto.components.fast import CompileOptions, adam_kwargs, check_compile_mode, maybe_compiled
from anomalib_vadproto.components.metadata import check_camera_options
from anomalib_vadproto.errors import (
    CheckpointMismatchError,
    InvalidArgumentError,
    MissingDataError,
    UntrainedModelWarning,
)
from anomalib_vadproto.metrics import VideoProtocolAUC

logger = logging.getLogger(__name__)

#: Checkpoint key holding the name of the plugin model that saved it (:meth:`VideoModelMixin.model_family`).
CHECKPOINT_MODEL_KEY = "anomalib_vadproto_model"
#: Checkpoint key holding the training datamodule's camera options (:meth:`VideoModelMixin.capture_camera_options`).
CHECKPOINT_CAMERA_KEY = "anomalib_vadproto_camera_options"
#: Smallest height or width the video pre-processor accepts (:func:`~.pre_processing.video_pre_processor`).
MIN_SIDE = 8


def seed_if_given(seed: int | None) -> None:
    """Seed Python, NumPy and torch (and dataloader workers) when ``seed`` is not ``None``.

    anomalib 2.7 parses ``--seed_everything`` but never applies it, so every model takes ``seed``.
    """
    if seed is not None:
        seed_everything(int(seed), workers=True)


def as_size(image_size: Sequence[int] | int, multiple: int = 1, model: str = "the model") -> tuple[int, int]:
    """Normalise an ``image_size`` argument to ``(height, width)``, both multiples of ``multiple``.

    Args:
        image_size: An int (square frames) or ``(height, width)``.
        multiple: What height and width must be multiples of (the network's total downsampling).
        model: Name used in the error message.

    Returns:
        ``(height, width)``.

    Raises:
        InvalidArgumentError: (a ``ValueError``) for anything but one or two ints, or for a size that is
            not a multiple of ``multiple``; the message names the nearest valid sizes.

    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    if len(size) != 2:
        msg = f"image_size must be an int or (height, width), got {image_size!r}"
        raise InvalidArgumentError(msg)
    if size[0] % multiple or size[1] % multiple:
        msg = (
            f"image_size must be multiples of {multiple} for {model} (height and width, for its strided and"
            f" pooling layers), got {list(size)}; the nearest valid sizes are {_nearest_sizes(size, multiple)}:"
            f" set image_size (--model.image_size) to one of them."
        )
        raise InvalidArgumentError(msg)
    return size  # type: ignore[return-value]


def _nearest_sizes(size: tuple[int, ...], multiple: int) -> str:
    """``[96, 96] or [104, 104]``: each side rounded down (when still a valid size) and up to ``multiple``."""
    smallest = multiple * -(-MIN_SIDE // multiple)  # the smallest multiple the pre-processor accepts
    down = tuple(max(smallest, side // multiple * multiple) for side in size)
    up = tuple(max(smallest, -(-side // multiple) * multiple) for side in size)
    return " or ".join(f"[{height}, {width}]" for height, width in dict.fromkeys((down, up)))


def _plain(value: Any) -> Any:  # noqa: ANN401
    """Compare tuples and lists alike (YAML gives lists, Python defaults give tuples)."""
    return list(value) if isinstance(value, (tuple, list)) else value


def held_out_validation(trainer: Any) -> bool:  # noqa: ANN401
    """Whether the trainer's datamodule validates on held-out training videos (``val_split_mode: from_train``)."""
    mode = getattr(getattr(trainer, "datamodule", None), "val_split_mode", None)
    return str(getattr(mode, "value", mode)) == "from_train"


class VideoModelMixin(VideoExportMixin):
    """Shared Lightning behaviour of the plugin's video models.

    The subclass sets ``self.model`` (a :class:`~anomalib_vadproto.components.torch_model.VideoTorchModel`:
    ``score(clip)`` returns ``(InferenceBatch, cues)``, ``reset_test_state()`` restarts test-time state),
    ``self.clip_length``, ``self.image_size`` and ``self.lr``, and calls :meth:`setup_protocol` in its ``__init__``.
    """

    #: Init arguments that change the network's shapes; a checkpoint must agree on them.
    architecture_hparams: tuple[str, ...] = ()
    #: The init argument that holds the first training stage's epochs of a two-stage model (DLAN-AC's
    #: ``ac_epochs``, CDDA's ``ae_epochs``; :class:`~anomalib_vadproto.components.stages.TwoStageMixin`),
    #: ``None`` for a one-stage model. Read it on the class: ``DlanAc.first_stage_argument``.
    first_stage_argument: str | None = None
    #: Height and width of ``image_size`` must be multiples of this (the network's strides and poolings).
    size_multiple: int = 1
    #: Whether the model was fitted in this process or loaded from a checkpoint (see :meth:`on_test_start`).
    _trained: bool = False
    _untrained_warned: bool = False
    protocol_result = None  # ProtocolResult of the last test epoch (per-video scores for plots/benchmarks)
    protocol_other_result = None  # ProtocolResult with the other smoothing setting (models that report both)
    #: Convert the torch model to channels-last memory format when it runs on CPU (:meth:`use_preferred_memory_format`).
    channels_last_on_cpu: bool = True
    #: Also on CUDA (the ``channels_last`` option, :meth:`setup_fast_training`).
    channels_last: bool = False
    #: Log the training losses at every step rather than as epoch means (:meth:`log_losses`).
    log_step_losses: bool = False
    #: Whether the compiled training step may capture CUDA graphs (``compile_mode: reduce-overhead``): every
    #: tensor it keeps past a step is a copy, and no parameter's ``requires_grad`` changes between its calls.
    cuda_graph_training: bool = True
    #: Whether some parameters take no part in some training losses (a stage, a frozen half of an alternation),
    #: so that DDP must look for them at every step (``find_unused_parameters``; :meth:`setup_distributed`).
    ddp_find_unused_parameters: bool = False

    def __init__(
        self,
        image_size: Sequence[int] | int,
        grayscale: bool,
        pre_processor: Any = True,  # noqa: ANN401
        post_processor: Any = True,  # noqa: ANN401
        evaluator: Any = True,  # noqa: ANN401
        visualizer: Any = True,  # noqa: ANN401
    ) -> None:
        """Check and set ``image_size``, build the default ``[-1, 1]`` pre-processor, initialise ``AnomalibModule``.

        Raises:
            InvalidArgumentError: (a ``ValueError``) if ``image_size`` is not a multiple of :attr:`size_multiple`.

        """
        self.image_size = as_size(image_size, self.size_multiple, type(self).__name__)
        if pre_processor is True:
            from anomalib_vadproto.components.pre_processing import video_pre_processor

            pre_processor = video_pre_processor(self.image_size, grayscale=grayscale)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )

    def setup_protocol(
        self,
        cue_weights: Mapping[str, float],
        normal_cues: Sequence[str] = ("psnr",),
        smoothing: bool = False,
        report_other_smoothing: bool = False,
        smoothing_mode: str = "nearest",
    ) -> None:
        """Create the papers'-protocol metric for this model's cues and fusion weights.

        Args:
            cue_weights: Cue name -> fusion weight.
            normal_cues: Cues where high means normal.
            smoothing: Smooth each video's fused score in time (APN's 15-tap Gaussian).
            report_other_smoothing: Also log the protocol with the other ``smoothing`` setting, as
                ``protocol_smoothed_AUC_*`` (or ``protocol_unsmoothed_AUC_*``), so both are reported.
            smoothing_mode: Border handling of the smoothing (``metrics.SMOOTHING_MODES``; APN's code: ``"hold"``).

        """
        self.protocol = VideoProtocolAUC(
            cue_weights=dict(cue_weights),
            normal_cues=tuple(normal_cues),
            smoothing=smoothing,
            smoothing_mode=smoothing_mode,
        )
        self.protocol_other = None
        if report_other_smoothing:
            self.protocol_other = VideoProtocolAUC(
                cue_weights=dict(cue_weights),
                normal_cues=tuple(normal_cues),
                smoothing=not smoothing,
                smoothing_mode=smoothing_mode,
                prefix="protocol_unsmoothed_" if smoothing else "protocol_smoothed_",
            )

    def setup_fast_training(
        self,
        compile: bool = False,
        compile_mode: str | None = None,
        channels_last: bool = False,
        log_step_losses: bool = False,
    ) -> None:
        """Set the fast-training options (call after ``self.model`` exists). All off: the eager step as before.

        Args:
            compile: ``torch.compile`` the pure tensor part of the training step (forward and losses) and of
                the scoring (network and cues); state updates stay eager between the compiled calls.
            compile_mode: ``None`` (automatic: ``"max-autotune-no-cudagraphs"`` on CUDA, the default mode on a
                CPU) or a ``torch.compile`` mode; ``"reduce-overhead"`` (CUDA graphs, CUDA only) where
                :attr:`cuda_graph_training` allows it.
            channels_last: Channels-last weights on CUDA too (they always are on a CPU); pays with bf16.
            log_step_losses: Log the training losses at every step (progress bar and logger), which reads
                them on the host after every step; by default they are logged as epoch means.

        Raises:
            InvalidArgumentError: (a ``ValueError``) for an unknown ``compile_mode``, or CUDA graphs where
                the model's step does not allow them.

        """
        try:
            check_compile_mode(compile_mode, self.cuda_graph_training, type(self).__name__)
        except ValueError as error:
            raise InvalidArgumentError(str(error)) from None
        self.model.compile_options = CompileOptions(mode=compile_mode) if compile else None
        self.channels_last = bool(channels_last)
        self.log_step_losses = bool(log_step_losses)

    def step_function(self, fn: Callable, clip: Tensor) -> Callable:
        """``fn`` compiled when ``compile`` is on (:func:`~anomalib_vadproto.components.fast.maybe_compiled`)."""
        return maybe_compiled(self.model, fn, clip.device)

    @classmethod
    def model_family(cls) -> str:
        """Name of the plugin model this class is (``Mnad`` for ``Mnad`` and for a subclass of it)."""
        family = next((c for c in cls.__mro__ if VideoModelMixin in c.__bases__), cls)
        return family.__name__

    @classmethod
    def _init_arguments(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    def checkpoint_model(self, checkpoint: Mapping[str, Any]) -> str | None:
        """Name the plugin model a checkpoint holds, or ``None`` when it cannot be told or may be this one.

        New checkpoints carry the name (:data:`CHECKPOINT_MODEL_KEY`). Older ones are recognised by their
        ``hyper_parameters``: every model saves all its init arguments, so they name the one model (of the
        five) that accepts them all, unless this model accepts them too.
        """
        name = checkpoint.get(CHECKPOINT_MODEL_KEY)
        if isinstance(name, str):
            return name
        saved = checkpoint.get("hyper_parameters")
        if not isinstance(saved, Mapping) or not saved or set(saved) <= self._init_arguments():
            return None
        import anomalib_vadproto.models  # noqa: F401 - the five models are the mixin's direct subclasses

        matches = [
            family.__name__ for family in VideoModelMixin.__subclasses__() if set(saved) <= family._init_arguments()
        ]
        return matches[0] if len(matches) == 1 else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record which model the checkpoint holds (:meth:`model_family`), for :meth:`on_load_checkpoint`.

        The training datamodule's camera options (:meth:`capture_camera_options`), where it had any, are kept
        too, so that an export from the checkpoint carries them.
        """
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_MODEL_KEY] = self.model_family()
        if self.camera_options is not None:
            checkpoint[CHECKPOINT_CAMERA_KEY] = dict(self.camera_options)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, with a clear message, a checkpoint of another model or whose architecture differs from this one.

        Raises:
            CheckpointMismatchError: (a ``ValueError``) naming the model the checkpoint holds, or the
                architecture arguments that differ.

        """
        own, holder = self.model_family(), self.checkpoint_model(checkpoint)
        if holder is not None and holder != own:
            msg = (
                f"this checkpoint holds a {holder} model, not {own}; use --model {holder} (in Python:"
                f" {holder}.load_from_checkpoint(path))"
            )
            raise CheckpointMismatchError(msg)
        saved = checkpoint.get("hyper_parameters", {})
        differences = [
            f"{key}={saved[key]!r} (this model: {self.hparams[key]!r})"
            for key in self.architecture_hparams
            if key in saved and key in self.hparams and _plain(saved[key]) != _plain(self.hparams[key])
        ]
        if differences:
            msg = (
                f"The checkpoint was trained with {', '.join(differences)}. Build the model with the same"
                " arguments, e.g. `anomalib test --config <run folder>/config.yaml --ckpt_path ...` or the model"
                " config used for training, or load it with `{0}.load_from_checkpoint(path)`.".format(
                    type(self).__name__
                )
            )
            raise CheckpointMismatchError(msg)
        super().on_load_checkpoint(checkpoint)
        self._trained = True
        self.camera_options = check_camera_options(checkpoint.get(CHECKPOINT_CAMERA_KEY))

    # ------------------------------------------------------------------ anomalib configuration
    @property
    def learning_type(self) -> LearningType:
        """One-class: trained on normal videos only."""
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Only what the models need; ``max_epochs`` stays the user's (``--trainer.max_epochs``).

        anomalib's ``Engine`` lets these values override the user's trainer arguments, so the validation
        schedule is not set here (the user's ``--trainer.check_val_every_n_epoch`` must win): see
        :meth:`validate_after_last_epoch`.
        """
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

    def validate_after_last_epoch(self) -> None:
        """Validate once, after the last training epoch, unless the user chose a validation schedule.

        anomalib's video datamodules validate on a copy of the test set, and the validation pass only fits
        the post-processor's thresholds and normalisation bounds (no checkpoint is chosen on it), so
        validating every epoch scores the whole test set ``max_epochs - 1`` extra times. Lightning's
        defaults (``check_val_every_n_epoch=1``, ``val_check_interval=1.0``) are therefore replaced by
        ``check_val_every_n_epoch=max_epochs``: one validation after the last epoch, which also saves the
        checkpoint, before ``test``. Any other ``--trainer.check_val_every_n_epoch`` (``null`` included) or
        ``--trainer.val_check_interval`` is kept (an explicit ``1`` cannot be told from the default), and so
        are runs of one epoch, of unbounded epochs, or bounded by ``max_steps``. With held-out training
        videos as the validation set (``val_split_mode: from_train``) Lightning's schedule is kept: there
        validation is the curve to choose epochs by.
        """
        trainer = self.trainer
        epochs = trainer.max_epochs
        if held_out_validation(trainer) or (
            epochs is None
            or epochs <= 1
            or trainer.max_steps not in (None, -1)
            or trainer.check_val_every_n_epoch != 1
            or trainer.val_check_interval != 1.0
            or getattr(trainer, "_val_check_time_interval", None) is not None
        ):
            return
        trainer.check_val_every_n_epoch = epochs
        logger.info(
            "%s validates once, after epoch %d: the validation set is the test set and only fits the thresholds"
            " (--trainer.check_val_every_n_epoch N validates every N epochs).",
            type(self).__name__,
            epochs,
        )

    @classmethod
    def configure_visualizer(cls):  # noqa: ANN206
        """Use a visualizer that understands clips (anomalib's default crashes on video)."""
        from anomalib_vadproto.visualization import VideoVisualizer

        return VideoVisualizer()

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """Anomalib's default metrics, with a binned pixel AUROC so memory does not grow with the test set.

        Every metric skips batches without its ground truth (``strict=False``): a test set without labels
        (prediction only) is scored, and no AUC is logged for it (:meth:`on_test_epoch_end` says so).
        """
        return Evaluator(
            test_metrics=[
                AUROC(fields=["pred_score", "gt_label"], prefix="image_", strict=False),
                F1Score(fields=["pred_label", "gt_label"], prefix="image_", strict=False),
                AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, thresholds=200),
                F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
            ],
        )

    def configure_optimizers(self):  # noqa: ANN201
        """Adam (0.9, 0.999; fused on CUDA) with cosine annealing to 0 over :meth:`schedule_epochs`, per epoch."""
        parameters = list(self.trainable_parameters())
        optimizer = torch.optim.Adam(parameters, lr=self.lr, betas=(0.9, 0.999), **adam_kwargs(parameters))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.schedule_epochs(), eta_min=0.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def max_epochs(self) -> int:
        """Return the trainer's ``max_epochs`` (1 without a trainer or with an unbounded run)."""
        epochs = getattr(self.trainer, "max_epochs", None) if self._trainer is not None else None
        return max(1, int(epochs or 1))

    def schedule_epochs(self) -> int:
        """``T_max`` of the cosine schedule: the whole run by default."""
        return self.max_epochs()

    def trainable_parameters(self):  # noqa: ANN201
        """Parameters given to the optimiser (all of the torch model's by default)."""
        return self.model.parameters()

    # ------------------------------------------------------------------ memory format
    def use_preferred_memory_format(self) -> None:
        """Keep the 4-D weights channels-last on CPU, where oneDNN's convolutions run faster in NHWC.

        Convolutions with channels-last weights return channels-last activations, so the whole network
        follows. On this project's 2-core CPU a lite training step through anomalib's ``Engine`` (data
        loading included) was 1.17-1.30x faster in one run of ``python -m research.memory_format``
        (APN 1.30x, CDDA 1.25x, MNAD and LGN-Net 1.20x, DLAN-AC 1.17x) and 1.00-1.50x in another
        (LGN-Net 1.00x, DLAN-AC 1.06x, MNAD 1.20x, APN 1.39x, CDDA 1.50x): 30-40 timed steps are noisy.
        The values are the same up to rounding; the parameters keep their identity, so the optimiser is
        unaffected.
        Set the class attribute ``channels_last_on_cpu = False`` to keep PyTorch's default layout.

        On CUDA the weights become channels-last with the ``channels_last`` option (:meth:`setup_fast_training`):
        cuDNN's tensor-core convolutions are NHWC, so under ``bf16-mixed`` they avoid a layout change per layer.
        """
        device = self.device.type
        if (device == "cpu" and self.channels_last_on_cpu) or (device == "cuda" and self.channels_last):
            self.model.to(memory_format=torch.channels_last)

    def setup(self, stage: str) -> None:
        """Refuse a fit without training data, before any callback runs (Lightning would fail later, at length).

        Raises:
            MissingDataError: (a ``ValueError``) if neither a datamodule nor training dataloaders were given.

        """
        super().setup(stage)
        # Lightning's fit loop knows its data source from Trainer.fit's arguments; it has no public accessor.
        source = getattr(getattr(self._trainer, "fit_loop", None), "_data_source", None)
        if stage == "fit" and source is not None and hasattr(source, "is_defined") and not source.is_defined():
            msg = (
                f"{type(self).__name__} has no training data: give a datamodule, e.g. --data LocalUCSDped"
                " --data.root <datasets folder> --data.category <dataset folder> (or --data <datamodule config.yaml>);"
                " in Python pass datamodule= to Engine.fit or Engine.train."
            )
            raise MissingDataError(msg)
        self.setup_distributed(stage)

    def setup_distributed(self, stage: str) -> None:
        """Under Lightning's DDP: prepare the wrapping, the run folder and a replicated evaluation.

        Runs in :meth:`setup`, after the process group exists and before the strategy wraps the model in DDP
        (Lightning 2.6 calls the module's ``setup`` before ``strategy.setup``). For a fit: models whose stages
        or alternating steps leave parameters out of a loss (:attr:`ddp_find_unused_parameters`: DLAN-AC,
        CDDA) get ``find_unused_parameters=True``; the weights take their memory format before DDP builds its
        gradient buckets; the ranks share rank 0's anomalib version folder
        (:func:`~anomalib_vadproto.components.distributed.share_run_folder`). Every evaluation is replicated
        (:func:`~anomalib_vadproto.components.distributed.replicate_evaluation`): each rank scores the whole
        set in order and computes the metrics locally, so test-time state runs as in one process and no frame
        is counted twice. Nothing happens in a single process.
        """
        from lightning.pytorch.strategies import DDPStrategy
        from lightning.pytorch.utilities.warnings import PossibleUserWarning
        from torchmetrics import Metric

        strategy = getattr(self._trainer, "strategy", None)
        if stage == "fit" and isinstance(strategy, DDPStrategy):
            distributed.share_run_folder(self.trainer.default_root_dir)  # one anomalib version folder, rank 0's
            # Channels-last weights before DDP builds its gradient buckets (on_fit_start comes after the wrapping).
            self.use_preferred_memory_format()
            if self.ddp_find_unused_parameters:
                # DDPStrategy keeps DistributedDataParallel's arguments here until configure_ddp wraps the model.
                strategy._ddp_kwargs["find_unused_parameters"] = True  # noqa: SLF001
        metrics = [module for module in self.modules() if isinstance(module, Metric)]
        if not distributed.replicate_evaluation(self.trainer, metrics):
            return
        # Every rank logs the same evaluation values (val_<cue>, protocol_*): Lightning's advice to average them
        # over the ranks does not apply.
        warnings.filterwarnings(
            "ignore", message=r"It is recommended to use `self\.log\('(val_|protocol_)", category=PossibleUserWarning
        )
        if self.global_rank == 0:
            logger.info(
                "%s under DDP (%d ranks): every rank evaluates the whole validation/test/predict set in order and"
                " computes the metrics locally (test-time state is sequential over the videos; no frame is counted"
                " twice), so the numbers are the single-process ones.",
                type(self).__name__,
                distributed.world_size(),
            )

    def on_fit_start(self) -> None:  # noqa: D102
        self.use_preferred_memory_format()
        self.validate_after_last_epoch()
        self.capture_camera_options()

    def capture_camera_options(self) -> None:
        """Take the camera options of the datamodule being fitted on, for the checkpoint and the export.

        A datamodule with a ``camera_options()`` method (:class:`~anomalib_vadproto.VideoFolder`: ``fps``,
        ``roi``, ``folder_fps``) gives them; any other datamodule (or none) clears them, so the model takes
        footage as it comes. They are kept in the checkpoint (:meth:`on_save_checkpoint`) and written into the
        export's metadata, from which ``anomalib-vadproto score`` subsamples and crops new recordings alike.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        options = getattr(datamodule, "camera_options", None)
        self.camera_options = check_camera_options(options() if callable(options) else None)
        if self.camera_options is not None:
            logger.info(
                "%s: the export will carry the camera options of %s: %s.",
                type(self).__name__,
                type(datamodule).__name__,
                ", ".join(f"{key} {value}" for key, value in self.camera_options.items() if value is not None),
            )

    def on_fit_end(self) -> None:
        """Remember that the model was fitted in this process (see :meth:`on_test_start`).

        Under DDP every rank then takes rank 0's buffers (the checkpoint's): the batch-norm statistics of
        the last steps are each rank's own; the models' other state is already the same on every rank.
        """
        self._trained = True
        distributed.broadcast_module_(self, parameters=False)

    def on_test_start(self) -> None:
        """Warn once if the model is tested untrained, then use the preferred memory format.

        A model that was neither fitted in this process nor loaded from a checkpoint (``--ckpt_path``)
        scores with freshly initialised weights and unfitted test-time state (CDDA's k-means centres,
        DLAN-AC's clusterer, the memory items), so its AUCs mean nothing.
        """
        if not self._trained and not self._untrained_warned:
            self._untrained_warned = True
            name = type(self).__name__
            msg = (
                f"{name} is being tested untrained: it was neither fitted in this process nor loaded from a"
                " checkpoint, so its weights and test-time state are freshly initialised and the AUCs below mean"
                f" nothing. Pass --ckpt_path <run folder>/weights/lightning/model.ckpt (or train first with"
                f" `anomalib train --model {name}`)."
            )
            warnings.warn(msg, UntrainedModelWarning, stacklevel=1)  # here: Lightning formats its own files tersely
        self.use_preferred_memory_format()

    def on_predict_start(self) -> None:  # noqa: D102
        self.use_preferred_memory_format()

    # ------------------------------------------------------------------ evaluation steps
    def _evaluate(self, batch, track: bool, log_cues: bool = False):  # noqa: ANN001, ANN202
        # Scores are computed in FP32 whatever the trainer's precision: under ``--trainer.precision
        # bf16-mixed`` only training runs in bf16 (PSNR differences of a fraction of a dB rank the frames).
        with torch.autocast(batch.image.device.type, enabled=False):
            predictions, cues = self.model.score(batch.image)
        if track and getattr(self, "protocol", None) is not None and batch.gt_label is not None:
            self.protocol.update(batch.video_path, batch.frames, batch.gt_label, cues)
            if getattr(self, "protocol_other", None) is not None:
                self.protocol_other.update(batch.video_path, batch.frames, batch.gt_label, cues)
        if log_cues:
            size = batch.image.shape[0]
            self.log_dict({f"val_{name}": value.float().mean() for name, value in cues.items()}, batch_size=size)
        return batch.update(**predictions._asdict())

    def validation_step(self, batch, batch_idx: int, *args, **kwargs):  # noqa: ANN001, ANN201
        """Score the clips for anomalib's post-processor and log the mean of each cue as ``val_<cue>``.

        On held-out normal training videos (``val_split_mode: from_train``) the means are validation
        criteria: e.g. ``val_psnr``, the prediction PSNR on videos the model never trained on. Those
        batches carry no ground truth (training videos have no masks); they are normal by construction
        and labelled so here, which gives the post-processor a threshold above every normal score.
        Returns the scored batch.
        """
        del batch_idx, args, kwargs
        if batch.gt_label is None:
            zeros = torch.zeros(batch.image.shape[0], dtype=torch.bool, device=batch.image.device)
            batch = batch.update(gt_label=zeros)
        batch = self._evaluate(batch, track=False, log_cues=True)
        if batch.gt_mask is None and batch.anomaly_map is not None:
            batch = batch.update(gt_mask=torch.zeros_like(batch.anomaly_map, dtype=torch.bool))
        return batch

    def test_step(self, batch, batch_idx: int, *args, **kwargs):  # noqa: ANN001, ANN201
        """Score the clips and feed the papers' protocol."""
        del batch_idx, args, kwargs
        return self._evaluate(batch, track=True)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):  # noqa: ANN001, ANN201
        """Score the clips (test-time state evolves as in ``test``)."""
        del batch_idx, dataloader_idx
        return self._evaluate(batch, track=False)

    def _start_evaluation(self) -> None:
        self.model.reset_test_state()
        for metric in (getattr(self, "protocol", None), getattr(self, "protocol_other", None)):
            if metric is not None:
                metric.reset()

    def on_validation_epoch_start(self) -> None:
        """Restart the test-time state and the protocol; under DDP, score with rank 0's buffers on every rank."""
        distributed.broadcast_module_(self, parameters=False)  # the last steps' batch-norm statistics
        self._start_evaluation()

    def on_test_epoch_start(self) -> None:  # noqa: D102
        self._start_evaluation()

    def on_predict_epoch_start(self) -> None:  # noqa: D102
        self._start_evaluation()

    def on_test_epoch_end(self) -> None:
        """Log the protocol AUCs (micro: all frames pooled after per-video min-max; macro: per-video mean).

        A test set without ground truth (``gt_label`` None: prediction only) feeds the protocol nothing;
        then no AUC is logged, and one warning says why.
        """
        if getattr(self, "protocol", None) is None:
            return
        if not self.protocol.has_data:
            logger.warning(
                "No AUC: the test set has no ground-truth labels, so its frames were scored (prediction only) and"
                " neither the papers' protocol AUC nor anomalib's image metrics can be computed. To evaluate, give"
                " every test video its labels (VideoFolder: ground_truth/<video>.csv of anomalous frame ranges)."
            )
            return
        values = self.protocol.compute()
        self.protocol_result = self.protocol.result()
        if getattr(self, "protocol_other", None) is not None:
            values.update(self.protocol_other.compute())
            self.protocol_other_result = self.protocol_other.result()
        self.log_dict({name: float(value) for name, value in values.items()}, sync_dist=False)

    def log_losses(self, losses: Mapping[str, Tensor], batch_size: int) -> None:
        """Log the training losses (``train_<name>``) on the progress bar, with an explicit batch size.

        By default as epoch means (``on_step=False, on_epoch=True``): Lightning accumulates them on the
        device and reads them once per epoch, so the training step never waits for the GPU. With
        ``log_step_losses`` every step's values are logged (the progress bar then reads them on the host
        after every step, a synchronisation per step on a GPU). Under DDP the epoch means are averaged over the
        ranks (the step values are rank 0's).
        """
        per_step = self.log_step_losses
        self.log_dict(
            {f"train_{k}": v.detach() for k, v in losses.items()},
            batch_size=batch_size,
            prog_bar=True,
            on_step=per_step,
            on_epoch=not per_step,
            sync_dist=not per_step and distributed.is_distributed(),  # DDP: the epoch means over every rank
        )
