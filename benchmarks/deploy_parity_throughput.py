"""Deployment on real video: `anomalib-vadproto score` against `anomalib test`, its speed, streaming AUC.

For one trained model (default: the newest lite run of ``ped2_accuracy.py``):

1. **Export** the checkpoint to OpenVINO FP32 at Ped2's frame size (240x360): the graph then resizes to
   the model's image size itself, with the Lightning pre-processor's transform.
2. **Parity**: score the compact Ped2 mp4 files (``--videos``, default Test004) with the file command's
   code path (``score_source``: PyAV decoding, clip buffer, OpenVINO, normalisation), and run
   ``Engine.test`` on the same videos' ``.tif`` frames (``LocalUCSDped`` with the frame cache) with the
   model read-only, as exported. Reports the max abs difference of per-frame scores under the papers'
   offline per-video min-max fusion and of anomalib's validation-bound ``pred_score`` (target ≤ 1e-4),
   and, for information, how far the stateful Lightning test (test-time memory updates) is from it.
3. **Throughput** of the file command's loop (decode + buffer + inference + normalisation) in frames per
   second at each ``--batch-sizes``, plus decoding alone.
4. **Streaming AUC** (unless ``--no-auc``): micro/macro frame AUC on the Ped2 test videos
   (``--auc-videos``, default all 12) under the offline protocol and the causal normalisers
   (running min-max, running mean ± 3 std, validation bounds), on the frames every normaliser scores
   (the running ones skip ``--warmup`` frames per video), and offline on all scored frames.

    python -m benchmarks.deploy_parity_throughput --model mnad
    python -m benchmarks.deploy_parity_throughput --model mnad --quick    # smoke: one repeat, 2 AUC videos
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
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

logger = logging.getLogger("deploy")
PED2_SIZE = (240, 360)
TEST_VIDEOS = tuple(f"Test{i:03d}" for i in range(1, 13))
NORMALIZATIONS = ("offline", "running", "running-std", "validation")


def default_checkpoint(model: str, profile: str) -> Path:
    """The newest ``latest`` checkpoint of ``ped2_accuracy.py`` for this model and profile."""
    found = sorted(
        (REPO / ".cache" / "runs" / f"{model}_{profile}").glob("*/*/*/latest/weights/lightning/model.ckpt"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise SystemExit(
            f"No checkpoint under .cache/runs/{model}_{profile}: run `python -m benchmarks.ped2_accuracy"
            f" --model {model} --profile {profile}` first, or pass --checkpoint."
        )
    return found[-1]


def load_module(model: str, profile: str, checkpoint: Path):  # noqa: ANN201
    from anomalib.models.components import AnomalibModule

    module = AnomalibModule.from_config(config_path(model, profile))
    module = type(module).load_from_checkpoint(checkpoint, map_location="cpu")
    module.visualizer = None
    return module.eval()


def subset_root(ped2_root: Path, videos: list[str], work: Path) -> Path:
    """An anomalib UCSDped root whose test split holds only ``videos`` (symbolic links, no copies)."""
    source = ped2_root / "UCSDped2"
    root = work / "ped2_subset"
    (root / "UCSDped2" / "Train").mkdir(parents=True, exist_ok=True)
    (root / "UCSDped2" / "Test").mkdir(parents=True, exist_ok=True)
    (root / "UCSDped2" / "Train" / "Train001").symlink_to(source / "Train" / "Train001")
    for video in videos:
        for name in (video, f"{video}_gt"):
            (root / "UCSDped2" / "Test" / name).symlink_to(source / "Test" / name)
    return root


def lightning_scores(module, root: Path, work: Path, read_only: bool) -> dict[str, dict[str, np.ndarray]]:  # noqa: ANN001
    """``Engine.test`` on ``root``: per video, scored frame indices, offline fused score and ``pred_score``."""
    from anomalib.engine import Engine
    from lightning.pytorch import Callback

    from anomalib_vadproto import LocalUCSDped

    class Keep(Callback):
        """Keep each test batch; anomalib's post-processor normalises it in place after this hook."""

        def __init__(self) -> None:
            self.batches: list[Any] = []

        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
            self.batches.append(outputs)

    datamodule = LocalUCSDped(
        root=root,
        category="UCSDped2",
        cache_frames=True,
        clip_length_in_frames=module.clip_length,
        frames_between_clips=1,
        target_frame="last",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
    )
    keep = Keep()
    engine = Engine(logger=False, default_root_dir=work, callbacks=[keep])
    module.model.read_only = read_only
    try:
        engine.test(model=module, datamodule=datamodule)
    finally:
        module.model.read_only = False
    result = module.protocol_result
    pred = {}
    for batch in keep.batches:
        frames = batch.frames if batch.frames.ndim == 1 else batch.frames[:, -1]  # the target (last) frame
        for path, frame, score in zip(batch.video_path, frames.tolist(), batch.pred_score.tolist(), strict=True):
            pred[(Path(path).name, int(frame))] = float(score)
    out = {}
    for name, frames, scores in zip(result.video_names, result.frame_indices, result.scores, strict=True):
        video = Path(name).name
        out[video] = {
            "frames": np.asarray(frames),
            "offline": np.asarray(scores),
            "validation": np.asarray([pred[(video, int(f))] for f in frames]),
        }
    return out


def all_normalizations(result, meta, warmup: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Every normaliser's score for the scored frames of one ``ScoreResult`` (one video)."""
    from anomalib_vadproto.deploy import make_normalizer

    scored = result.scored
    cues = {name: values[scored] for name, values in result.cues.items()}
    return {
        name: make_normalizer(name, meta, warmup=warmup).normalize(cues, result.pred_score[scored])
        for name in NORMALIZATIONS
    }


def main(argv: list[str] | None = None) -> Path | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnad", help="snake name: mnad, dlan_ac, lgn_net, apn, cdda")
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the newest ped2_accuracy.py run")
    parser.add_argument("--videos", nargs="+", default=["Test004"], help="parity videos (or 'all')")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per batch size (median)")
    parser.add_argument("--auc-videos", nargs="+", default=["all"], help="videos of the streaming-AUC study")
    parser.add_argument("--no-auc", action="store_true", help="skip the streaming-AUC study")
    parser.add_argument("--warmup", type=int, default=10, help="frames without a score for the running normalisers")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 repeat, AUC on Test001-Test002, no results file"
    )
    parser.add_argument("--data-root", type=Path, default=None, help="anomalib UCSDped root (default: materialise)")
    parser.add_argument("--tag", default="", help="suffix for the results file name")
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.repeats = 1
        if args.auc_videos == ["all"]:
            args.auc_videos = ["Test001", "Test002"]
    videos = list(TEST_VIDEOS) if args.videos == ["all"] else args.videos
    auc_videos = list(TEST_VIDEOS) if args.auc_videos == ["all"] else args.auc_videos

    from anomalib_vadproto.deploy import OpenVINOClipModel, open_source, score_source
    from anomalib_vadproto.metrics.protocol import protocol_auc

    checkpoint = args.checkpoint or default_checkpoint(args.model, args.profile)
    ped2_root = args.data_root or ensure_ped2()
    module = load_module(args.model, args.profile, checkpoint)
    work = Path(tempfile.mkdtemp(prefix="deploy_bench_"))
    logger.info("checkpoint %s; work folder %s", checkpoint, work)

    xml = module.to_openvino(work / "export", input_size=PED2_SIZE)
    ov_model = OpenVINOClipModel(xml)
    meta = ov_model.metadata

    # -- parity ---------------------------------------------------------------------------------------
    deployed = {}
    for video in videos:
        result = score_source(ov_model, PED2_COMPACT / "videos" / f"{video}.mp4", normalization="offline", batch_size=8)
        deployed[video] = result
    root = subset_root(ped2_root, videos, work)
    reference = lightning_scores(module, root, work / "test", read_only=True)
    stateful = lightning_scores(module, root, work / "test_stateful", read_only=False)
    parity = {}
    for video in videos:
        result, ref = deployed[video], reference[video]
        frames = np.flatnonzero(result.scored)
        if not np.array_equal(frames, ref["frames"]):
            raise SystemExit(
                f"{video}: scored frames differ: deploy {frames[:3]}..., anomalib test {ref['frames'][:3]}..."
            )
        ours = all_normalizations(result, meta, args.warmup)
        parity[video] = {
            "frames": len(frames),
            "offline_max_abs_diff": float(np.abs(ours["offline"] - ref["offline"]).max()),
            "validation_max_abs_diff": float(np.abs(ours["validation"] - ref["validation"]).max()),
            "stateful_test_offline_max_abs_diff": float(np.abs(ours["offline"] - stateful[video]["offline"]).max()),
        }
        logger.info("parity %s: %s", video, parity[video])

    # -- throughput -----------------------------------------------------------------------------------
    timing_video = PED2_COMPACT / "videos" / f"{videos[0]}.mp4"
    start = time.perf_counter()
    decoded = sum(1 for _ in open_source(timing_video))
    decode_fps = decoded / (time.perf_counter() - start)
    throughput = []
    for batch in args.batch_sizes:
        runs = [score_source(ov_model, timing_video, "offline", batch_size=batch) for _ in range(args.repeats + 1)]
        fps = statistics.median(r.frames_per_second for r in runs[1:])  # the first run warms up
        throughput.append({"batch": batch, "frames_per_second": round(fps, 1), "frames": len(runs[0].score)})
        logger.info("batch %d: %.1f frames/s", batch, fps)

    # -- streaming AUC --------------------------------------------------------------------------------
    auc = None
    if not args.no_auc:
        labels, index, scores = [], [], {name: [] for name in NORMALIZATIONS}
        for number, video in enumerate(auc_videos):
            result = score_source(ov_model, PED2_COMPACT / "videos" / f"{video}.mp4", "offline", batch_size=8)
            frame_labels = np.load(PED2_COMPACT / "frame_labels" / f"{video}.npy").reshape(-1)
            labels.append(frame_labels[result.scored])
            index.append(np.full(int(result.scored.sum()), number))
            for name, values in all_normalizations(result, meta, args.warmup).items():
                scores[name].append(values)
        labels_all, index_all = np.concatenate(labels), np.concatenate(index)
        scores_all = {name: np.concatenate(values) for name, values in scores.items()}
        common = np.logical_and.reduce([np.isfinite(v) for v in scores_all.values()])
        auc = {"videos": auc_videos, "frames": int(len(labels_all)), "common_frames": int(common.sum())}
        micro, macro = protocol_auc(labels_all, scores_all["offline"], index_all)
        auc["offline_all_frames"] = {"micro": round(100 * micro, 2), "macro": round(100 * macro, 2)}
        for name, values in scores_all.items():
            micro, macro = protocol_auc(labels_all[common], values[common], index_all[common])
            auc[name] = {"micro": round(100 * micro, 2), "macro": round(100 * macro, 2)}
        logger.info("AUC: %s", auc)

    result = {
        "kind": "deploy",
        "model": args.model,
        "profile": args.profile,
        "dataset": "ucsd_ped2",
        "checkpoint": shown_path(checkpoint),
        "backend": "openvino-fp32",
        "input_size": list(PED2_SIZE),
        "image_size": list(meta.image_size),
        "clip_length": meta.clip_length,
        "cue_weights": dict(meta.cue_weights),
        "parity": parity,
        "parity_offline_max_abs_diff": max(p["offline_max_abs_diff"] for p in parity.values()),
        "parity_validation_max_abs_diff": max(p["validation_max_abs_diff"] for p in parity.values()),
        "throughput": throughput,
        "decode_frames_per_second": round(decode_fps, 1),
        "warmup": args.warmup,
        "auc": auc,
        "quick": args.quick,
    }
    if args.quick:
        logger.info("quick run, no results file: %s", json.dumps(result, indent=1))
        return None
    tag = f"_{args.tag}" if args.tag else ""
    run_settings = {
        "models": {args.model: {**model_settings(args.model, args.profile), "model_init_args": init_args_of(module)}},
        "export": {"backend": "openvino-fp32", "input_size": list(PED2_SIZE)},
        "parity_videos": videos,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    path = record(
        f"deploy_{args.model}_{args.profile}_ped2{tag}",
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )
    logger.info("results: %s", path)
    return path


if __name__ == "__main__":
    main()
