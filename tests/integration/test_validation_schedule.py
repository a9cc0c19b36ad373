"""The video models validate once, after the last epoch (the validation set is the test set and only fits the
post-processor's thresholds), unless the user chose a validation schedule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from anomalib_vadproto.components.lightning import VideoModelMixin
from tests.conftest import clip_datamodule


class ValidationEpochs(Callback):
    """Record the training epoch of every validation pass."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001, D102
        self.epochs.append(trainer.current_epoch)


@pytest.fixture(scope="module")
def two_epochs(synthetic_root, tmp_path_factory):
    from anomalib.engine import Engine

    from anomalib_vadproto import Mnad

    work = tmp_path_factory.mktemp("two_epochs")
    counter = ValidationEpochs()
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=2, default_root_dir=work, logger=False, callbacks=[counter])
    results = engine.train(model=model, datamodule=clip_datamodule(synthetic_root))  # fit, then test
    return model, engine, counter, results, work


def test_two_epoch_run_validates_once_after_the_last_epoch(two_epochs) -> None:
    model, engine, counter, results, _ = two_epochs
    assert engine.trainer.current_epoch == 2  # both epochs trained
    assert counter.epochs == [1]
    assert torch.isfinite(model.post_processor._image_threshold)  # the thresholds were fitted before test
    assert 0.0 <= results[0]["image_AUROC"] <= 1.0


def test_the_checkpoint_is_saved_after_the_validation(two_epochs) -> None:
    *_, work = two_epochs
    (path,) = work.rglob("model.ckpt")
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    assert torch.isfinite(state["state_dict"]["post_processor._image_threshold"])


def trainer(**overrides) -> SimpleNamespace:
    """The trainer attributes the schedule reads, at Lightning's defaults for a 10-epoch run."""
    values = {
        "max_epochs": 10,
        "max_steps": -1,
        "check_val_every_n_epoch": 1,
        "val_check_interval": 1.0,
        "_val_check_time_interval": None,
    }
    return SimpleNamespace(**{**values, **overrides})


def scheduled(fake: SimpleNamespace) -> int | None:
    VideoModelMixin.validate_after_last_epoch(SimpleNamespace(trainer=fake))
    return fake.check_val_every_n_epoch


def test_defaults_become_one_validation_after_the_last_epoch() -> None:
    assert scheduled(trainer()) == 10


@pytest.mark.parametrize(
    "overrides",
    [
        {"check_val_every_n_epoch": 3},  # the user's schedule
        {"check_val_every_n_epoch": None, "val_check_interval": 50},  # every 50 training batches
        {"val_check_interval": 0.5},  # twice per epoch
        {"_val_check_time_interval": 600.0},  # every 10 minutes
        {"max_steps": 1000},  # the run may end before max_epochs
        {"max_epochs": -1},  # unbounded
    ],
)
def test_a_chosen_schedule_or_unbounded_run_is_kept(overrides) -> None:
    fake = trainer(**overrides)
    before = fake.check_val_every_n_epoch
    assert scheduled(fake) == before


# ---------------------------------------------------------------------------------------------- held-out videos
@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory):
    """Two epochs of a tiny MNAD validating on one held-out training video of four."""
    from anomalib.engine import Engine

    from anomalib_vadproto import LocalUCSDped, Mnad
    from anomalib_vadproto.data import make_synthetic_ucsd

    root = tmp_path_factory.mktemp("held_out")
    make_synthetic_ucsd(root, n_train=4, n_test=2, n_frames=12, height=32, width=48)
    datamodule = LocalUCSDped(
        root=root, category="synthetic", clip_length_in_frames=5, frames_between_clips=1, train_batch_size=4,
        eval_batch_size=8, num_workers=0, val_split_mode="from_train", val_videos=1,
    )  # fmt: skip
    counter = ValidationEpochs()
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=2, default_root_dir=root / "run", logger=False, callbacks=[counter])
    engine.fit(model=model, datamodule=datamodule)
    metrics = dict(engine.trainer.callback_metrics)
    results = engine.test(model=model, datamodule=datamodule)
    return model, datamodule, counter, metrics, results


def test_held_out_videos_validate_every_epoch_and_report_the_cues(held_out_run) -> None:
    model, datamodule, counter, metrics, _ = held_out_run
    assert datamodule.held_out_videos == ("Train003",)
    assert counter.epochs == [0, 1]  # Lightning's schedule: the validation curve is the point
    # The mean of each of MNAD's cues over the held-out clips: the prediction PSNR and the feature distance.
    assert {"val_psnr", "val_feature_distance"} <= set(metrics)
    assert 0.0 < float(metrics["val_psnr"]) < 100.0
    assert float(metrics["val_feature_distance"]) >= 0.0
    # Held-out clips are normal: the post-processor's threshold sits at or above every normal score.
    assert torch.isfinite(model.post_processor._image_threshold)


def test_a_held_out_run_tests_on_the_test_videos(held_out_run) -> None:
    model, *_, results = held_out_run
    assert 0.0 <= results[0]["protocol_AUC_micro"] <= 1.0
    assert model.protocol_result is not None
