"""Train and test one model on the real UCSD Ped2 under the papers' protocol; write a results file.

Fixed epochs (from the model config, or ``--epochs``), no checkpoint chosen on test data: the model
after the last epoch is tested once. Reports the protocol AUC (per-video min-max, micro over all
frames; macro = mean per-video AUC), anomalib's pooled image AUROC, and train/test wall time.

    python -m benchmarks.ped2_accuracy --model mnad --profile lite
    python -m benchmarks.ped2_accuracy --model mnad --profile paper   # GPU (see gpu_paper_run.py)

``--fast`` turns on the options that change the speed of training, not its mathematics (the models'
``FAST_OPTIONS``, the datamodule's ``device_clips``); the results file records them. ``--budget-minutes``
stops a run whose measured epochs would not fit (the run is then not tested; a ``stopped_*`` file
records the measured rate). The results file stores the settings the run trained with
(``run_settings``: the config's model ``init_args`` and ``trainer`` values, the overrides applied, the
data and trainer options).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import time
from pathlib import Path

import yaml
from lightning.pytorch import Callback

from benchmarks.common import (
    REPO,
    commit,
    config_path,
    ensure_ped2,
    epoch_logger,
    init_args_of,
    model_class,
    model_settings,
    record,
)

#: Datamodule options of ``--fast``: speed only (the same batches).
FAST_DATA_OPTIONS = {"device_clips": True}
#: Model options of ``--fast``: speed only (compiled steps, fused optimiser; the same mathematics).
FAST_MODEL_OPTIONS = {"compile": True}
#: Model options every accuracy run turns on where the model has them: evaluation only (CDDA's
#: zero-weight diagnostic cues, for the per-cue AUCs; the fused score and the training are unchanged).
EVALUATION_MODEL_OPTIONS = {"diagnostic_cues": True}

logger = logging.getLogger("ped2_accuracy")
EXPONENT_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")

# What the papers report for Ped2 beside the AUC, stored next to the measured values.
PAPER_FACTS = {
    "mnad": {"auc_micro": 97.0},
    "dlan_ac": {"auc_micro": 97.6, "num_prototypes_m": 13},
    "lgn_net": {"auc_micro": 97.1},
    "apn": {"auc_micro_smoothed_multiscale": 98.2, "auc_micro_smoothed_single_scale": 96.5},
    "cdda": {"auc_micro": 96.5},
}
# Train batch of the paper profiles (the lite default is 4: faster per clip on a 2-core CPU).
PAPER_BATCH = {"mnad": 4, "dlan_ac": 8, "lgn_net": 8, "apn": 4, "cdda": 4}


def model_config(model: str, profile: str) -> Path:
    path = config_path(model, profile)
    if not path.is_file():
        raise SystemExit(f"No config {path}")
    return path


def parse_model_args(items: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs of ``--set`` as a dict, each value parsed as YAML (``[256,256]``, ``16``, ``kaiming``).

    Raises:
        SystemExit: an item without ``=`` or with an empty name.
    """
    parsed: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--set expects NAME=VALUE, got {item!r}")
        parsed_value = yaml.safe_load(value)
        if isinstance(parsed_value, str) and EXPONENT_FLOAT.fullmatch(parsed_value.strip()):
            parsed_value = float(parsed_value)  # YAML 1.1 reads ``5e-4`` (no dot) as a string
        parsed[name.strip()] = parsed_value
    return parsed


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnad", help="snake name: mnad, dlan_ac, lgn_net, apn, cdda")
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--epochs", type=int, default=None, help="override the config's trainer.max_epochs")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="train batch (default: 4 for lite, the paper's for paper)"
    )
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0, help="0 keeps the frame cache alive across epochs")
    parser.add_argument(
        "--no-frame-cache", action="store_true", help="decode every clip from disk (anomalib's reader; slower)"
    )
    parser.add_argument("--data-root", type=Path, default=None, help="anomalib UCSDped root (default: materialise)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs")
    parser.add_argument("--seed", type=int, default=None, help="override the config's model seed (repeat runs)")
    parser.add_argument(
        "--precision",
        default=None,
        help="Lightning training precision, e.g. bf16-mixed (default: the config's trainer.precision, else 32-true);"
        " scores are computed in FP32 either way",
    )
    parser.add_argument(
        "--set",
        dest="model_args",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one of the model config's init_args (VALUE parsed as YAML), e.g. --set image_size=[256,256];"
        " repeatable. Such a run is a trial: it is recorded with its overrides and kept out of the generated tables",
    )
    parser.add_argument("--tag", default="", help="suffix for the results file name")
    parser.add_argument("--fast", action="store_true", help="speed-only options (compiled steps, clips on the device)")
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop (untested) a run that would not fit")
    parser.add_argument("--out", type=Path, default=None, help="also copy the results file here (a GPU run's $OUT)")
    parser.add_argument("--commit", dest="commit_override", default=None, help="the commit (where git is absent)")
    parser.add_argument("--data-copy", default="ucsd_ped2_compact", help="which copy of Ped2 (recorded)")
    args = parser.parse_args(argv)
    model_overrides = parse_model_args(args.model_args)
    if model_overrides and not args.tag:
        parser.error("--set makes a trial run: give it a --tag so that its results file does not pose as the profile's")
    started_on = args.commit_override or commit()  # the code at start; edits during a long run do not count
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from anomalib.engine import Engine
    from anomalib.models.components import AnomalibModule

    from anomalib_vadproto import LocalUCSDped

    cfg_path = model_config(args.model, args.profile)
    cfg = yaml.safe_load(cfg_path.read_text())
    epochs = args.epochs or int(cfg.get("trainer", {}).get("max_epochs", 1))
    precision = str(args.precision or cfg.get("trainer", {}).get("precision", "32-true"))
    batch = args.batch_size or (PAPER_BATCH.get(args.model, 4) if args.profile == "paper" else 4)
    root = args.data_root or ensure_ped2()

    overrides = {f"model.init_args.{name}": value for name, value in model_overrides.items()}
    if args.seed is not None:
        overrides["model.init_args.seed"] = args.seed
    configured = model_class(cfg["model"]["class_path"])  # the class only: no model built twice
    evaluation = supported_options(configured, EVALUATION_MODEL_OPTIONS)
    overrides.update({f"model.init_args.{name}": value for name, value in evaluation.items()})
    fast_model = fast_data = {}
    if args.fast:
        fast_model = supported_options(configured, FAST_MODEL_OPTIONS)
        fast_data = supported_options(LocalUCSDped, FAST_DATA_OPTIONS)
        overrides.update({f"model.init_args.{name}": value for name, value in fast_model.items()})
    model = AnomalibModule.from_config(cfg_path, **overrides)
    datamodule = LocalUCSDped(
        **fast_data,
        cache_frames=not args.no_frame_cache,
        root=root,
        category="UCSDped2",
        clip_length_in_frames=model.clip_length,
        frames_between_clips=1,
        target_frame="last",
        train_batch_size=batch,
        eval_batch_size=args.eval_batch_size,
        num_workers=args.num_workers,
    )
    work = args.work_dir / f"{args.model}_{args.profile}"
    timer = epoch_logger()
    guard = BudgetGuard(args.budget_minutes) if args.budget_minutes else None
    engine = Engine(
        max_epochs=epochs,
        precision=precision,
        check_val_every_n_epoch=epochs,
        default_root_dir=work,
        logger=False,
        callbacks=[timer] + ([guard] if guard else []),
    )
    model.visualizer = None  # thousands of PNGs are not the point of an accuracy run

    t0 = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    train_seconds = time.perf_counter() - t0
    run_facts = {
        "config": str(cfg_path.relative_to(REPO)),
        "data_copy": args.data_copy,
        "fast_options": {**fast_model, **fast_data},
        "evaluation_options": evaluation,
        "train_batch_size": batch,
        "precision": precision,
    }
    run_settings = {
        "models": {
            args.model: {
                **model_settings(
                    args.model, args.profile, {key.removeprefix("model.init_args."): v for key, v in overrides.items()}
                ),
                "model_init_args": init_args_of(model),  # what the model was built with: config and overrides
            }
        },
        "data": {
            "class": type(datamodule).__name__,
            "cache_frames": not args.no_frame_cache,
            "train_batch_size": batch,
            "eval_batch_size": args.eval_batch_size,
            "num_workers": args.num_workers,
            **fast_data,
        },
        "engine": {"max_epochs": epochs, "precision": precision},
    }
    recorded = {"module": __spec__.name, "argv": argv, "settings": run_settings, "started_on": started_on}
    if guard is not None and guard.stopped is not None:  # not the profile's model: never tested
        stopped = {"kind": "stopped", "model": args.model, "profile": args.profile, "epochs": epochs,
                   **run_facts, **guard.stopped, "epoch_seconds": timer.epoch_seconds}  # fmt: skip
        path = record(f"stopped_{args.model}_{args.profile}_ped2", stopped, **recorded)
        copy_out(path, args.out)
        logger.error("stopped by the budget after epoch %d: %s", guard.stopped["epochs_done"], path)
        return path
    t0 = time.perf_counter()
    metrics = engine.test(model=model, datamodule=datamodule)[0]
    test_seconds = time.perf_counter() - t0

    result = model.protocol_result
    from anomalib_vadproto.visualization import plot_protocol_result

    curves = plot_protocol_result(result, work / "score_curves")  # one PNG per test video, for a person to look at
    logger.info("score curves: %s", curves[0].parent if curves else "none")
    accuracy = {
        "kind": "accuracy",
        "model": args.model,
        "profile": args.profile,
        "dataset": "ucsd_ped2",
        "epochs": epochs,
        **run_facts,
        "frame_cache": not args.no_frame_cache,
        "num_workers": args.num_workers,
        "seed": model.hparams.get("seed"),  # the seed the model was built with (--seed, --set seed=N or the config's)
        "model_overrides": model_overrides,
        "protocol_auc_micro": round(100 * float(metrics["protocol_AUC_micro"]), 2),
        "protocol_auc_macro": round(100 * float(metrics["protocol_AUC_macro"]), 2),
        **{  # APN: the protocol with the other smoothing setting (the code's 15-tap Gaussian)
            key.replace("protocol_", "protocol_auc_").replace("_AUC_", "_").lower(): round(100 * float(value), 2)
            for key, value in metrics.items()
            if key.startswith(("protocol_smoothed_", "protocol_unsmoothed_"))
        },
        "cue_protocol_auc": {  # each cue alone (diagnostic; the fused score keeps the paper's weights)
            name: {"micro": round(100 * micro, 2), "macro": round(100 * macro, 2)}
            for name, (micro, macro) in result.cue_auc().items()
        },
        "pooled_auroc": round(100 * float(metrics["image_AUROC"]), 2),
        # the border handling of the smoothed figure (APN)
        **(
            {"smoothing_mode": model.protocol_other.smoothing_mode}
            if getattr(model, "protocol_other", None) is not None
            else {}
        ),
        "pixel_auroc": round(100 * float(metrics.get("pixel_AUROC", float("nan"))), 2),
        "scored_frames": int(result.num_frames),
        "test_videos": len(result.video_names),
        "per_video_auc": {
            Path(n).name: (None if a != a else round(100 * float(a), 2))
            for n, a in zip(result.video_names, result.video_auc, strict=True)
        },
        "train_seconds": round(train_seconds, 1),
        "epoch_seconds": timer.epoch_seconds,
        "test_seconds": round(test_seconds, 1),
    }
    accuracy.update(getattr(model, "run_summary", dict)())  # model-specific facts (e.g. DLAN-AC's M, stage times)
    # DLAN-AC with its DLAN branch: how its soft assignment uses the kept clusters (none with use_dlan=False)
    if hasattr(model.model, "assignment_statistics") and getattr(model, "use_dlan", True):
        accuracy["test_assignment"] = test_assignment_statistics(model, datamodule)
    if args.model in PAPER_FACTS:
        accuracy["paper"] = PAPER_FACTS[args.model]
    tag = f"_{args.tag}" if args.tag else ""
    path = record(f"accuracy_{args.model}_{args.profile}_ped2{tag}", accuracy, **recorded)
    copy_out(path, args.out)
    logger.info(
        "protocol micro %.2f macro %.2f pooled %.2f -> %s",
        accuracy["protocol_auc_micro"],
        accuracy["protocol_auc_macro"],
        accuracy["pooled_auroc"],
        path,
    )
    return path


def test_assignment_statistics(model, datamodule) -> dict:  # noqa: ANN001
    """DLAN-AC's soft assignment over Ped2's test clips: entropy, mass on the kept clusters, mass per cluster.

    Location-weighted means over every test clip (each batch's statistics weighted by its locations);
    the model runs read-only in eval mode.
    """
    import numpy as np
    import torch

    totals: dict[str, float] = {}
    mass = None
    locations = 0
    with model.read_only_eval(), torch.no_grad():
        for batch in datamodule.test_dataloader():
            clip = batch.image.to(model.device)
            stats = model.model.assignment_statistics(model.pre_processor(clip) if model.pre_processor else clip)
            n = stats["num_locations"]
            for key in ("entropy", "entropy_normalised", "max_assignment", "kept_mass"):
                totals[key] = totals.get(key, 0.0) + n * stats[key]
            cluster = np.asarray(stats["cluster_mass"]) * n
            mass = cluster if mass is None else mass + cluster
            locations += n
    cluster_mass = mass / locations
    kept = int(stats["num_kept"])
    return {
        **{key: round(value / locations, 6) for key, value in totals.items()},
        "kept_cluster_mass": [round(float(v), 6) for v in cluster_mass[:kept]],
        "min_kept_cluster_mass": round(float(cluster_mass[:kept].min()), 6),
        "num_kept": kept,
        "num_clusters": int(stats["num_clusters"]),
        "num_locations": locations,
    }


def supported_options(target: object, options: dict[str, object]) -> dict[str, object]:
    """The ``options`` that ``target`` (a class, or an instance's class) takes in its constructor."""
    import inspect

    cls = target if isinstance(target, type) else type(target)
    parameters = inspect.signature(cls.__init__).parameters
    return {name: value for name, value in options.items() if name in parameters}


def copy_out(path: Path, out: Path | None) -> None:
    """Copy a results file into ``out`` (the folder a GPU run's files come back from)."""
    if out is not None and out.resolve() != path.parent.resolve():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / path.name)


def train_batch_size(trainer) -> int:  # noqa: ANN001
    """The training batch size of the trainer's datamodule."""
    return int(trainer.datamodule.train_batch_size)


class BudgetGuard(Callback):
    """Stop training when the measured epochs say the run (and its test) would not finish inside the budget.

    After each epoch: the time so far plus the remaining epochs at the last epoch's duration plus a test
    pass (estimated as one training epoch) must fit ``minutes`` counted from the start of ``fit``.
    """

    def __init__(self, minutes: float) -> None:
        self.seconds = 60 * minutes
        self.stopped: dict | None = None
        self._fit_start = self._epoch_start = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:  # noqa: ANN001, D102
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001, D102
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001, D102
        now = time.perf_counter()
        epoch = now - self._epoch_start
        done = trainer.current_epoch + 1
        projected = (now - self._fit_start) + (trainer.max_epochs - done + 1) * epoch
        if done < trainer.max_epochs and projected > self.seconds:
            trainer.should_stop = True
            self.stopped = {
                "epochs_done": done,
                "last_epoch_seconds": round(epoch, 1),
                "projected_minutes": round(projected / 60, 1),
                "budget_minutes": round(self.seconds / 60, 1),
                "clips_per_second": round(
                    trainer.num_training_batches * trainer.datamodule.train_batch_size / epoch, 1
                ),
            }


if __name__ == "__main__":
    main()
