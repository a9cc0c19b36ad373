"""Inference and training speed of each model, PyTorch against OpenVINO, and each export's AUC change.

For every model (lite profile by default, the weights of its last ``ped2_accuracy.py`` run):

* **inference**: clips per second (one clip scores one frame) at batch 1 and a larger batch, for
  PyTorch eager (``predict_clip``: pre-processing, the read-only model, post-processing; channels-last
  weights on CPU, as anomalib's ``Engine`` runs the model; also timed in PyTorch's stock NCHW layout,
  ``pytorch_eager_nchw``) and the
  OpenVINO exports of the same pipeline: FP32, FP16 (anomalib's ``CompressionType.FP16``: weights
  stored in half precision; this CPU has no FP16 arithmetic, so OpenVINO computes in FP32) and INT8
  (``INT8_PTQ``: NNCF post-training quantisation calibrated on 300 training clips). Inputs are raw
  Ped2-size frames (240x360 RGB); every pipeline resizes them itself. GPU speeds:
  ``python -m benchmarks.gpu_speed``.
* **training**: clips per second of the optimisation step (forward, losses, backward, optimiser,
  state updates) through anomalib's Engine on Ped2 at the profile's batch, data loading excluded.
* **AUC change** (``--auc``): the papers' protocol AUC on the Ped2 test set from each export's cues,
  against PyTorch's read-only scores of the same clips (the reference; MNAD/LGN-Net's stateful
  test-time memory update cannot run in an exported graph).

    python -m benchmarks.speed                          # all five models, speed only
    python -m benchmarks.speed --auc                    # plus each export's AUC on Ped2
    python -m benchmarks.speed --models mnad --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MODELS,
    REPO,
    commit,
    ensure_ped2,
    init_args_of,
    model_settings,
    parse_models,
    record,
)
from benchmarks.ped2_accuracy import PAPER_BATCH, model_config

logger = logging.getLogger("speed")
PED2_SIZE = (240, 360)


def median_seconds(fn, min_seconds: float, min_calls: int = 5, max_calls: int = 500) -> float:  # noqa: ANN001
    """Median wall time of ``fn()`` over at least ``min_calls`` calls and ``min_seconds`` seconds."""
    return interleaved_median_seconds({"fn": fn}, min_seconds, rounds=1, min_calls=min_calls, max_calls=max_calls)["fn"]


def interleaved_median_seconds(
    fns: dict[str, Any], min_seconds: float, rounds: int = 5, min_calls: int = 2, max_calls: int = 200
) -> dict[str, float]:
    """Median wall time of each ``fn()``, timed in ``rounds`` interleaved rounds of ``min_seconds / rounds``.

    Each function is called twice to warm up, then at least ``min_calls`` and at most ``max_calls``
    times per round. The speed of the shared 2-core machine drifts within a minute; timing the backends
    one after another put that drift into their ratios, interleaving spreads it over all of them.
    """
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            deadline = time.perf_counter() + min_seconds / rounds
            calls = 0
            while (calls < min_calls or time.perf_counter() < deadline) and calls < max_calls:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                calls += 1
    return {name: statistics.median(values) for name, values in times.items()}


def latest_checkpoint(model: str, profile: str, work_dir: Path) -> Path | None:
    """The newest ``model.ckpt`` that ``ped2_accuracy.py`` wrote for this model and profile."""
    found = sorted((work_dir / f"{model}_{profile}").glob("**/model.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def checkpoints_or_latest(given: list[Path] | None, model: str, profile: str, work_dir: Path) -> list[Path]:
    """The given checkpoints, all of which must exist, or else the newest one ``ped2_accuracy.py`` wrote."""
    checkpoints = given or [latest_checkpoint(model, profile, work_dir)]
    if checkpoints[0] is None:
        raise SystemExit(
            f"No {model} {profile} checkpoint under {work_dir}: run python -m benchmarks.ped2_accuracy first."
        )
    missing = [str(path) for path in checkpoints if not path.is_file()]
    if missing:
        raise SystemExit(f"Checkpoints not found: {missing}")
    return checkpoints


def synchronize(device: str) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def give_finite_bounds(module) -> None:  # noqa: ANN001
    """Give a never-validated model's post-processor finite bounds and thresholds (so that INT8 compiles)."""
    for name, value in (("image_min", 0.0), ("image_max", 1.0), ("pixel_min", 0.0), ("pixel_max", 1.0)):
        getattr(module.post_processor, name).fill_(value)
    for name in ("_image_threshold", "_pixel_threshold"):
        getattr(module.post_processor, name).fill_(0.5)


def load_model(model: str, profile: str, checkpoint: Path | None):  # noqa: ANN201
    """The profile's model with the checkpoint's weights (random weights without one)."""
    from anomalib.models.components import AnomalibModule

    config = model_config(model, profile)
    module = AnomalibModule.from_config(config)
    if checkpoint is not None:
        module = type(module).load_from_checkpoint(checkpoint, map_location="cpu")
    module.visualizer = None
    if checkpoint is None:
        give_finite_bounds(module)
    module.use_preferred_memory_format()  # channels-last on CPU, as Engine.fit/test/predict run it
    return module.eval()


def ped2_datamodule(module, root: Path, train_batch: int, eval_batch: int, category: str = "UCSDped2"):  # noqa: ANN001, ANN201
    """Ped2 (or another UCSD-layout ``category``) as the accuracy benchmark reads it (frame cache, no workers)."""
    from anomalib_vadproto import LocalUCSDped

    datamodule = LocalUCSDped(
        cache_frames=True,
        root=root,
        category=category,
        clip_length_in_frames=module.clip_length,
        frames_between_clips=1,
        target_frame="last",
        train_batch_size=train_batch,
        eval_batch_size=eval_batch,
        num_workers=0,
    )
    datamodule.setup()
    return datamodule


def export_openvino(module, root: Path, datamodule) -> dict[str, Path]:  # noqa: ANN001
    """FP32, FP16 and INT8 (post-training quantisation on training clips) IRs of the model's pipeline."""
    from anomalib.deploy import CompressionType

    paths = {}
    for name, compression in (("fp32", None), ("fp16", CompressionType.FP16), ("int8", CompressionType.INT8_PTQ)):
        start = time.perf_counter()
        paths[name] = module.to_openvino(
            root / name, input_size=PED2_SIZE, compression_type=compression, datamodule=datamodule
        )
        logger.info("exported %s in %.1f s", name, time.perf_counter() - start)
    return paths


def pytorch_runner(module):  # noqa: ANN001, ANN201
    """Read-only eager pipeline: ``clips (N, T, 3, H, W) -> outputs``."""
    import torch

    def run(clips: torch.Tensor) -> dict[str, torch.Tensor]:
        with module.read_only_eval(), torch.inference_mode():
            return module.predict_clip(clips)

    return run


def inference_speed(module, irs: dict[str, Path], batches: list[int], min_seconds: float) -> dict[str, Any]:  # noqa: ANN001
    """Clips per second for each backend and batch size."""
    import torch

    from anomalib_vadproto.deploy import OpenVINOClipModel

    run = pytorch_runner(module)
    nchw = copy.deepcopy(module)  # eager in PyTorch's stock layout, beside the Engine's channels-last one
    nchw.model.to(memory_format=torch.contiguous_format)
    run_nchw = pytorch_runner(nchw)
    compiled = {name: OpenVINOClipModel(path) for name, path in irs.items()}
    speed: dict[str, Any] = {}
    for batch in batches:
        clips = torch.rand(batch, module.clip_length, 3, *PED2_SIZE, generator=torch.Generator().manual_seed(0))
        array = clips.numpy()
        backends = {
            "pytorch_eager": lambda clips=clips: run(clips),
            "pytorch_eager_nchw": lambda clips=clips: run_nchw(clips),
            **{f"openvino_{name}": (lambda m=ov_model, array=array: m(array)) for name, ov_model in compiled.items()},
        }
        seconds = interleaved_median_seconds(backends, min_seconds)
        row = {name: round(batch / value, 2) for name, value in seconds.items()}
        speed[f"batch{batch}"] = row
        logger.info("batch %d, clips/s: %s", batch, row)
    return speed


def training_speed(module, datamodule, steps: int, device: str = "cpu", precision: str = "32") -> dict[str, Any]:  # noqa: ANN001
    """Optimisation steps through anomalib's Engine; returns clips per second (data loading excluded).

    ``module`` is freshly initialised. Models with a first stage (DLAN-AC's clusterer epochs, CDDA's
    autoencoder pre-training) run it on ``steps`` batches per epoch first; the main stage's step is the
    one reported, the first stage's median step beside it. On a GPU (``device`` ``cuda``) every step
    is timed between device synchronisations.
    """
    from anomalib.engine import Engine
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.seconds: dict[int, list[float]] = {}

        def on_train_batch_start(self, *args: Any) -> None:  # noqa: ANN401
            synchronize(device)
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:  # noqa: ANN401
            synchronize(device)
            self.seconds.setdefault(trainer.current_epoch, []).append(time.perf_counter() - self.start)

    def median_after_warmup(seconds: list[float]) -> tuple[float, int]:
        measured = seconds[min(5, len(seconds) // 2) :]  # the first steps warm the allocator up
        return statistics.median(measured), len(measured)

    stage_argument = type(module).first_stage_argument
    first_stage = int(getattr(module, stage_argument, 0)) if stage_argument else 0
    timer = StepTimer()
    module.train()
    with tempfile.TemporaryDirectory() as work:
        engine = Engine(
            accelerator="gpu" if device.startswith("cuda") else "cpu",
            devices=1,
            precision=precision,
            max_epochs=first_stage + 1,
            limit_train_batches=steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=work,
            logger=False,
            callbacks=[timer],
        )
        engine.fit(model=module, datamodule=datamodule)
    step, timed = median_after_warmup(timer.seconds[first_stage])
    result = {
        "batch": datamodule.train_batch_size,
        "precision": precision,
        "step_seconds": round(step, 5),
        "clips_per_second": round(datamodule.train_batch_size / step, 2),
        "steps_timed": timed,
        "first_stage_epochs_untimed": first_stage,
    }
    if first_stage:  # the first stage's step (with the SOM, or the k-means epoch's extra work), separately
        result["first_stage_step_seconds"] = round(median_after_warmup(timer.seconds[0])[0], 5)
    return result


def export_auc(module, irs: dict[str, Path], datamodule, limit: int | None) -> dict[str, Any]:  # noqa: ANN001
    """Protocol AUC (micro, macro; percent) on the Ped2 test set for PyTorch and every export."""
    import numpy as np
    import torch

    from anomalib_vadproto.deploy import OpenVINOClipModel

    runners = {"pytorch_eager": pytorch_runner(module)}
    for name, path in irs.items():
        ov_model = OpenVINOClipModel(path)
        runners[f"openvino_{name}"] = lambda clips, m=ov_model: {
            k: torch.from_numpy(v) for k, v in m(clips.numpy()).items()
        }
    metrics = {name: copy.deepcopy(module.protocol) for name in runners}
    for metric in metrics.values():
        metric.reset()
    max_cue_difference = dict.fromkeys(runners, 0.0)
    failed: dict[str, str] = {}  # an export whose cues are not finite has no AUC (the metric refuses them)
    for index, batch in enumerate(datamodule.test_dataloader()):
        if limit is not None and index >= limit:
            break
        reference = None
        for name, run in runners.items():
            if name in failed:
                continue
            outputs = run(batch.image)
            cues = {key.removeprefix("cue_"): value.float() for key, value in outputs.items() if key.startswith("cue_")}
            try:
                metrics[name].update(batch.video_path, batch.frames, batch.gt_label, cues)
            except ValueError as error:
                failed[name] = str(error)
                logger.warning("%s: %s", name, error)
                continue
            if reference is None:
                reference = cues
            else:
                difference = max(float((cues[k] - reference[k]).abs().max()) for k in cues)
                max_cue_difference[name] = max(max_cue_difference[name], difference)
    results: dict[str, Any] = {}
    for name, metric in metrics.items():
        if name in failed:
            results[name] = {"protocol_auc_micro": None, "protocol_auc_macro": None, "error": failed[name]}
            continue
        values = metric.compute()
        results[name] = {
            "protocol_auc_micro": round(100 * float(values["protocol_AUC_micro"]), 2),
            "protocol_auc_macro": round(100 * float(values["protocol_AUC_macro"]), 2),
            "max_abs_cue_difference": float(np.float32(max_cue_difference[name])),
        }
    base = results["pytorch_eager"]["protocol_auc_micro"]
    for row in results.values():
        row["micro_change"] = None if row["protocol_auc_micro"] is None else round(row["protocol_auc_micro"] - base, 2)
    logger.info("AUC: %s", results)
    return results


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated snake names")
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--batches", default="1,8", help="inference batch sizes")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timing time per measurement")
    parser.add_argument("--train-steps", type=int, default=30, help="training steps to time (0: skip)")
    parser.add_argument("--auc", action="store_true", help="also score the Ped2 test set with every export")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs", help="where the checkpoints are")
    parser.add_argument("--quick", action="store_true", help="smoke run: short timings, 3 test batches")
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    models = parse_models(args.models)
    batches = [int(b) for b in args.batches.split(",")]
    seconds = 0.5 if args.quick else args.seconds
    root = ensure_ped2()
    per_model: dict[str, Any] = {}
    settings_of: dict[str, Any] = {}
    for name in models:
        checkpoint = latest_checkpoint(name, args.profile, args.work_dir)
        if checkpoint is None:
            logger.warning("%s: no checkpoint under %s; random weights (speed only)", name, args.work_dir)
        module = load_model(name, args.profile, checkpoint)
        settings_of[name] = {**model_settings(name, args.profile), "model_init_args": init_args_of(module)}
        train_batch = PAPER_BATCH.get(name, 4) if args.profile == "paper" else 4
        datamodule = ped2_datamodule(module, root, train_batch, eval_batch=8)
        entry: dict[str, Any] = {
            "config": str(model_config(name, args.profile).relative_to(REPO)),
            "checkpoint": str(checkpoint.relative_to(REPO)) if checkpoint else None,
            "image_size": list(module.image_size),
            "int8_fp32_depth": int(getattr(module, "int8_fp32_depth", 0)),
            "eager_channels_last": any(p.dim() == 4 and not p.is_contiguous() for p in module.model.parameters()),
        }
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            irs = export_openvino(module, Path(tmp), datamodule)
            entry["export_seconds"] = round(time.perf_counter() - start, 1)
            entry["inference_clips_per_second"] = inference_speed(module, irs, batches, seconds)
            if args.auc and checkpoint is not None:
                entry["auc"] = export_auc(module, irs, datamodule, limit=3 if args.quick else None)
        if args.train_steps > 0:
            fresh = load_model(name, args.profile, checkpoint=None)
            entry["training"] = training_speed(fresh, datamodule, 8 if args.quick else args.train_steps)
        per_model[name] = entry
        speed = entry["inference_clips_per_second"]
        speed_up = {
            batch: round(row["openvino_fp32"] / row["pytorch_eager"], 2)
            for batch, row in speed.items()
            if batch.startswith("batch")
        }
        entry["openvino_fp32_over_eager"] = speed_up
        entry["openvino_fp32_over_eager_nchw"] = {
            batch: round(row["openvino_fp32"] / row["pytorch_eager_nchw"], 2)
            for batch, row in speed.items()
            if batch.startswith("batch")
        }
        logger.info("%s: OpenVINO FP32 / eager = %s", name, speed_up)
    result = {
        "kind": "speed",
        "model": ",".join(models),
        "profile": args.profile,
        "openvino_precision": "f32",  # OpenVINOClipModel's inference precision hint for unquantised layers
        "input_frame_size": list(PED2_SIZE),
        "batches": batches,
        "quick": args.quick,
        "models": per_model,
    }
    run_settings = {
        "models": settings_of,  # the inference model's: the checkpoint's init args where one was loaded
        "train_batch_size": {name: PAPER_BATCH.get(name, 4) if args.profile == "paper" else 4 for name in models},
        "eval_batch_size": 8,
    }
    return record(
        f"speed_inference_{args.profile}" + ("_quick" if args.quick else ""),
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )


if __name__ == "__main__":
    main()
