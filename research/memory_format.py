"""Lite training steps on CPU with PyTorch's default (NCHW) and channels-last (NHWC) weights (and bf16).

Every model's lite profile trains through anomalib's ``Engine`` on the shared Ped2 data (frame cache,
batch 4, as ``ped2_accuracy.py``) for ``--warmup + --steps`` batches of its first epoch, once with
``channels_last_on_cpu = False`` and once with ``True`` (the default since this benchmark; see
``VideoModelMixin.use_preferred_memory_format``). The time per step covers data loading, the
pre-processor, the model's own training step and Lightning, i.e. what a lite epoch is made of. The
first epoch is the first stage for the staged models: CDDA's autoencoder pre-training and DLAN-AC's
Adaptive-Clusterer stage.

    python -m research.memory_format
    python -m research.memory_format --models apn,cdda --steps 30
    python -m research.memory_format --bf16    # also channels-last under ``precision="bf16-mixed"``
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchmarks.common import MODELS, commit, configured_epochs, ensure_ped2, model_settings, parse_models, record
from benchmarks.ped2_accuracy import model_config
from benchmarks.speed import ped2_datamodule


def seconds_per_step(
    name: str, channels_last: bool, warmup: int, steps: int, root: Path, precision: str = "32-true"
) -> float:
    """Mean wall-clock seconds of training steps ``warmup .. warmup + steps`` of the lite profile's first epoch."""
    import lightning.pytorch as pl
    from anomalib.engine import Engine
    from anomalib.models.components import AnomalibModule

    model = AnomalibModule.from_config(model_config(name, "lite"))
    model.channels_last_on_cpu = channels_last
    model.visualizer = None
    datamodule = ped2_datamodule(model, root, train_batch=4, eval_batch=8)  # as speed.py and ped2_accuracy.py

    class Clock(pl.Callback):
        start = end = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            if batch_idx == warmup:
                self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.end = time.perf_counter()
            trainer.should_stop = True  # one (truncated) epoch, whatever the profile's max_epochs

    clock = Clock()
    with tempfile.TemporaryDirectory() as work:
        engine = Engine(
            max_epochs=configured_epochs(name, "lite"),  # staged models refuse fewer than their first stage
            limit_train_batches=warmup + steps,
            precision=precision,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_progress_bar=False,
            callbacks=[clock],
            default_root_dir=work,
        )
        engine.fit(model=model, datamodule=datamodule)
    return (clock.end - clock.start) / steps


def main(argv: list[str] | None = None) -> Path:
    """Measure both layouts for every model and write ``speed_memory_format_*.json``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ",".join(MODELS))
    parser.add_argument(
        "--warmup", type=int, default=30, help="steps before the clock starts: every video decoded into the frame cache"
    )
    parser.add_argument("--steps", type=int, default=40, help="timed steps per model and layout")
    parser.add_argument(
        "--bf16", action="store_true", help="also time channels-last under Lightning's bf16-mixed training precision"
    )
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.WARNING)
    names = parse_models(args.models)
    root = ensure_ped2()
    rows = {}
    for name in names:
        nchw = seconds_per_step(name, False, args.warmup, args.steps, root)
        nhwc = seconds_per_step(name, True, args.warmup, args.steps, root)
        rows[name] = {
            "nchw_seconds_per_step": round(nchw, 4),
            "channels_last_seconds_per_step": round(nhwc, 4),
            "speedup": round(nchw / nhwc, 3),
            "time_saved_percent": round(100 * (1 - nhwc / nchw), 1),
        }
        print(f"{name}: NCHW {nchw:.3f} s, channels-last {nhwc:.3f} s per step ({rows[name]['speedup']:.2f}x)")
        if args.bf16:
            bf16 = seconds_per_step(name, True, args.warmup, args.steps, root, precision="bf16-mixed")
            rows[name]["channels_last_bf16_seconds_per_step"] = round(bf16, 4)
            rows[name]["bf16_speedup_over_channels_last"] = round(nhwc / bf16, 3)
            print(f"{name}: channels-last bf16-mixed {bf16:.3f} s per step ({nhwc / bf16:.2f}x over FP32)")
    result = {
        "kind": "speed",
        "model": ",".join(names),
        "profile": "lite_training_memory_format",
        "batch": "4 clips, lite profile sizes, Ped2 frame cache, first epoch",
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "models": rows,
    }
    run_settings = {
        "models": {name: model_settings(name, "lite") for name in names},
        "data": {"class": "LocalUCSDped", "cache_frames": True, "train_batch_size": 4, "num_workers": 0},
        "precisions": ["32-true", "bf16-mixed"] if args.bf16 else ["32-true"],
    }
    path = record(
        "speed_memory_format", result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on
    )
    print(path)
    return path


if __name__ == "__main__":
    main()
