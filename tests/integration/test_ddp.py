"""Every model under Lightning's DDP: 2 CPU ranks (gloo), tiny models, the synthetic dataset.

One launch of ``tests.integration.ddp_worker`` (``strategy="ddp"``, as ``anomalib train --trainer.strategy ddp``
runs) trains each model for two epochs (the two-stage models switch after the first) and tests its checkpoint
under DDP; every rank records its state and results. The tests then check that

* every rank holds the same training state (memory items, SOM weights and ``M``, k-means centres, weights),
  recorded after the last training batch, before anything is broadcast for the evaluation;
* the evaluation is replicated (every rank scores every clip) and gives the same scores on every rank;
* the DDP test of the checkpoint gives exactly the scores and AUCs of a single-process test of it;
* the run leaves one anomalib version folder, rank 0's, which ``latest`` points at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine

from tests.conftest import clip_datamodule
from tests.integration.ddp_worker import MODELS, build

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: Buffers that are each rank's own until DDP broadcasts rank 0's (batch-norm statistics of the last step).
PER_RANK_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
#: State that the synchronisation of each model must keep identical (beside the weights, which DDP keeps).
SYNCHRONISED = {
    "Mnad": ("memory.items",),
    "LgnNet": ("memory.items",),
    "Apn": (),
    "DlanAc": ("clusterer.weights", "clusterer.m", "clusterer.win_counts", "dlan.centres", "stage"),
    "Cdda": ("clusters.motion.centres", "clusters.appearance.centres", "stage"),
}


@pytest.fixture(scope="module")
def ddp_run(synthetic_root, tmp_path_factory) -> Path:
    """Run the worker once for the five models; return its output folder."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tests.integration.ddp_worker", str(synthetic_root), str(out)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def records(out: Path, name: str) -> tuple[dict, dict]:
    """Rank 0's and rank 1's records of model ``name``."""
    return tuple(torch.load(out / name / f"rank{r}.pt", weights_only=False) for r in (0, 1))  # type: ignore[return-value]


def assert_same_state(first: dict, second: dict, skip: tuple[str, ...] = ()) -> None:
    assert first.keys() == second.keys()
    different = [
        key
        for key in first
        if not key.endswith(skip)
        and not (first[key].shape == second[key].shape and torch.equal(first[key], second[key]))
    ]
    assert not different, f"the ranks differ in {different}"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_rank_holds_the_same_state(ddp_run, name):
    rank0, rank1 = records(ddp_run, name)
    assert rank0["world_size"] == rank1["world_size"] == 2
    trained = rank0["trained"]
    assert trained, "no training batch recorded"
    for key in SYNCHRONISED[name]:
        assert key in trained, key
    # after the last training batch: everything but each rank's batch-norm statistics
    assert_same_state(trained, rank1["trained"], skip=PER_RANK_BUFFERS)
    # after fit: everything, the batch-norm statistics too (every rank takes the checkpoint's)
    assert_same_state(rank0["fitted"], rank1["fitted"])
    if name in ("DlanAc", "Cdda"):  # both stages ran: M and the centres came from the synchronised stage 1
        assert int(trained["stage"]) == 1
    if name == "DlanAc":
        assert int(trained["dlan.num_kept"]) == int(trained["clusterer.m"]) >= 1


@pytest.mark.parametrize("name", list(MODELS))
def test_ddp_test_equals_a_single_process_test_of_the_checkpoint(ddp_run, name, synthetic_root, tmp_path):
    rank0, rank1 = records(ddp_run, name)
    # every rank scored the whole test set, in order, with the same state
    assert rank0["val_samplers"] == rank0["test_samplers"] == ["ReplicatedSampler"]
    assert rank0["test"] == rank1["test"]
    assert rank0["scores"].keys() == rank1["scores"].keys()
    assert all(torch.equal(rank0["scores"][video], rank1["scores"][video]) for video in rank0["scores"])

    # the DDP-trained checkpoint in a single process: the same numbers
    model = build(name)
    engine = Engine(logger=False, default_root_dir=tmp_path, accelerator="cpu", devices=1, enable_progress_bar=False)
    results = engine.test(model=model, datamodule=clip_datamodule(synthetic_root), ckpt_path=rank0["ckpt"])[0]
    result = model.protocol_result
    single = {
        video: torch.tensor(scores.tolist()) for video, scores in zip(result.video_names, result.scores, strict=True)
    }
    assert single.keys() == rank0["scores"].keys()
    assert sum(len(scores) for scores in single.values()) == 24  # 2 test videos of 16 frames, 12 clips each
    for video, scores in single.items():
        torch.testing.assert_close(rank0["scores"][video], scores, rtol=0, atol=1e-6)
    if name == "Mnad":  # predict is replicated too: every clip on every rank, the single-process scores
        assert rank0["predicted"].shape == (24,) and torch.equal(rank0["predicted"], rank1["predicted"])
        predicted = engine.predict(
            model=build(name), datamodule=clip_datamodule(synthetic_root), ckpt_path=rank0["ckpt"]
        )
        single_predicted = torch.cat([batch.pred_score.reshape(-1) for batch in predicted])
        torch.testing.assert_close(rank0["predicted"], single_predicted, rtol=0, atol=1e-6)
    assert rank0["test"].keys() == results.keys()
    for key, value in results.items():  # the protocol's AUCs and anomalib's image and pixel metrics
        assert rank0["test"][key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("name", ["Mnad", "DlanAc"])
def test_ddp_validation_fits_the_single_process_thresholds(ddp_run, name, synthetic_root, tmp_path):
    """The post-processor's thresholds and bounds in the DDP checkpoint are a single-process validation's."""
    rank0, _ = records(ddp_run, name)
    saved = torch.load(rank0["ckpt"], weights_only=False)["state_dict"]
    model = build(name)
    model.use_preferred_memory_format()  # channels-last weights, as in a fit's validation (validate alone keeps them)
    engine = Engine(logger=False, default_root_dir=tmp_path, accelerator="cpu", devices=1, enable_progress_bar=False)
    engine.validate(model=model, datamodule=clip_datamodule(synthetic_root), ckpt_path=rank0["ckpt"])
    fitted = {f"post_processor.{key}": value for key, value in model.post_processor.state_dict().items()}
    assert fitted and fitted.keys() <= saved.keys()
    for key, value in fitted.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", list(MODELS))
def test_one_version_folder_with_the_checkpoint(ddp_run, name):
    rank0, _ = records(ddp_run, name)
    ckpt = Path(rank0["ckpt"])
    assert ckpt.is_file()
    run_root = ckpt.parents[2]  # <root>/<Model>/LocalUCSDped/synthetic/v<N>/weights/lightning/model.ckpt
    versions = sorted(path.name for path in run_root.parent.iterdir() if path.name != "latest")
    assert versions == [run_root.name]
    assert (run_root.parent / "latest").resolve() == run_root.resolve()
