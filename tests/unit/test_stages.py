"""The two-stage mixin: the first-stage argument, where a batch falls, stage timing and the summary."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from anomalib_vadproto import Apn, Cdda, DlanAc, LgnNet, Mnad
from anomalib_vadproto.components import stages
from anomalib_vadproto.components.stages import TwoStageMixin


class LightningHooks:
    """The no-op hooks the mixin chains to (LightningModule's)."""

    def on_train_start(self) -> None: ...

    def on_train_epoch_start(self) -> None: ...

    def on_train_epoch_end(self) -> None: ...

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...


class Warmup(TwoStageMixin, LightningHooks):
    """A two-stage model reduced to what the mixin reads: its trainer, epoch and stage."""

    first_stage_argument = "warmup_epochs"
    stage_keys = ("warmup", "main")
    paper_stage_epochs = (1, 3)
    timing_checkpoint_key = "warmup_timing"

    def __init__(self, warmup_epochs: int, batches: float, max_epochs: int, two_stages: bool = True) -> None:
        self.warmup_epochs = warmup_epochs
        self.trainer = SimpleNamespace(num_training_batches=batches, max_epochs=max_epochs, max_steps=-1)
        self.current_epoch = 0
        self.second = False
        self.two_stages = two_stages
        self.init_stage_timing("extra_seconds")

    @property
    def in_second_stage(self) -> bool:
        return self.second

    @property
    def uses_two_stages(self) -> bool:
        return self.two_stages

    def at(self, epoch: int) -> Warmup:
        self.current_epoch = epoch
        return self


def test_the_model_classes_name_their_first_stage_argument():
    assert DlanAc.first_stage_argument == "ac_epochs" and Cdda.first_stage_argument == "ae_epochs"
    assert [model.first_stage_argument for model in (Mnad, LgnNet, Apn)] == [None, None, None]
    # older checkpoints keep their stage times under these keys
    assert (DlanAc.timing_checkpoint_key, Cdda.timing_checkpoint_key) == ("dlan_ac_timing", "cdda_timing")


def test_a_two_stage_model_must_name_its_first_stage_argument():
    with pytest.raises(TypeError, match="first_stage_argument"):

        class Unnamed(TwoStageMixin, LightningHooks):
            pass


def test_with_the_configured_split_the_stages_follow_the_epochs():
    model = Warmup(warmup_epochs=2, batches=4, max_epochs=5)
    model.on_train_start()
    assert model.stage_plan is not None and not model.stage_plan.shortened and model.stage_plan.switch_batch == 8
    assert model.at(1).in_first_stage(3) and not model.at(2).in_first_stage(0)
    assert not model.at(1).first_stage_ends_after(2) and model.at(1).first_stage_ends_after(3)
    assert model.at(3).first_stage_ends_after(0)  # and every batch after the switch


def test_a_shortened_run_switches_inside_an_epoch():
    model = Warmup(warmup_epochs=2, batches=8, max_epochs=1)
    model.on_train_start()
    assert model.stage_plan.shortened and model.stage_plan.switch_batch == 2  # 1 : 3 of 8 batches
    assert [model.in_first_stage(batch) for batch in range(4)] == [True, True, False, False]
    assert [model.first_stage_ends_after(batch) for batch in range(3)] == [False, True, True]


def test_without_a_plan_the_stages_fall_on_epochs():
    model = Warmup(warmup_epochs=2, batches=math.inf, max_epochs=5)  # an iterable dataset without a length
    model.on_train_start()
    assert model.stage_plan is None
    assert model.at(1).in_first_stage(100) and not model.at(2).in_first_stage(0)
    assert not model.at(1).first_stage_ends_after(100)  # the last batch of an epoch of unknown length is unknown
    with pytest.raises(ValueError, match="warmup_epochs"):
        Warmup(warmup_epochs=2, batches=math.inf, max_epochs=2).on_train_start()


def test_a_single_stage_run_plans_nothing_and_stays_in_the_first_stage():
    model = Warmup(warmup_epochs=2, batches=4, max_epochs=5, two_stages=False)
    model.on_train_start()
    assert model.stage_plan is None and model.at(4).in_first_stage(3)


def test_stage_time_goes_to_the_stage_it_was_spent_in_and_survives_a_checkpoint(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(stages, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    model = Warmup(warmup_epochs=1, batches=4, max_epochs=3)
    assert model.timing == {"warmup_seconds": 0.0, "main_seconds": 0.0, "extra_seconds": 0.0}
    model.on_train_epoch_start()
    now[0] = 3.0
    model.charge_stage_time()  # before a switch inside the epoch: the time so far was the warm-up's
    model.second = True
    now[0] = 3.5
    model.start_stage_clock()  # work timed on its own (e.g. k-means) is charged to no stage
    now[0] = 8.5
    model.on_train_epoch_end()
    model.timing["extra_seconds"] = 0.5
    assert model.stage_summary() == {"stage": "main", "warmup_seconds": 3.0, "main_seconds": 5.0, "extra_seconds": 0.5}
    checkpoint: dict[str, Any] = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint == {"warmup_timing": model.timing}
    resumed = Warmup(warmup_epochs=1, batches=4, max_epochs=3)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.timing == model.timing
    resumed.on_load_checkpoint({})  # a checkpoint without times keeps what is there
    assert resumed.timing == model.timing


def test_the_two_stage_models_report_their_stage_in_the_summary():
    tiny = {"image_size": 32, "grayscale": True, "width": 4}
    dlan = DlanAc(**tiny, num_clusters=4, som_iterations=10)
    summary = dlan.run_summary()
    assert summary["stage"] == "ac" and {"ac_seconds", "dlan_seconds", "som_seconds"} <= set(summary)
    cdda = Cdda(**tiny, num_clusters=4)
    summary = cdda.run_summary()
    assert summary["stage"] == "pretrain"
    assert {"pretrain_seconds", "alternating_seconds", "kmeans_seconds", "kmeans"} <= set(summary)
