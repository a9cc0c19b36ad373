"""Train and test one model on the real UCSD Ped2 under the papers' protocol; write a results file.

Fixed epochs (from the model config, or ``--epochs``), no checkpoint chosen on test data: the model
after the last epoch is tested once. Reports the protocol AUC (per-video min-max, micro over all
frames; macro = mean per-video AUC), anomalib's pooled image AUROC, and train/test wall time.

    python benchmarks/ped2_accuracy.py --model mnad --profile lite
    python benchmarks/ped2_accuracy.py --model mnad --profile paper   # GPU
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, commit, config_path, ensure_ped2, epoch_logger, write_result  # noqa: E402

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
    args = parser.parse_args(argv)
    model_overrides = parse_model_args(args.model_args)
    if model_overrides and not args.tag:
        parser.error("--set makes a trial run: give it a --tag so that its results file does not pose as the profile's")
    started_on = commit()  # the code that runs is the code at start; edits during a long run do not count
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
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
    model = AnomalibModule.from_config(cfg_path, **overrides)
    datamodule = LocalUCSDped(
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
    engine = Engine(
        max_epochs=epochs,
        precision=precision,
        check_val_every_n_epoch=epochs,
        default_root_dir=work,
        logger=False,
        callbacks=[timer],
    )
    model.visualizer = None  # thousands of PNGs are not the point of an accuracy run

    t0 = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = engine.test(model=model, datamodule=datamodule)[0]
    test_seconds = time.perf_counter() - t0

    result = model.protocol_result
    from anomalib_vadproto.visualization import plot_protocol_result

    curves = plot_protocol_result(result, work / "score_curves")  # one PNG per test video, for a person to look at
    logger.info("score curves: %s", curves[0].parent if curves else "none")
    record = {
        "kind": "accuracy",
        "commit": started_on,
        "model": args.model,
        "profile": args.profile,
        "dataset": "ucsd_ped2",
        "command": "python benchmarks/"
        + Path(__file__).name
        + " "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "config": str(cfg_path.relative_to(REPO)),
        "epochs": epochs,
        "train_batch_size": batch,
        "precision": precision,
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
        "torch_threads": torch.get_num_threads(),
    }
    record.update(getattr(model, "run_summary", dict)())  # model-specific facts (e.g. DLAN-AC's M, stage times)
    if args.model in PAPER_FACTS:
        record["paper"] = PAPER_FACTS[args.model]
    tag = f"_{args.tag}" if args.tag else ""
    path = write_result(record, f"accuracy_{args.model}_{args.profile}_ped2{tag}")
    logger.info(
        "protocol micro %.2f macro %.2f pooled %.2f -> %s",
        record["protocol_auc_micro"],
        record["protocol_auc_macro"],
        record["pooled_auroc"],
        path,
    )
    return path


if __name__ == "__main__":
    main()
