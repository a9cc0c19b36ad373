"""Train one model on UCSD Ped2 with whole training videos held out; record its validation criteria.

The honest way to choose a setting (epochs, a learning rate, DLAN-AC's α, CDDA's candidates): train
each candidate on the training videos minus the held-out ones (``val_split_mode: from_train``), read
what validation reports on the held-out normal videos, and never look at the test set. This command
does not test at all: its results file holds only the held-out criteria (each cue's mean over the
held-out clips, e.g. ``val_psnr``; DLAN-AC's soft-assignment statistics on them) and training facts.

    python -m benchmarks.held_out --model dlan_ac --profile lite --set alpha=10 --tag alpha10

Compare candidates with the same ``--val-videos`` (default 2 of Ped2's 16: ``Train005``, ``Train013``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from benchmarks.common import REPO, commit, ensure_ped2, epoch_logger, init_args_of, model_class, model_settings, record
from benchmarks.ped2_accuracy import (
    EVALUATION_MODEL_OPTIONS,
    model_config,
    parse_model_args,
    supported_options,
    test_assignment_statistics,
)

logger = logging.getLogger("held_out")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnad", help="snake name: mnad, dlan_ac, lgn_net, apn, cdda")
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--epochs", type=int, default=None, help="override the config's trainer.max_epochs")
    parser.add_argument("--batch-size", type=int, default=4, help="train batch")
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--val-videos", type=int, default=2, help="training videos held out for validation")
    parser.add_argument("--data-root", type=Path, default=None, help="anomalib UCSDped root (default: materialise)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs")
    parser.add_argument("--seed", type=int, default=None, help="override the config's model seed")
    parser.add_argument(
        "--set", dest="model_args", action="append", default=[], metavar="NAME=VALUE",
        help="override one of the model config's init_args (VALUE parsed as YAML); repeatable",
    )  # fmt: skip
    parser.add_argument("--tag", default="", help="suffix for the results file name (the candidate)")
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from anomalib.engine import Engine
    from anomalib.models.components import AnomalibModule

    from anomalib_vadproto import LocalUCSDped

    cfg_path = model_config(args.model, args.profile)
    cfg = yaml.safe_load(cfg_path.read_text())
    epochs = args.epochs or int(cfg.get("trainer", {}).get("max_epochs", 1))
    model_overrides = parse_model_args(args.model_args)
    overrides = {f"model.init_args.{name}": value for name, value in model_overrides.items()}
    if args.seed is not None:
        overrides["model.init_args.seed"] = args.seed
    evaluation = supported_options(model_class(cfg["model"]["class_path"]), EVALUATION_MODEL_OPTIONS)
    model = AnomalibModule.from_config(
        cfg_path, **overrides, **{f"model.init_args.{name}": value for name, value in evaluation.items()}
    )
    model.visualizer = None
    datamodule = LocalUCSDped(
        cache_frames=True,
        root=args.data_root or ensure_ped2(),
        category="UCSDped2",
        clip_length_in_frames=model.clip_length,
        frames_between_clips=1,
        target_frame="last",
        train_batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        num_workers=0,
        val_split_mode="from_train",
        val_videos=args.val_videos,
    )
    timer = epoch_logger()
    engine = Engine(
        max_epochs=epochs,
        check_val_every_n_epoch=epochs,  # the model after the last epoch, as the profile's runs are judged
        default_root_dir=args.work_dir / f"{args.model}_{args.profile}_held_out",
        logger=False,
        callbacks=[timer],
    )
    t0 = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    train_seconds = time.perf_counter() - t0
    criteria = {
        name: float(f"{float(value):.6g}")  # six significant digits: CDDA's distances are about 1e-6
        for name, value in engine.trainer.callback_metrics.items()
        if name.startswith("val_")
    }
    result = {
        "kind": "held_out",
        "model": args.model,
        "profile": args.profile,
        "dataset": "ucsd_ped2",
        "epochs": epochs,
        "seed": model.hparams.get("seed"),
        "model_overrides": model_overrides,
        "evaluation_options": evaluation,
        "held_out_videos": list(datamodule.held_out_videos),
        "train_videos": len(datamodule.train_data.samples),
        "held_out_criteria": criteria,
        "train_seconds": round(train_seconds, 1),
        "epoch_seconds": timer.epoch_seconds,
    }
    if {"val_motion_error", "val_appearance_error"} <= set(criteria):  # CDDA: the spatial residual, relatively
        criteria["spatial_to_motion_error"] = round(criteria["val_appearance_error"] / criteria["val_motion_error"], 4)
    result.update(getattr(model, "run_summary", dict)())
    if hasattr(model.model, "spatial_encoder"):  # CDDA: how many channels of the appearance code are alive
        result["held_out_live_code_channels"] = live_code_channels(model, datamodule.val_dataloader())
    if hasattr(model.model, "assignment_statistics") and getattr(model, "use_dlan", True):  # DLAN-AC with DLAN
        result["held_out_assignment"] = test_assignment_statistics(
            model, SimpleNamespace(test_dataloader=datamodule.val_dataloader)
        )
    configured = {key.removeprefix("model.init_args."): value for key, value in overrides.items()}
    settings = {
        "models": {
            args.model: {
                **model_settings(args.model, args.profile, configured),
                "model_init_args": init_args_of(model),
            }
        },
        "data": {"class": "LocalUCSDped", "val_split_mode": "from_train", "val_videos": args.val_videos,
                 "train_batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size},
        "engine": {"max_epochs": epochs},
    }  # fmt: skip
    tag = f"_{args.tag}" if args.tag else ""
    path = record(
        f"held_out_{args.model}_{args.profile}_ped2{tag}",
        result,
        module=__spec__.name if __spec__ else "benchmarks.held_out",
        argv=argv,
        settings=settings,
        started_on=started_on,
    )
    logger.info("held-out criteria %s -> %s", criteria, path)
    return path


def live_code_channels(model, dataloader) -> dict[str, int]:  # noqa: ANN001
    """Channels of CDDA's appearance code (ReLU, before normalisation) that are positive somewhere in ``dataloader``."""
    import torch

    from anomalib_vadproto.components.clip import split_clip
    from anomalib_vadproto.components.scores import to_unit_range

    net, alive = model.model, None
    with model.read_only_eval(), torch.no_grad():
        for batch in dataloader:
            clip = model.pre_processor(batch.image.to(model.device))
            _, last = split_clip(to_unit_range(clip), net.num_inputs)  # the model's [0, 1] last frame
            code, _ = net.spatial_encoder.encode(last)
            seen = code.amax(dim=(0, 2, 3)) > 0
            alive = seen if alive is None else alive | seen
    return {"alive": int(alive.sum()), "channels": int(alive.numel())}


if __name__ == "__main__":
    main()
