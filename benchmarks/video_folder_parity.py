"""One checkpoint, two datamodules: UCSD Ped2 through ``VideoFolder`` gives the AUC ``LocalUCSDped`` gives.

``VideoFolder`` is what a user points at a folder of their own recordings; ``LocalUCSDped`` reads
anomalib's Ped2 layout (``.tif`` frames, ``.bmp`` masks). This command lays the shared compact Ped2
copy (``videos/TrainNNN.mp4``, ``videos/TestNNN.mp4``: H.264 lossless grey; ``frame_labels/TestNNN.npy``)
out as a plain video folder (symbolic links, no copies), runs ``Engine.test`` with the same weights
through both datamodules, and records the papers' protocol AUCs, anomalib's ``image_AUROC`` and the
largest difference between the two runs' per-frame fused scores, matched by video and frame. The
weights are a checkpoint (``--ckpt``, e.g. a lite MNAD of ``benchmarks.ped2_accuracy``) or, without
one, a short training here (``--epochs`` on the first ``--train-videos``, the last of which is held out
to fit the thresholds, so that validation does not run over the test set): equality of the two AUCs on
the same weights is the point, not a good AUC.

    python -m benchmarks.video_folder_parity                                   # 1 epoch on 2 videos, all 12 tested
    python -m benchmarks.video_folder_parity --ckpt <run>/weights/lightning/model.ckpt
    python -m benchmarks.video_folder_parity --test-videos Test001,Test004    # a quicker check

Writes ``benchmarks/results/video_folder_parity_<model>_<profile>_<UTC time>.json``; exits with status 1
when the AUCs differ by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    PED2_COMPACT,
    REPO,
    commit,
    config_path,
    ensure_ped2,
    init_args_of,
    model_settings,
    record,
    shown_path,
)

logger = logging.getLogger("video_folder_parity")


def link(target: Path, link_path: Path) -> None:
    """A symbolic link ``link_path`` -> ``target`` (a copy where links are not allowed)."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        return
    try:
        link_path.symlink_to(target.resolve(), target_is_directory=target.is_dir())
    except OSError:
        (shutil.copytree if target.is_dir() else shutil.copy2)(target, link_path)


def video_folder_layout(compact: Path, train: list[str], test: list[str], root: Path) -> Path:
    """Lay the compact copy's mp4 files and frame labels out as ``VideoFolder`` reads them; return ``root``."""
    for name in train:
        link(compact / "videos" / f"{name}.mp4", root / "train" / f"{name}.mp4")
    for name in test:
        link(compact / "videos" / f"{name}.mp4", root / "test" / f"{name}.mp4")
        link(compact / "frame_labels" / f"{name}.npy", root / "ground_truth" / f"{name}.npy")
    return root


def ucsd_layout(ped2_root: Path, train: list[str], test: list[str], root: Path) -> Path:
    """An anomalib UCSDped root holding only the chosen videos (symbolic links to ``ped2_root``)."""
    source = ped2_root / "UCSDped2"
    for name in train:
        link(source / "Train" / name, root / "UCSDped2" / "Train" / name)
    for name in test:
        for folder in (name, f"{name}_gt"):
            link(source / "Test" / folder, root / "UCSDped2" / "Test" / folder)
    return root


def build_model(model: str, profile: str, ckpt: Path | None, overrides: dict[str, Any]) -> Any:  # noqa: ANN401
    """The profile's model, with the checkpoint's weights when one is given."""
    from anomalib.models.components import AnomalibModule

    module = AnomalibModule.from_config(
        config_path(model, profile), **{f"model.init_args.{k}": v for k, v in overrides.items()}
    )
    if ckpt is not None:
        module = type(module).load_from_checkpoint(ckpt, map_location="cpu")
    module.visualizer = None
    return module


def scores_of_test(engine: Any, module: Any, datamodule: Any) -> dict[str, Any]:  # noqa: ANN401
    """``Engine.test``: the protocol AUCs, anomalib's metrics and every video's fused scores (by video stem)."""
    started = time.perf_counter()
    (metrics,) = engine.test(model=module, datamodule=datamodule, verbose=False)
    result = module.protocol_result
    return {
        "protocol_AUC_micro": float(result.micro),
        "protocol_AUC_macro": float(result.macro),
        "image_AUROC": float(metrics["image_AUROC"]) if "image_AUROC" in metrics else None,
        "scored_frames": int(sum(len(s) for s in result.scores)),
        "test_seconds": round(time.perf_counter() - started, 1),
        "scores": {
            Path(name).stem: (np.asarray(frames), np.asarray(scores))
            for name, frames, scores in zip(result.video_names, result.frame_indices, result.scores, strict=True)
        },
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, int]:
    """Largest abs difference of the fused scores of the frames both runs scored, and how many frames that is.

    Raises:
        ValueError: If the runs scored different videos or frames.
    """
    if sorted(a) != sorted(b):
        msg = f"The runs scored different videos: {sorted(a)} and {sorted(b)}"
        raise ValueError(msg)
    largest, frames = 0.0, 0
    for name, (frames_a, scores_a) in a.items():
        frames_b, scores_b = b[name]
        if not np.array_equal(frames_a, frames_b):
            msg = f"The runs scored different frames of {name}"
            raise ValueError(msg)
        largest = max(largest, float(np.max(np.abs(scores_a - scores_b), initial=0.0)))
        frames += len(frames_a)
    return largest, frames


def main(argv: list[str] | None = None) -> Path:
    """Run the comparison and write the results file; exit with status 1 if the AUCs differ."""
    from benchmarks.ped2_accuracy import parse_model_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnad", help="snake name: mnad, dlan_ac, lgn_net, apn, cdda")
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--ckpt", type=Path, default=None, help="trained checkpoint (default: train here)")
    parser.add_argument("--epochs", type=int, default=1, help="without --ckpt: epochs to train (default: 1)")
    parser.add_argument(
        "--train-videos", type=int, default=3, help="without --ckpt: training videos, the last held out (default: 3)"
    )
    parser.add_argument("--test-videos", default="all", help="comma-separated TestNNN names, or all (default)")
    parser.add_argument("--compact", type=Path, default=PED2_COMPACT, help="the compact Ped2 copy (mp4 + labels)")
    parser.add_argument("--ped2-root", type=Path, default=None, help="anomalib UCSDped root (default: materialise)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "video_folder_parity")
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest AUC difference counted as equal")
    parser.add_argument(
        "--set", dest="model_args", action="append", default=[], metavar="NAME=VALUE",
        help="override one of the model config's init_args (VALUE parsed as YAML); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from anomalib.engine import Engine

    from anomalib_vadproto import LocalUCSDped, VideoFolder

    videos = sorted(p.stem for p in (args.compact / "videos").glob("*.mp4"))
    if not videos:
        raise SystemExit(f"No videos/*.mp4 in {args.compact}: the compact Ped2 copy is expected there.")
    trains = [v for v in videos if v.startswith("Train")][: max(1, args.train_videos)]
    all_tests = [v for v in videos if v.startswith("Test")]
    tests = all_tests if args.test_videos == "all" else [v.strip() for v in args.test_videos.split(",") if v.strip()]
    unknown = sorted(set(tests) - set(all_tests))
    if unknown or not tests:
        raise SystemExit(f"Unknown test videos {unknown or tests}; the compact copy has {all_tests}.")
    ped2_root = args.ped2_root or ensure_ped2()
    work = args.work_dir
    if work.exists():
        shutil.rmtree(work)
    folder_root = video_folder_layout(args.compact, trains, tests, work / "ped2_folder")
    ucsd_root = ucsd_layout(ped2_root, trains, tests, work / "ped2_ucsd")

    overrides = parse_model_args(args.model_args)
    module = build_model(args.model, args.profile, args.ckpt, overrides)
    clips = {"clip_length_in_frames": module.clip_length, "frames_between_clips": 1, "target_frame": "last"}
    common = {**clips, "train_batch_size": 4, "eval_batch_size": args.eval_batch_size, "num_workers": 0}
    ucsd = LocalUCSDped(root=ucsd_root, category="UCSDped2", cache_frames=True, **common)
    folder = VideoFolder(root=folder_root, cache_frames=True, **common)
    engine = Engine(max_epochs=args.epochs, default_root_dir=work / "runs", logger=False)
    train_seconds = None
    trained = trains[:-1] if len(trains) > 1 else trains
    if args.ckpt is None:
        # Validation (the post-processor's thresholds) on a held-out training video, not on a copy of the test set.
        held_out = {"val_split_mode": "from_train", "val_videos": [trains[-1]]} if len(trains) > 1 else {}
        fit_data = LocalUCSDped(root=ucsd_root, category="UCSDped2", cache_frames=True, **held_out, **common)
        started = time.perf_counter()
        engine.fit(model=module, datamodule=fit_data)
        train_seconds = round(time.perf_counter() - started, 1)

    runs = {"LocalUCSDped": scores_of_test(engine, module, ucsd), "VideoFolder": scores_of_test(engine, module, folder)}
    largest, frames = compare(runs["LocalUCSDped"].pop("scores"), runs["VideoFolder"].pop("scores"))
    micro_diff = abs(runs["LocalUCSDped"]["protocol_AUC_micro"] - runs["VideoFolder"]["protocol_AUC_micro"])
    macro_diff = abs(runs["LocalUCSDped"]["protocol_AUC_macro"] - runs["VideoFolder"]["protocol_AUC_macro"])
    equal = max(micro_diff, macro_diff) <= args.tolerance
    result = {
        "kind": "video_folder_parity",
        "model": args.model,
        "profile": args.profile,
        "dataset": "ucsd_ped2",
        "weights": shown_path(args.ckpt) if args.ckpt else f"trained here: {args.epochs} epoch(s) on {trained}",
        "held_out_for_validation": None if args.ckpt or len(trains) < 2 else trains[-1],
        "train_seconds": train_seconds,
        "test_videos": tests,
        "runs": runs,
        "protocol_AUC_micro_difference": micro_diff,
        "protocol_AUC_macro_difference": macro_diff,
        "max_abs_fused_score_difference": largest,
        "frames_compared": frames,
        "tolerance": args.tolerance,
        "equal": equal,
    }
    model_entry = {**model_settings(args.model, args.profile, overrides), "model_init_args": init_args_of(module)}
    settings = {
        "models": {args.model: model_entry},
        "data": {**clips, "eval_batch_size": args.eval_batch_size, "cache_frames": True},
    }
    path = record(
        f"video_folder_parity_{args.model}_{args.profile}",
        result,
        module=__spec__.name if __spec__ else "benchmarks.video_folder_parity",
        argv=argv,
        settings=settings,
        started_on=started_on,
    )
    logger.info(
        "protocol micro AUC: LocalUCSDped %.6f, VideoFolder %.6f (difference %.2g, largest score difference %.2g"
        " over %d frames) -> %s",
        runs["LocalUCSDped"]["protocol_AUC_micro"],
        runs["VideoFolder"]["protocol_AUC_micro"],
        micro_diff,
        largest,
        frames,
        path,
    )
    if not equal:
        raise SystemExit(f"The AUCs differ by more than {args.tolerance}: {path}")
    return path


if __name__ == "__main__":
    main()
