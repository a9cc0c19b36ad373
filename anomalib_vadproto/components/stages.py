"""Two-stage training inside one ``fit``, for the models whose papers train in two stages.

DLAN-AC (the Adaptive Clusterer, then DLAN) and CDDA (autoencoder pre-training, then the
alternating optimisation) run both stages inside one ``anomalib train``: the first stage lasts the
model's first-stage epochs (``ac_epochs``, ``ae_epochs``), the second the rest of
``--trainer.max_epochs``. :class:`TwoStageMixin` plans where the switch falls.

A run too short for that split (a smoke run with ``--trainer.max_epochs 1``, anomalib's one-epoch
model tests, a ``--trainer.max_steps`` budget) is not refused: both stages are shortened in the
proportion of the paper's schedule on UCSD Ped2 (DLAN-AC 10 : 80, CDDA 50 : 100), the switch falls
inside an epoch where needed, and the plan is logged once. A run long enough keeps the configured
split exactly (the switch at the start of epoch ``first_stage_epochs``).

The mixin also times both stages (``<stage>_seconds``, carried in checkpoints) and reports the stage
and the times for benchmarks (:meth:`TwoStageMixin.stage_summary`). Which first-stage argument a model
class has is its class attribute ``first_stage_argument`` (``None`` on the one-stage models).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagePlan:
    """Where the first stage ends, counted in training batches from the start of ``fit``.

    Attributes:
        switch_batch: Index of the first batch of the second stage (all batches before it are stage 1).
        batches_per_epoch: Training batches per epoch.
        total_batches: Training batches of the whole run (``None``: bounded only by ``max_epochs``).
        shortened: ``True`` when the configured split did not fit and both stages were shortened.

    """

    switch_batch: int
    batches_per_epoch: int
    total_batches: int | None
    shortened: bool

    @property
    def switch_epoch(self) -> int:
        """The epoch in which the second stage starts."""
        return self.switch_batch // self.batches_per_epoch

    @property
    def on_epoch_boundary(self) -> bool:
        """Whether the switch falls at the start of an epoch."""
        return self.switch_batch % self.batches_per_epoch == 0


def plan_stages(
    first_stage_epochs: int,
    batches_per_epoch: int,
    max_epochs: int | None,
    max_steps: int | None,
    first_stage_share: float,
    steps_per_batch: tuple[float, float] = (1.0, 1.0),
) -> StagePlan:
    """Plan the switch between the two stages of a run.

    Args:
        first_stage_epochs: The configured first-stage epochs.
        batches_per_epoch: Training batches per epoch (after ``limit_train_batches``).
        max_epochs: The trainer's ``max_epochs`` (``None`` or negative: unbounded).
        max_steps: The trainer's ``max_steps`` (``None`` or negative: unbounded).
        first_stage_share: Share of a shortened run given to the first stage (the paper's proportion).
        steps_per_batch: Optimiser steps (Lightning's ``global_step``) per batch in each stage.

    Returns:
        The plan. The configured split is kept when at least one second-stage batch fits after it;
        otherwise the run's batches are split by ``first_stage_share``, each stage keeping at least one
        batch when the run has two or more.

    Raises:
        ValueError: If neither ``max_epochs`` nor ``max_steps`` bounds the run (no split can be planned).

    """
    if batches_per_epoch < 1:
        msg = f"batches_per_epoch must be at least 1, got {batches_per_epoch}"
        raise ValueError(msg)
    epoch_bound = max_epochs * batches_per_epoch if max_epochs is not None and max_epochs >= 0 else None
    step_bound = max_steps if max_steps is not None and max_steps >= 0 else None
    if epoch_bound is None and step_bound is None:
        msg = "Two-stage training needs --trainer.max_epochs or --trainer.max_steps to plan its two stages."
        raise ValueError(msg)
    first, second = steps_per_batch
    configured = first_stage_epochs * batches_per_epoch
    # Batches the run has, were the configured split kept: stage 1 whole, then stage 2 until a bound.
    kept_total = epoch_bound if epoch_bound is not None else math.inf
    if step_bound is not None:
        kept_total = min(kept_total, configured + max(0.0, (step_bound - configured * first) / second))
    if kept_total >= configured + 1:
        total = None if math.isinf(kept_total) else int(kept_total)
        return StagePlan(configured, batches_per_epoch, total, shortened=False)
    # Shortened: batches split by the share, within both bounds.
    total = epoch_bound if epoch_bound is not None else math.inf
    if step_bound is not None:
        total = min(total, step_bound / (first_stage_share * first + (1 - first_stage_share) * second))
    total = max(1, int(math.floor(total + 1e-9)))
    switch = min(max(1, round(first_stage_share * total)), max(1, total - 1))
    return StagePlan(switch, batches_per_epoch, total, shortened=True)


class TwoStageMixin:
    """Plan, track and time the two training stages of a Lightning model (place it before ``VideoModelMixin``).

    A model declares only what differs: :attr:`first_stage_argument` (the init argument holding the first
    stage's epochs), :attr:`stage_keys`, :attr:`stage_names`, :attr:`paper_stage_epochs`,
    :attr:`timing_checkpoint_key`, :attr:`in_second_stage` (from its torch model's stage buffer) and, when a
    run may skip the second stage, :attr:`uses_two_stages`. It calls :meth:`init_stage_timing` in its
    ``__init__``, asks :meth:`in_first_stage` / :meth:`first_stage_ends_after` where a batch falls, and calls
    :meth:`charge_stage_time` before it switches inside an epoch.

    The mixin's hooks (each subclass override calls ``super()``): ``on_train_start`` plans the switch
    (:meth:`plan_training_stages`); ``on_train_epoch_start`` starts the stage clock; ``on_train_epoch_end``
    charges the epoch's time to its stage; the checkpoint hooks save and restore :attr:`timing`.
    """

    #: Name of the init argument that holds the first stage's epochs (``ac_epochs``, ``ae_epochs``). Read it on
    #: the class (``DlanAc.first_stage_argument``); every subclass must set it.
    first_stage_argument: str | None = None
    #: Short names of the two stages: the ``"stage"`` of :meth:`stage_summary` and the timing keys ``<key>_seconds``.
    stage_keys: tuple[str, str] = ("first", "second")
    #: Human names of the two stages, for the log.
    stage_names: tuple[str, str] = ("first stage", "second stage")
    #: The paper's epochs of the two stages (UCSD Ped2): the proportion of a shortened run.
    paper_stage_epochs: tuple[int, int] = (1, 1)
    #: Optimiser steps per training batch in each stage (Lightning's ``global_step``, for ``max_steps``).
    steps_per_batch: tuple[float, float] = (1.0, 1.0)
    #: Checkpoint key under which :attr:`timing` is saved (kept per model, so older checkpoints still load).
    timing_checkpoint_key: str = "stage_timing"

    stage_plan: StagePlan | None = None
    #: Wall-clock seconds of each stage (``<stage key>_seconds``) and of the model's extra timers.
    timing: dict[str, float]
    _stage_clock: float = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init_subclass__(**kwargs)
        if not cls.first_stage_argument:
            msg = f"{cls.__name__} must set first_stage_argument (the init argument of its first stage's epochs)."
            raise TypeError(msg)

    # ------------------------------------------------------------------ what the model declares
    @property
    def in_second_stage(self) -> bool:
        """Whether the torch model is in its second stage (the subclass reads its stage buffer)."""
        raise NotImplementedError

    @property
    def uses_two_stages(self) -> bool:
        """Whether this run has two stages (``False``: the first stage is the whole run, nothing is planned)."""
        return True

    @property
    def first_stage_epochs(self) -> int:
        """The configured first-stage epochs."""
        return int(getattr(self, self.first_stage_argument))

    @property
    def first_stage_share(self) -> float:
        """Share of a shortened run given to the first stage (the paper's proportion)."""
        first, second = self.paper_stage_epochs
        return first / (first + second)

    def plan_training_stages(self) -> StagePlan | None:
        """Plan the switch from the trainer's bounds; log once when the run is shortened.

        Returns ``None`` (and the caller falls back to epoch boundaries) when the number of batches per
        epoch is unknown (an iterable dataset without a length).
        """
        trainer = self.trainer  # type: ignore[attr-defined]
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or batches < 1:
            self.stage_plan = None
            max_epochs = trainer.max_epochs
            if max_epochs is None or max_epochs < 0 or max_epochs <= self.first_stage_epochs:
                msg = (
                    f"{type(self).__name__} cannot shorten its {self.first_stage_epochs} {self.stage_names[0]} epochs"
                    f" ({self.first_stage_argument}) to a run of {max_epochs} epochs: the number of training batches"
                    f" per epoch is unknown. Set --trainer.max_epochs > {self.first_stage_argument}."
                )
                raise ValueError(msg)
            return None
        plan = plan_stages(
            self.first_stage_epochs,
            int(batches),
            trainer.max_epochs,
            trainer.max_steps,
            self.first_stage_share,
            self.steps_per_batch,
        )
        if plan.shortened and (self.stage_plan is None or not self.stage_plan.shortened):
            logger.warning(
                "%s: this run (%s) is shorter than its %d %s epochs (%s), so both stages are shortened in the"
                " paper's proportion %d : %d: %s for %d of %d training batches, then %s. Set --trainer.max_epochs"
                " above %s for the configured split.",
                type(self).__name__,
                _bounds(trainer.max_epochs, trainer.max_steps),
                self.first_stage_epochs,
                self.stage_names[0],
                self.first_stage_argument,
                *self.paper_stage_epochs,
                self.stage_names[0],
                plan.switch_batch,
                plan.total_batches,
                self.stage_names[1],
                self.first_stage_argument,
            )
        self.stage_plan = plan
        return plan

    def fit_batch(self, batch_idx: int) -> int:
        """Index of training batch ``batch_idx`` of the current epoch, counted from the start of ``fit``."""
        plan = self.stage_plan
        batches = plan.batches_per_epoch if plan is not None else self.trainer.num_training_batches  # type: ignore[attr-defined]
        return int(self.current_epoch * batches + batch_idx)  # type: ignore[attr-defined]

    def first_stage_batches(self) -> int | None:
        """Batches of the first stage (``None`` without a plan: the first ``first_stage_epochs`` epochs)."""
        return None if self.stage_plan is None else self.stage_plan.switch_batch

    def second_stage_start_epoch(self) -> int:
        """Return the epoch in which the second stage starts (``first_stage_epochs`` without a plan)."""
        return self.first_stage_epochs if self.stage_plan is None else self.stage_plan.switch_epoch

    def stage_schedule_epochs(self, second_stage: bool) -> int:
        """Epochs of each stage's learning-rate schedule (at least 1): a stage's share of ``max_epochs``."""
        max_epochs = self.max_epochs()  # type: ignore[attr-defined]
        if self.stage_plan is not None:
            start = self.stage_plan.switch_epoch  # the schedules step at epoch ends: those before it are stage 1's
        elif getattr(self, "_trainer", None) is None or max_epochs > self.first_stage_epochs:
            start = self.first_stage_epochs
        else:  # before on_train_start plans a shortened run: its expected split
            start = int(max_epochs * self.first_stage_share)
        return max(1, max_epochs - start) if second_stage else max(1, start)

    # ------------------------------------------------------------------ where a batch falls
    def in_first_stage(self, batch_idx: int) -> bool:
        """Whether training batch ``batch_idx`` of the current epoch belongs to the first stage.

        By the plan (batches from the start of ``fit``), or by epochs without one (the first
        ``first_stage_epochs`` epochs). Always ``True`` when :attr:`uses_two_stages` is ``False``.
        """
        if not self.uses_two_stages:
            return True
        switch = self.first_stage_batches()
        if switch is None:
            return self.current_epoch < self.first_stage_epochs  # type: ignore[attr-defined]
        return self.fit_batch(batch_idx) < switch

    def first_stage_ends_after(self, batch_idx: int) -> bool:
        """Whether the first stage is over once training batch ``batch_idx`` of the current epoch ends.

        ``True`` for the first stage's last batch and every later one. Without a plan (unknown batches per
        epoch), only the last batch of epoch ``first_stage_epochs - 1``, when the epoch's length is known.
        """
        if self.stage_plan is not None:
            return self.fit_batch(batch_idx) + 1 >= self.stage_plan.switch_batch
        batches = self.trainer.num_training_batches  # type: ignore[attr-defined]
        last_epoch = self.current_epoch == self.first_stage_epochs - 1  # type: ignore[attr-defined]
        return last_epoch and math.isfinite(batches) and batch_idx + 1 >= batches

    # ------------------------------------------------------------------ timing and summary
    def init_stage_timing(self, *extra: str) -> None:
        """Start :attr:`timing` at zero: one ``<stage key>_seconds`` per stage, then the ``extra`` timers."""
        self.timing = dict.fromkeys((*(f"{key}_seconds" for key in self.stage_keys), *extra), 0.0)
        self._stage_clock = 0.0

    def start_stage_clock(self) -> None:
        """Start timing the current stage now (the epoch start, or after work charged to no stage)."""
        self._stage_clock = time.perf_counter()

    def charge_stage_time(self) -> None:
        """Add the time since the clock started to the current stage (call it before switching), restart it."""
        now = time.perf_counter()
        self.timing[f"{self.stage_keys[int(self.in_second_stage)]}_seconds"] += now - self._stage_clock
        self._stage_clock = now

    def stage_summary(self) -> dict[str, Any]:
        """Report the current stage (its key) and every timer of :attr:`timing`, in seconds to 0.1 s."""
        return {
            "stage": self.stage_keys[int(self.in_second_stage)],
            **{name: round(seconds, 1) for name, seconds in self.timing.items()},
        }

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self) -> None:
        """Plan the stage switch now that the number of training batches is known."""
        super().on_train_start()  # type: ignore[misc]
        if self.uses_two_stages:
            self.plan_training_stages()

    def on_train_epoch_start(self) -> None:
        """Start the stage clock."""
        super().on_train_epoch_start()  # type: ignore[misc]
        self.start_stage_clock()

    def on_train_epoch_end(self) -> None:
        """Charge the epoch's time to the stage it ended in."""
        super().on_train_epoch_end()  # type: ignore[misc]
        self.charge_stage_time()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save :attr:`timing` under :attr:`timing_checkpoint_key`."""
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint[self.timing_checkpoint_key] = dict(self.timing)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore :attr:`timing` (a checkpoint without it keeps the zeros)."""
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        self.timing.update(checkpoint.get(self.timing_checkpoint_key, {}))


def _bounds(max_epochs: int | None, max_steps: int | None) -> str:
    parts = []
    if max_epochs is not None and max_epochs >= 0:
        parts.append(f"max_epochs={max_epochs}")
    if max_steps is not None and max_steps >= 0:
        parts.append(f"max_steps={max_steps}")
    return ", ".join(parts)
