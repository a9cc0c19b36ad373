"""Train and test the five models under Lightning's DDP on the CPU (2 ranks, gloo); each rank records its state.

Run by ``tests/integration/test_ddp.py`` as ``python -m tests.integration.ddp_worker <data root> <out> [models]``
from the repository root: Lightning's DDP launcher runs this same command again for rank 1. For each model
every rank writes ``<out>/<model>/rank<r>.pt`` with

* ``trained``: the torch model's state after the last training batch, before validation (whose start
  broadcasts rank 0's buffers): memory items, SOM, k-means centres, weights;
* ``fitted``: the whole module's state after ``fit``;
* ``ckpt``: the checkpoint rank 0 wrote;
* ``test`` and ``scores``: the test metrics and the protocol's per-video scores of a DDP test of that checkpoint;
* ``val_samplers``/``test_samplers``: the samplers of the evaluation dataloaders Lightning used;
* ``predicted`` (MNAD): the anomaly scores of a DDP ``predict`` of the checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from anomalib.engine import Engine
from lightning.pytorch.callbacks import Callback

import anomalib_vadproto
from anomalib_vadproto.components import distributed
from tests.conftest import clip_datamodule

TINY = {"image_size": (32, 32), "grayscale": True, "seed": 0}
#: Model name -> init arguments of a tiny two-epoch run (the two-stage models switch after epoch 0).
MODELS: dict[str, dict[str, Any]] = {
    "Mnad": {**TINY, "width": 4},
    "LgnNet": {**TINY, "width": 4, "num_layers": 2},
    "Apn": {**TINY, "width": 4},
    "DlanAc": {**TINY, "width": 4, "ac_epochs": 1, "som_iterations": 100},
    "Cdda": {**TINY, "width": 2, "ae_epochs": 1, "num_clusters": 4, "kmeans_samples": 500, "kmeans_restarts": 1},
}
MAX_EPOCHS = 2


def build(name: str) -> Any:  # noqa: ANN401
    """A tiny model of the plugin's class ``name``."""
    return getattr(anomalib_vadproto, name)(**MODELS[name])


def _cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value.detach().cpu().clone() for key, value in state.items() if isinstance(value, torch.Tensor)}


class RecordTrainedState(Callback):
    """Keep the torch model's state after every training batch (the last one, before validation, is kept)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001, D102
        del trainer, outputs, batch, batch_idx
        self.state = _cpu(pl_module.model.state_dict())


def samplers(loaders: Any) -> list[str]:  # noqa: ANN401
    """Class names of the samplers of a trainer's evaluation dataloaders."""
    loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
    return [type(loader.sampler).__name__ for loader in loaders if loader is not None]


def wait_for_rank_zero(run_root: Path) -> None:
    """Let rank 0 create its anomalib version folder first, as when the DDP launcher starts the other ranks.

    The first model's ranks start one after the other; later models would otherwise race in anomalib's
    ``create_versioned_dir``.
    """
    if distributed.rank() == 0:
        return
    deadline = time.monotonic() + 120
    while not any(run_root.rglob("latest")) and time.monotonic() < deadline:
        time.sleep(0.05)


def run(name: str, root: Path, out: Path) -> None:
    """Train ``name`` under DDP, test its checkpoint under DDP, and write this rank's record."""
    wait_for_rank_zero(out / name / "run")
    record = RecordTrainedState()
    engine = Engine(
        max_epochs=MAX_EPOCHS,
        default_root_dir=out / name / "run",
        logger=False,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        enable_progress_bar=False,
        callbacks=[record],
    )
    datamodule = clip_datamodule(root)
    model = build(name)
    engine.fit(model=model, datamodule=datamodule)
    trainer = engine.trainer
    val_samplers = samplers(trainer.val_dataloaders)
    ckpt = distributed.broadcast_object(trainer.checkpoint_callback.best_model_path)
    fitted = _cpu(model.state_dict())
    results = engine.test(model=build(name), datamodule=datamodule, ckpt_path=ckpt)
    test_samplers = samplers(engine.trainer.test_dataloaders)
    tested = engine.model
    scores = {
        video: torch.tensor(values.tolist())
        for video, values in zip(tested.protocol_result.video_names, tested.protocol_result.scores, strict=True)
    }
    predicted = None
    if name == "Mnad":  # predict: replicated too, with the test-time memory updates in order
        batches = engine.predict(model=build(name), datamodule=datamodule, ckpt_path=ckpt)
        predicted = torch.cat([batch.pred_score.reshape(-1) for batch in batches])
    path = out / name / f"rank{distributed.rank()}.pt"
    torch.save(
        {
            "predicted": predicted,
            "world_size": distributed.world_size(),
            "trained": record.state,
            "fitted": fitted,
            "ckpt": ckpt,
            "test": results[0],
            "scores": scores,
            "val_samplers": val_samplers,
            "test_samplers": test_samplers,
        },
        path,
    )


def main(argv: list[str]) -> None:
    """``<data root> <out folder> [model ...]``: run the models (all five by default) one after another."""
    root, out = Path(argv[0]), Path(argv[1])
    for name in argv[2:] or list(MODELS):
        run(name, root, out)


if __name__ == "__main__":
    main(sys.argv[1:])
