"""DLAN-AC through anomalib's Engine: both stages in one fit, schedule reset, resume in either stage."""

from __future__ import annotations

import pytest
import torch
from anomalib.callbacks.checkpoint import ModelCheckpoint
from anomalib.engine import Engine
from lightning.pytorch.callbacks import Callback

from anomalib_vadproto import DlanAc
from tests.conftest import clip_datamodule

pytestmark = pytest.mark.slow

TINY_DLAN = {"image_size": (32, 32), "grayscale": True, "width": 4, "ac_epochs": 2, "som_iterations": 100, "seed": 0}


class LearningRates(Callback):
    """Record the learning rate and optimiser size seen by the first batch of every epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001, D102
        if batch_idx == 0:
            group = trainer.optimizers[0].param_groups[0]
            self.seen[trainer.current_epoch] = (group["lr"], len(group["params"]))


def fit(root, work, ckpt_path=None, max_epochs: int = 4) -> tuple[DlanAc, LearningRates]:  # noqa: ANN001
    model = DlanAc(**TINY_DLAN)
    rates = LearningRates()
    every_epoch = ModelCheckpoint(
        dirpath=work / "epochs", filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=True
    )
    engine = Engine(
        max_epochs=max_epochs,
        default_root_dir=work,
        logger=False,
        check_val_every_n_epoch=100,  # no validation: these tests are about training
        callbacks=[rates, every_epoch],
    )
    engine.fit(model=model, datamodule=clip_datamodule(root), ckpt_path=ckpt_path)
    return model, rates


@pytest.fixture(scope="module")
def two_stage_run(synthetic_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("dlan")
    model, rates = fit(synthetic_root, work)
    return model, rates, work


def test_both_stages_run_in_one_fit_with_a_schedule_per_stage(two_stage_run):
    model, rates, _ = two_stage_run
    lr = 2e-4
    n_autoencoder = len(model.model.autoencoder_parameters())
    n_all = len(list(model.model.parameters()))
    # stage 1 (2 epochs): cosine over 2 epochs, encoder + decoder only; stage 2 restarts at lr over 2 epochs
    assert rates.seen[0] == (pytest.approx(lr), n_autoencoder)
    assert rates.seen[1] == (pytest.approx(lr / 2), n_autoencoder)
    assert rates.seen[2] == (pytest.approx(lr), n_all)
    assert rates.seen[3] == (pytest.approx(lr / 2), n_all)
    assert model.model.in_dlan_stage
    summary = model.run_summary()
    assert summary["num_prototypes_m"] == model.model.dlan.m >= 1
    assert summary["ac_seconds"] > 0 and summary["dlan_seconds"] > 0
    assert 0 < summary["som_share_of_ac_stage"] < 1


@pytest.mark.parametrize(("epoch", "stage"), [(1, 0), (2, 1)])
def test_resume_from_either_stage(two_stage_run, synthetic_root, tmp_path, epoch, stage):
    model, _, work = two_stage_run
    ckpt = work / "epochs" / f"epoch={epoch}.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert int(saved["state_dict"]["model.stage"]) == stage
    assert "dlan_ac_timing" in saved
    resumed, rates = fit(synthetic_root, tmp_path, ckpt_path=ckpt)
    assert sorted(rates.seen) == list(range(epoch + 1, 4))
    # the switch (epoch 2) resets the schedule; epoch 3 continues it
    expected = {2: 2e-4, 3: 1e-4}
    for e, (lr, n_params) in rates.seen.items():
        assert lr == pytest.approx(expected[e])
        assert n_params == len(list(resumed.model.parameters()))
    assert resumed.model.in_dlan_stage
    assert resumed.model.dlan.m == model.model.dlan.m  # M comes from the restored stage-1 clusterer
    assert resumed.timing["ac_seconds"] == pytest.approx(saved["dlan_ac_timing"]["ac_seconds"])


def test_the_autoencoder_alone_never_runs_the_clusterer_or_dlan(synthetic_root, tmp_path):
    """``use_dlan=False``: the paper's AE baseline, the same epochs, one schedule, no SOM, no stage switch."""
    model = DlanAc(**{**TINY_DLAN, "use_dlan": False})
    rates = LearningRates()
    engine = Engine(max_epochs=3, default_root_dir=tmp_path, logger=False, callbacks=[rates])
    datamodule = clip_datamodule(synthetic_root)
    engine.fit(model=model, datamodule=datamodule)
    assert not model.model.in_dlan_stage and model.stage_plan is None
    assert model.timing["som_seconds"] == 0.0 and int(model.model.clusterer.num_maps) == 0
    n_autoencoder = len(model.model.autoencoder_parameters())
    lrs = [rates.seen[e][0] for e in range(3)]
    assert lrs == pytest.approx([2e-4, 1.5e-4, 0.5e-4]) and all(rates.seen[e][1] == n_autoencoder for e in range(3))
    assert 0.0 <= engine.test(model=model, datamodule=datamodule)[0]["protocol_AUC_micro"] <= 1.0
