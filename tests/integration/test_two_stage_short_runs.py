"""Two-stage models (DLAN-AC, CDDA) honour any ``max_epochs``/``max_steps``: short runs shorten both stages."""

from __future__ import annotations

import logging

import pytest
from anomalib.engine import Engine
from lightning.pytorch.callbacks import Callback

from anomalib_vadproto import Cdda, DlanAc
from anomalib_vadproto.components.stages import plan_stages
from tests.conftest import clip_datamodule


# ---------------------------------------------------------------------- the plan (known answers)
def test_a_run_long_enough_keeps_the_configured_split():
    plan = plan_stages(10, 7, max_epochs=90, max_steps=None, first_stage_share=10 / 90)
    assert (plan.switch_batch, plan.switch_epoch, plan.on_epoch_boundary, plan.shortened) == (70, 10, True, False)
    assert plan.total_batches == 630


def test_one_epoch_splits_its_batches_in_the_paper_proportion():
    # DLAN-AC 10 : 80 over 18 batches: 2 AC batches, then 16 DLAN batches, inside epoch 0
    plan = plan_stages(10, 18, max_epochs=1, max_steps=None, first_stage_share=10 / 90)
    assert (plan.switch_batch, plan.total_batches, plan.switch_epoch, plan.shortened) == (2, 18, 0, True)
    assert not plan.on_epoch_boundary
    # CDDA 50 : 100 over 3 epochs of 4 batches: 4 pre-training batches
    plan = plan_stages(50, 4, max_epochs=3, max_steps=None, first_stage_share=1 / 3)
    assert (plan.switch_batch, plan.total_batches, plan.shortened) == (4, 12, True)


def test_each_stage_keeps_a_batch_and_a_single_batch_run_is_all_first_stage():
    assert plan_stages(10, 5, max_epochs=1, max_steps=None, first_stage_share=0.01).switch_batch == 1
    assert plan_stages(10, 5, max_epochs=1, max_steps=None, first_stage_share=0.99).switch_batch == 4
    plan = plan_stages(10, 1, max_epochs=1, max_steps=None, first_stage_share=0.5)
    assert (plan.switch_batch, plan.total_batches) == (1, 1)


def test_max_steps_counts_the_optimiser_steps_of_each_stage():
    # 100 batches per epoch, no epoch bound; 12 steps, the second stage taking 2 steps per batch (CDDA):
    # 1/3 * 1 + 2/3 * 2 = 5/3 steps per batch on average, so 7 batches: 2 pre-training (2 steps), 5 alternating
    plan = plan_stages(50, 100, max_epochs=None, max_steps=12, first_stage_share=1 / 3, steps_per_batch=(1.0, 2.0))
    assert (plan.switch_batch, plan.total_batches, plan.shortened) == (2, 7, True)
    # a step budget that fits the configured split keeps it
    plan = plan_stages(2, 10, max_epochs=-1, max_steps=25, first_stage_share=0.5)
    assert (plan.switch_batch, plan.total_batches, plan.shortened) == (20, 25, False)


def test_an_unbounded_run_cannot_be_planned():
    with pytest.raises(ValueError, match="max_epochs or --trainer.max_steps"):
        plan_stages(1, 10, max_epochs=-1, max_steps=-1, first_stage_share=0.5)


# ---------------------------------------------------------------------- through anomalib's Engine
class Stages(Callback):
    """Record each training batch's stage."""

    def __init__(self) -> None:
        self.stages: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001, D102
        model = pl_module.model
        self.stages.append(bool(model.in_dlan_stage if hasattr(model, "in_dlan_stage") else model.alternating))


TINY_DLAN = {"image_size": (32, 32), "grayscale": True, "width": 4, "som_iterations": 100, "seed": 0}
TINY_CDDA = {"image_size": (32, 32), "grayscale": True, "width": 2, "num_clusters": 4, "kmeans_samples": 500,
             "kmeans_restarts": 1, "seed": 0}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_cls", "kwargs"),
    [(DlanAc, {**TINY_DLAN, "ac_epochs": 10}), (Cdda, {**TINY_CDDA, "ae_epochs": 50})],
    ids=["dlan_ac", "cdda"],
)
def test_one_epoch_trains_both_stages_and_tests(model_cls, kwargs, synthetic_root, tmp_path, caplog):
    """anomalib's own model tests use ``Engine(max_epochs=1)``: fit and test must work."""
    model = model_cls(**kwargs)
    stages = Stages()
    engine = Engine(max_epochs=1, default_root_dir=tmp_path, logger=False, callbacks=[stages])
    datamodule = clip_datamodule(synthetic_root)
    with caplog.at_level(logging.WARNING):
        engine.fit(model=model, datamodule=datamodule)
    plan = model.stage_plan
    assert plan is not None and plan.shortened and 1 <= plan.switch_batch < plan.total_batches
    # the first plan.switch_batch batches are stage 1, the rest stage 2
    assert stages.stages == [False] * plan.switch_batch + [True] * (plan.total_batches - plan.switch_batch)
    warnings = [r.getMessage() for r in caplog.records if "shortened" in r.getMessage()]
    assert len(warnings) == 1 and model.first_stage_argument in warnings[0]
    results = engine.test(model=model, datamodule=datamodule)
    assert 0.0 <= results[0]["protocol_AUC_micro"] <= 1.0


@pytest.mark.slow
def test_max_steps_alone_bounds_a_shortened_run(synthetic_root, tmp_path):
    model = Cdda(**{**TINY_CDDA, "ae_epochs": 50})
    stages = Stages()
    engine = Engine(max_epochs=-1, max_steps=5, default_root_dir=tmp_path, logger=False, callbacks=[stages],
                    check_val_every_n_epoch=100)  # fmt: skip
    engine.fit(model=model, datamodule=clip_datamodule(synthetic_root))
    # 5 steps at 1/3 * 1 + 2/3 * 2 steps per batch: 3 batches, 1 pre-training (1 step) and 2 alternating (4 steps)
    assert model.stage_plan.switch_batch == 1 and model.model.alternating
    assert stages.stages[:3] == [False, True, True]
    assert engine.trainer.global_step <= 5
